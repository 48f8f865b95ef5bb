#!/usr/bin/env python3
"""The demo's scenario driver, live view and closing summary (Python 3 standard library only).

deploy/dev/demo.sh starts the stack and then runs this script. It

1. drives about a minute of provider activity through the simulators' admin endpoints
   (moves in and out, a retroactive correction, a cancelled entry, an outage of the tax
   provider's PULL API, a maintenance window of the resident registry compressed to seconds,
   a nightly batch inside that window, a rush at the counter, and the tax provider's nightly
   batch writing a file to the file server's folder with its completion marker, which the relay
   announces with a file-ready notice (格納完了通知) and the delinquency agent copies);
2. prints one line per second read from the relay's and agents' /metrics, the NATS monitoring
   endpoint and the simulators' /admin/counters and /admin/faults;
3. waits for the agents to catch up, then proves from the simulators' /admin/changes and the
   sink files that every change reached every subscriber that reads its interface, writes the
   result to <data-dir>/summary.json and exits 1 if anything is missing.

Only ids, counts and timestamps are read from the sink files' rows; row contents are never
printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.request

RELAY = "http://127.0.0.1:8080"
NATS_MON = "http://127.0.0.1:8222"
SIMS = {"001": "http://127.0.0.1:9001", "010": "http://127.0.0.1:9010"}
AGENTS = {"tax": "http://127.0.0.1:9464", "delinquency": "http://127.0.0.1:9465"}
# Which interfaces each subscriber reads (deploy/dev/relay.toml, deploy/dev/agent-*.toml).
READS = {"tax": ["001o05-00"], "delinquency": ["001o05-00", "010o01-00"]}
PROVIDER_OF = {"001o05-00": "001", "001o06-00": "001", "010o01-00": "010"}
INTERFACES = ["001o05-00", "001o06-00", "010o01-00"]
# File integration: the tax provider's folder on the file server (demo.sh's [[file_watch]]) and
# where the delinquency agent's file sink puts the files it received.
FILE_IFACE = "010o01-00"
FILE_DIR = os.path.join("share", "010", "010o01")
FILE_SINK = os.path.join("delinquency", "files", FILE_IFACE)


# --- HTTP helpers ---------------------------------------------------------------------------

def http(method: str, url: str, body: object | None = None, timeout: float = 3.0) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def get_json(url: str) -> object | None:
    try:
        return json.loads(http("GET", url))
    except (OSError, ValueError):
        return None


def post_json(url: str, body: object) -> object:
    return json.loads(http("POST", url, body, timeout=10.0))


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus/OpenMetrics text page; [] when it cannot be read."""
    try:
        text = http("GET", url + "/metrics").decode()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), value))
    return out


def total(samples, name: str, **labels: str) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


def highest(samples, name: str) -> float:
    return max([v for n, _, v in samples if n == name] or [0.0])


# --- scenario -------------------------------------------------------------------------------

