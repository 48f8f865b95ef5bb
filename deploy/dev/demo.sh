#!/usr/bin/env bash
# The Shirase demo: one command that shows the whole flow on this machine, on 127.0.0.1 only.
#
#   ./deploy/dev/demo.sh                  # build, start everything, ~60 s scenario, summary, stop
#   ./deploy/dev/demo.sh --keep-running   # same, then leave the stack up until Ctrl-C
#   ./deploy/dev/demo.sh --quick          # a ~20 s scenario (what the demo test runs)
#
# Other options: --duration SECS (scenario length), --bin-dir DIR (use shirase-relay,
# shirase-agent and provider-sim from DIR instead of building them), --data-dir DIR (default
# ./demo-data; wiped at start).
#
# What runs (logs in <data-dir>/logs/):
#   nats-server  127.0.0.1:4222 (monitoring :8222), JetStream store <data-dir>/nats, sync always
#   shirase-relay provision + serve, 127.0.0.1:8080   (deploy/dev/relay.toml + a [[file_watch]] of
#                                                     <data-dir>/share/010, the tax provider's folder)
#   provider-sim 001 resident registry  127.0.0.1:9001, notifying the relay with the dev token
#   provider-sim 010 resident tax       127.0.0.1:9010, notifying the relay with the dev token
#   shirase-agent tax          127.0.0.1:9464, sink <data-dir>/tax          (deploy/dev/agent-tax.toml)
#   shirase-agent delinquency  127.0.0.1:9465, sink <data-dir>/delinquency  (deploy/dev/agent-delinquency.toml)
# Then deploy/dev/demo/scenario.py drives the scenario, prints a line per second and the summary.
# Exit status: 0 when nothing was lost, 1 when the summary shows a loss, 2 when the stack failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

keep_running=0
duration=60
bin_dir=""
data="$root/demo-data"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep-running) keep_running=1 ;;
    --quick) duration=20 ;;
    --duration) duration="${2:?--duration needs seconds}"; shift ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift ;;
    --data-dir) data="${2:?--data-dir needs a directory}"; shift ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$data"
data="$(cd "$data" && pwd)"

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 2; }

for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (Debian/Ubuntu: apt-get install -y $tool)"
done

# Refuse to start when a port is taken (an earlier --keep-running demo, a local service).
ports=(4222 8222 8080 9001 9010 9464 9465)
for p in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "127.0.0.1:$p is already in use (an earlier demo still running?); stop it first"
  fi
done