class Scenario:
    """The timeline, written for 60 s and scaled to --duration."""

    def __init__(self, duration: float, seed: int, data_dir: str = ".") -> None:
        self.data_dir = data_dir
        self.duration = duration
        self.k = duration / 60.0
        self.rng = random.Random(seed)
        self.fired: set[str] = set()
        self.outage = False
        self.maintenance = False
        self.log: list[str] = []

    def at(self, t60: float) -> float:
        return t60 * self.k

    def changes(self, provider: str, interface: str, kind: str, count: int) -> None:
        if count > 0:
            post_json(SIMS[provider] + "/admin/changes", {"count": count, "interface": interface, "kind": kind})

    def faults(self, provider: str, **f: bool) -> None:
        post_json(SIMS[provider] + "/admin/faults", f)

    def once(self, key: str, t: float, now: float) -> bool:
        if now >= t and key not in self.fired:
            self.fired.add(key)
            return True
        return False

    def step(self, now: float) -> list[str]:
        """Run what is due at `now` seconds; return the event lines to print."""
        ev: list[str] = []
        if now < self.duration:
            # Everyday traffic: moves in and out (転入・転出) at the registry counter, the odd
            # change with the individual number (001o06-00), tax assessment changes.
            r = self.rng
            self.changes("001", "001o05-00", "update", r.randint(1, 3))
            self.changes("001", "001o06-00", "update", r.randint(0, 1))
            self.changes("010", "010o01-00", "update", r.randint(0, 2))
        if self.once("retro", self.at(8), now):
            self.changes("001", "001o05-00", "retroactive", 2)
            self.changes("010", "010o01-00", "retroactive", 1)
            ev.append("retroactive correction (遡及異動): 2 on 001o05-00, 1 on 010o01-00, dated back")
        if self.once("delete", self.at(14), now):
            self.changes("001", "001o05-00", "delete", 1)
            ev.append("an entry cancelled (delete) on 001o05-00: the agents deliver a tombstone")
        if self.once("outage-on", self.at(18), now):
            self.faults("010", outage=True)
            self.outage = True
            ev.append("provider 010's PULL API goes down (503 E0503); notices keep arriving and wait in JetStream")
        if self.once("outage-off", max(self.at(26), self.at(18) + 3), now):
            self.faults("010", outage=False)
            self.outage = False
            ev.append("provider 010 is back: the agents retry with backoff and catch up")
        if self.once("maint-on", self.at(32), now):
            self.faults("001", maintenance=True)
            self.maintenance = True
            ev.append("provider 001 enters its maintenance window (24:00-27:00, compressed to seconds): 503 E0900 + Retry-After")
        if self.once("batch", self.at(33), now):
            self.changes("001", "001o05-00", "update", 30)
            ev.append("nightly batch inside the window: 30 changes on 001o05-00, no pulls until the window ends")
        if self.once("maint-off", max(self.at(42), self.at(32) + 3), now):
            self.faults("001", maintenance=False)
            self.maintenance = False
            ev.append("maintenance window over: the agents pull the backlog, one coalesced pull per interface")
        if self.once("file", self.at(36), now):
            name, n = self.nightly_file()
            ev.append(f"tax provider's nightly batch writes {name} ({n} records) and its completion marker {name}.end to the file server")
        if self.once("rush", self.at(48), now):
            self.changes("001", "001o05-00", "update", 20)
            self.changes("010", "010o01-00", "update", 5)
            ev.append("rush at the counter: 20 moves on 001o05-00, 5 tax changes on 010o01-00 in one second")
        if self.once("retro2", self.at(55), now):
            self.changes("001", "001o05-00", "retroactive", 1)
            ev.append("another retroactive correction on 001o05-00")
        if self.once("stop", self.duration, now):
            ev.append("providers stop changing data; waiting for every subscriber to catch up")
        return ev

    def nightly_file(self) -> tuple[str, int]:
        """Write a batch file (no personal data: row numbers and amounts), then its marker."""
        folder = os.path.join(self.data_dir, FILE_DIR)
        os.makedirs(folder, exist_ok=True)
        name = time.strftime("kojin-juminzei-%Y%m%d-%H%M%S.csv")
        n = 500
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write("row,amount\n")
            for i in range(n):
                f.write(f"{i},{self.rng.randint(1000, 99999)}\n")
        with open(os.path.join(folder, name + ".end"), "w", encoding="utf-8") as f:
            f.write(f"interface_id={FILE_IFACE}\nversion=1.0\nrecord_count={n}\n")
        return name, n

    def heal(self) -> None:
        """Lift any fault the scenario set (also on interrupt)."""
        for p in SIMS:
            try:
                self.faults(p, outage=False, maintenance=False)
            except OSError:
                pass


# --- live view ------------------------------------------------------------------------------

def pending_by_subscriber() -> dict[str, int]:
    """Notices not yet acked per subscriber, summed over its consumers (NATS /jsz)."""
    out = {s: 0 for s in READS}
    jsz = get_json(NATS_MON + "/jsz?consumers=true")
    if not isinstance(jsz, dict):
        return out
    for acct in jsz.get("account_details") or []:
        for stream in acct.get("stream_detail") or []:
            for c in stream.get("consumer_detail") or []:
                name = c.get("name", "")
                sub = name.rsplit("_", 1)[0]
                if sub in out:
                    out[sub] += int(c.get("num_pending", 0)) + int(c.get("num_ack_pending", 0))
    return out