# --- what is missing gets installed ---------------------------------------------------------
nats_bin="$("$root/deploy/dev/install-nats-server.sh")"
if [[ -z "$bin_dir" ]]; then
  command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH; install the Rust toolchain (https://rustup.rs) first"
  say "building the release binaries (the first build takes several minutes)"
  cargo build --release --locked --quiet \
    -p shirase-relay -p shirase-subscriber-kit -p shirase-provider-sim \
    --bin shirase-relay --bin shirase-agent --bin provider-sim
  bin_dir="$root/target/release"
fi
for b in shirase-relay shirase-agent provider-sim; do
  [[ -x "$bin_dir/$b" ]] || die "$bin_dir/$b not found (build it, or drop --bin-dir)"
done

# --- process bookkeeping: every child by pid, stopped in reverse order ----------------------
rm -rf "${data:?}/nats" "$data/logs" "$data/tax" "$data/delinquency" "$data/summary.json" "$data/share"
mkdir -p "$data/nats" "$data/logs" "$data/share/010/010o01"
pids=()
names=()
export NO_COLOR=1 # plain log files
start() { # start NAME COMMAND... : run in the background, log to <data>/logs/NAME.log
  local name="$1"; shift
  "$@" >"$data/logs/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
}
stopping=0
stop_all() {
  [[ $stopping -eq 1 ]] && return
  stopping=1
  local i pid n
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid="${pids[i]}"
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    # Graceful stop first (agents hand back in-flight notices); SIGKILL after 15 s.
    for ((n = 0; n < 150; n++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "${names[i]} (pid $pid) did not stop in 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  [[ ${#pids[@]} -gt 0 ]] && say "stopped ${#pids[@]} processes (${names[*]})"
  pids=()
}
on_exit() {
  local rc=$?
  stop_all
  exit "$rc"
}
on_signal() {
  echo
  say "interrupted: stopping everything"
  stop_all
  exit 130
}
trap on_exit EXIT
trap on_signal INT TERM

wait_http() { # wait_http NAME URL : until URL answers 2xx, 30 s at most
  local name="$1" url="$2" n
  for ((n = 0; n < 300; n++)); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  say "$name did not come up at $url; its log ($data/logs/$name.log) ends with:"
  tail -n 20 "$data/logs/$name.log" >&2 || true
  exit 2
}

# --- the stack ------------------------------------------------------------------------------
cat >"$data/nats-server.conf" <<CONF
# Written by deploy/dev/demo.sh: one dev node, loopback only, no auth (dev).
server_name: shirase-demo
listen: 127.0.0.1:4222
http: 127.0.0.1:8222
jetstream { store_dir: "$data/nats", sync_interval: always }
CONF
start nats-server "$nats_bin" -c "$data/nats-server.conf"
wait_http nats-server http://127.0.0.1:8222/healthz
say "nats-server $("$nats_bin" --version | sed 's/^nats-server: //') up: nats://127.0.0.1:4222"

# The dev topology plus file integration: the tax provider's folder on the "file server" (a
# directory under the data dir) watched by the relay; its credential paths made absolute.
sed "s#token_file = \"credentials/#token_file = \"$root/deploy/dev/credentials/#" deploy/dev/relay.toml >"$data/relay.toml"
cat >>"$data/relay.toml" <<TOML

[[file_watch]]
provider = "010"
root = "$data/share/010"
completion = "marker"
marker = "{name}.end"
settle = "2s"
scan_interval = "1s"
[[file_watch.interfaces]]
id = "010o01-00"
dir = "010o01"
pattern = "*.csv"
TOML
"$bin_dir/shirase-relay" provision --config "$data/relay.toml" >"$data/logs/provision.plan" 2>"$data/logs/provision.log" \
  || { cat "$data/logs/provision.log" >&2; die "provisioning failed"; }
say "provisioned (shirase-relay provision --config deploy/dev/relay.toml):"
sed 's/^/demo:     /' "$data/logs/provision.plan"

start relay "$bin_dir/shirase-relay" serve --config "$data/relay.toml"
wait_http relay http://127.0.0.1:8080/readyz
say "relay up: POST http://127.0.0.1:8080/v1/notices"

tax_secret="$(cat deploy/dev/agent-secrets/tax.secret)"
delinquency_secret="$(cat deploy/dev/agent-secrets/delinquency.secret)"
# Maintenance compressed to seconds: the sim asks callers to come back after 2 s, not 60.
start provider-001 "$bin_dir/provider-sim" --listen 127.0.0.1:9001 --business 001 --municipality 131016 \
  --population 2000 --maintenance-retry-after-s 2 \
  --client "tax-agent=$tax_secret" --client "delinquency-agent=$delinquency_secret" \
  --notify-relay http://127.0.0.1:8080 --notify-token-file deploy/dev/credentials/provider-001.token
start provider-010 "$bin_dir/provider-sim" --listen 127.0.0.1:9010 --business 010 --municipality 131016 \
  --population 2000 --maintenance-retry-after-s 2 \
  --client "delinquency-agent=$delinquency_secret" \
  --notify-relay http://127.0.0.1:8080 --notify-token-file deploy/dev/credentials/provider-010.token
wait_http provider-001 http://127.0.0.1:9001/admin/counters
wait_http provider-010 http://127.0.0.1:9010/admin/counters
say "provider-sims up: 001 resident registry http://127.0.0.1:9001, 010 resident tax http://127.0.0.1:9010"

# The dev agent configs write to ./demo-data/<subscriber>; SHIRASE_AGENT__SINK__DIR follows --data-dir.
# A shorter retry ceiling than the default 60 s keeps the outage recovery visible in a minute.
# The demo compresses the maintenance window into seconds through the simulator (503 E0900), so
# the agents' own 24:00-27:00 calendar is switched off here: otherwise a demo started between
# 00:00 and 03:00 JST would (correctly) make no pulls at all until 03:00.
for sub in tax delinquency; do
  sed 's/^\[\[providers\]\]$/[[providers]]\nenforce_maintenance = false/' \
    "deploy/dev/agent-$sub.toml" > "$data/agent-$sub.toml"
done
# The delinquency agent's own mount of the tax provider's share (here: the same directory).
cat >>"$data/agent-delinquency.toml" <<TOML

[files]
[[files.shares]]
provider = "010"
root = "$data/share/010"
TOML
start agent-tax env SHIRASE_AGENT__SINK__DIR="$data/tax" SHIRASE_AGENT__RETRY__MAX=4s \
  "$bin_dir/shirase-agent" --config "$data/agent-tax.toml"
start agent-delinquency env SHIRASE_AGENT__SINK__DIR="$data/delinquency" SHIRASE_AGENT__RETRY__MAX=4s \
  "$bin_dir/shirase-agent" --config "$data/agent-delinquency.toml"
wait_http agent-tax http://127.0.0.1:9464/healthz
wait_http agent-delinquency http://127.0.0.1:9465/healthz
say "agents up: tax (reads 001o05-00), delinquency (reads 001o05-00 and 010o01-00)"
say "scenario: ${duration} s of changes, then the agents catch up; one line per second:"
say "  notices in = accepted by the relay per provider | pulls by outcome (both agents) |"
say "  rows = sink lines per subscriber | pending = notices not yet acked (tax/delinquency) |"
say "  lag = notice time to ack | providers: up, DOWN (outage) or MAINT (maintenance window)"
echo

rc=0
python3 "$root/deploy/dev/demo/scenario.py" --duration "$duration" --data-dir "$data" || rc=$?

if [[ $keep_running -eq 1 && $rc -ne 130 ]]; then
  echo
  say "--keep-running: the stack stays up; press Ctrl-C to stop it. Try:"
  say "  curl -s http://127.0.0.1:9464/metrics | grep rows_delivered"
  say "  curl -s -X POST http://127.0.0.1:9001/admin/changes -H 'Content-Type: application/json' -d '{\"interface\":\"001o05-00\",\"kind\":\"update\"}'"
  say "  README.md, section 'A five-minute tour', sends a notice by hand"
  while true; do
    # Leave when any process of the stack dies; Ctrl-C runs the trap.
    for i in "${!pids[@]}"; do
      if ! kill -0 "${pids[i]}" 2>/dev/null; then
        say "${names[i]} exited; see $data/logs/${names[i]}.log"
        exit 2
      fi
    done
    sleep 1
  done
fi
exit "$rc"