def live_line(t: float, sc: Scenario) -> str:
    relay = metrics(RELAY)
    agents = {s: metrics(u) for s, u in AGENTS.items()}
    notices = {p: int(total(relay, "shirase_relay_notices_accepted_total", provider=p)) for p in SIMS}
    pulls: dict[str, int] = {}
    for samples in agents.values():
        for n, l, v in samples:
            if n == "shirase_agent_pulls_total":
                pulls[l.get("outcome", "?")] = pulls.get(l.get("outcome", "?"), 0) + int(v)
    rows = {s: int(total(m, "shirase_agent_rows_delivered_total")) for s, m in agents.items()}
    lag = max(highest(m, "shirase_agent_lag_seconds") for m in agents.values())
    pend = pending_by_subscriber()
    faults = {p: get_json(u + "/admin/faults") or {} for p, u in SIMS.items()}
    state = []
    for p, f in faults.items():
        if f.get("maintenance"):
            state.append(f"{p}:MAINT")
        elif f.get("outage"):
            state.append(f"{p}:DOWN")
        else:
            state.append(f"{p}:up")
    ok = pulls.get("data", 0)
    failed = {k: v for k, v in pulls.items() if k != "data" and v}
    pull_txt = f"ok {ok}" + "".join(f" {k} {v}" for k, v in sorted(failed.items()))
    return (
        f"[{int(t):3d}s] notices in 001:{notices['001']:<4d} 010:{notices['010']:<4d}"
        f"| pulls {pull_txt:<38s}"
        f"| rows tax {rows['tax']:<5d} delinquency {rows['delinquency']:<5d}"
        f"| pending {pend['tax']}/{pend['delinquency']:<4d}"
        f"| lag {lag:5.1f}s "
        f"| providers {' '.join(state)}"
    )


# --- summary --------------------------------------------------------------------------------

def sink_lines(data_dir: str, sub: str, iface: str) -> list[dict]:
    path = os.path.join(data_dir, sub, f"{iface}.jsonl")
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    # A partial last line after a crash is skipped, as any reader should.
                    pass
    except FileNotFoundError:
        pass
    return out


def all_changes() -> list[dict]:
    out: list[dict] = []
    for p, url in SIMS.items():
        got = get_json(url + "/admin/changes")
        if not isinstance(got, list):
            raise RuntimeError(f"cannot read {url}/admin/changes")
        out.extend(got)
    return out


def row_versions(made: list[dict]) -> int:
    """Sink lines the changes `made` call for at the least: the row versions each made visible
    (the simulator's `row_versions`: the new row and the previous row whose latest flag
    flipped) plus one tombstone per delete."""
    return sum(c.get("row_versions", 1) + (1 if c["kind"] == "delete" else 0) for c in made)


def check(data_dir: str, changes: list[dict] | None = None) -> dict:
    """Compare the changes the providers made (read from the simulators unless given) with what
    each subscriber's sink holds."""
    if changes is None:
        changes = all_changes()
    deleted = {}  # (iface, atena, history) -> delete notice id
    for c in changes:
        if c["kind"] == "delete":
            deleted[(c["interface_id"], c["atena_no"], c["history_no"])] = c["notice_id"]
    result: dict = {"interfaces": {}, "subscribers": {}, "lost": 0}
    for iface in INTERFACES:
        made = [c for c in changes if c["interface_id"] == iface]
        result["interfaces"][iface] = {
            "changes": len(made),
            # What a subscriber receives for these changes at the least: each row version a
            # change made visible (the new row, and the previous row whose latest flag flipped
            # with it) plus a tombstone per delete.
            "row_versions": row_versions(made),
            "by_kind": {k: sum(1 for c in made if c["kind"] == k) for k in ("update", "retroactive", "delete")},
            "read_by": [s for s, ifs in READS.items() if iface in ifs],
        }
    for sub, ifaces in READS.items():
        per = {}
        for iface in ifaces:
            lines = sink_lines(data_dir, sub, iface)
            rows = {(l["row"]["atena_no"], l["row"]["history_no"]) for l in lines if l.get("kind") == "row"}
            tombs = {l["notice_id"] for l in lines if l.get("kind") == "tombstone"}
            made = [c for c in changes if c["interface_id"] == iface]
            missing = []
            for c in made:
                key = (c["atena_no"], c["history_no"])
                if c["kind"] == "delete":
                    ok = c["notice_id"] in tombs
                else:
                    # A row created and cancelled before anyone pulled it can no longer be
                    # pulled; its delete's tombstone stands for it.
                    gone = deleted.get((iface, c["atena_no"], c["history_no"]))
                    ok = key in rows or (gone is not None and gone in tombs)
                if not ok:
                    missing.append({"kind": c["kind"], "sequence": c["sequence"], "notice_id": c["notice_id"]})
            versions = row_versions(made)
            per[iface] = {
                "changes": len(made),
                "row_versions": versions,
                "delivered": len(made) - len(missing),
                "missing": len(missing),
                "missing_sequences": [m["sequence"] for m in missing][:20],
                "sink_lines": len(lines),
                "sink_lines_per_change": round(len(lines) / len(made), 2) if made else None,
                "sink_lines_per_row_version": round(len(lines) / versions, 2) if versions else None,
                "sink_file": os.path.join(data_dir, sub, f"{iface}.jsonl"),
            }
            result["lost"] += len(missing)
        result["subscribers"][sub] = per
    result["files"] = check_files(data_dir)
    result["lost"] += result["files"]["missing"]
    return result


def sha256_of(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def check_files(data_dir: str) -> dict:
    """Files written to the tax provider's folder vs identical copies in delinquency's sink."""
    folder = os.path.join(data_dir, FILE_DIR)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".csv")) if os.path.isdir(folder) else []
    delivered = [n for n in names
                 if sha256_of(os.path.join(data_dir, FILE_SINK, n)) == sha256_of(os.path.join(folder, n))]
    return {"interface": FILE_IFACE, "written": len(names), "delivered": len(delivered),
            "missing": len(names) - len(delivered), "sink_dir": os.path.join(data_dir, FILE_SINK)}


def counters() -> dict:
    return {p: get_json(u + "/admin/counters") or {} for p, u in SIMS.items()}


def print_summary(res: dict, data_dir: str, elapsed_catch_up: float | None) -> None:
    relay = metrics(RELAY)
    agents = {s: metrics(u) for s, u in AGENTS.items()}
    c = counters()
    print()
    print("Summary: changes the providers made vs what each subscriber's sink received")
    print(f"  {'interface':<10} {'changes':>7}  {'(upd/retro/del)':<15}  {'subscriber':<12} {'delivered':>9} {'missing':>7} {'sink lines':>10} {'row versions':>12}")
    for iface, info in res["interfaces"].items():
        k = info["by_kind"]
        kinds = f"{k['update']}/{k['retroactive']}/{k['delete']}"
        if not info["read_by"]:
            print(f"  {iface:<10} {info['changes']:>7}  {kinds:<15}  {'(no subscriber reads it; kept in the stream)'}")
            continue
        for sub in info["read_by"]:
            s = res["subscribers"][sub][iface]
            print(f"  {iface:<10} {info['changes']:>7}  {kinds:<15}  {sub:<12} {s['delivered']:>9} {s['missing']:>7} {s['sink_lines']:>10} {s['row_versions']:>12}")
    made = sum(int(x.get("changes_committed", 0)) for x in c.values())
    accepted = int(total(relay, "shirase_relay_notices_accepted_total"))
    dups = int(total(relay, "shirase_relay_notices_duplicate_total"))
    fl = res.get("files", {})
    print(f"  files ({fl.get('interface')}, file integration): {fl.get('written', 0)} written to the file server, "
          f"{fl.get('delivered', 0)} delivered to delinquency (same SHA-256), {fl.get('missing', 0)} missing")
    print(f"  notices: {made} made by the providers, {accepted} accepted by the relay ({dups} re-sends de-duplicated)")
    pulls: dict[str, int] = {}
    for samples in agents.values():
        for n, l, v in samples:
            if n == "shirase_agent_pulls_total":
                pulls[l["outcome"]] = pulls.get(l["outcome"], 0) + int(v)
    print("  pulls by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(pulls.items()) if v))
    print(f"  provider 010 answered {int(c['010'].get('error', 0))} requests with 503 E0503 (outage); "
          f"provider 001 answered {int(c['001'].get('maintenance', 0))} with 503 E0900 (maintenance)")
    print("  sink lines exceed changes: an update also re-stamps the previous history row (its latest")
    print("  flag, 最新フラグ, flips), so one change is two row versions (the 'row versions' column,")
    print("  plus a tombstone per delete). Lines beyond the row versions are re-reads: delinquency")
    print("  pulls 001o05-00 by addressee number (keyed_pull_max_keys = 20), which leaves the checkpoint")
    print("  where the last window pull put it, so its next window pull (the batch after the")
    print("  maintenance window) reads those rows again. At-least-once: the consumer de-duplicates")
    print("  by (atena_no, history_no).")
    if elapsed_catch_up is not None:
        print(f"  caught up {elapsed_catch_up:.1f} s after the last change")
    print()
    if res["lost"] == 0:
        print("RESULT: nothing was lost. Every change reached every subscriber that reads its interface.")
    else:
        print(f"RESULT: {res['lost']} change(s) did NOT reach a subscriber (see summary.json): this is a bug.")
        for sub, per in res["subscribers"].items():
            for iface, s in per.items():
                if s["missing"]:
                    print(f"  {sub} {iface}: missing sequences {s['missing_sequences']}")
    print()
    print("Where to look:")
    for sub, per in res["subscribers"].items():
        for iface, s in per.items():
            print(f"  sink file   {s['sink_file']}")
    print(f"  metrics     {RELAY}/metrics  {AGENTS['tax']}/metrics  {AGENTS['delinquency']}/metrics")
    print(f"  JetStream   {NATS_MON}/jsz?consumers=true  (pending and ack-pending per consumer)")
    print(f"  simulators  {SIMS['001']}/admin/requests  {SIMS['010']}/admin/counters")
    print(f"  logs        {os.path.join(data_dir, 'logs')}/")
    print(f"  summary     {os.path.join(data_dir, 'summary.json')}")
    print(f"  status page {RELAY}/status  (token: deploy/dev/credentials/operator.token; --keep-running keeps it up)")
    print("  operators   shirase-relay status|replay|resync|dlq --token-file deploy/dev/credentials/operator.token")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of provider activity")
    ap.add_argument("--catch-up", type=float, default=90.0, help="most seconds to wait for the agents afterwards")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--verify-only", metavar="CHANGES_JSON",
                    help="no stack: compare the changes in this file (as GET /admin/changes lists them) with the sinks under --data-dir")
    a = ap.parse_args()
    if a.verify_only:
        with open(a.verify_only, encoding="utf-8") as f:
            res = check(a.data_dir, json.load(f))
        for sub, per in res["subscribers"].items():
            for iface, s in per.items():
                print(f"{sub} {iface}: {s['delivered']} of {s['changes']} delivered, missing sequences {s['missing_sequences']}")
        return 0 if res["lost"] == 0 else 1
    sc = Scenario(a.duration, a.seed, a.data_dir)
    start = time.monotonic()
    tick = 0
    caught_up_after = None
    res = None
    try:
        while True:
            now = time.monotonic() - start
            for e in sc.step(now):
                print(f"[{int(now):3d}s] -- {e}", flush=True)
            print(live_line(now, sc), flush=True)
            if now >= a.duration:
                res = check(a.data_dir)
                if res["lost"] == 0 and all(v == 0 for v in pending_by_subscriber().values()):
                    caught_up_after = now - a.duration
                    break
                if now >= a.duration + a.catch_up:
                    print(f"[{int(now):3d}s] -- gave up waiting after {a.catch_up:.0f} s", flush=True)
                    break
            tick += 1
            time.sleep(max(0.0, start + tick - time.monotonic()))
    except KeyboardInterrupt:
        sc.heal()
        print("\ninterrupted: no summary", flush=True)
        return 130
    except (OSError, RuntimeError) as e:
        sc.heal()
        print(f"\nscenario: {e}", file=sys.stderr, flush=True)
        return 2
    res = check(a.data_dir)
    res["catch_up_seconds"] = caught_up_after
    res["provider_counters"] = counters()
    with open(os.path.join(a.data_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)
    print_summary(res, a.data_dir, caught_up_after)
    return 0 if res["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
