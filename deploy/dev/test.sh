#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing (the pinned nats-server), then every
# test, the slow fault/cluster ones included. CI calls exactly this (.ci/run).
#
#   ./deploy/dev/test.sh            # everything (what CI runs)
#   ./deploy/dev/test.sh --quick    # skip the tests marked slow (#[ignore = "slow: ..."])
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo is not on PATH; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

NATS_SERVER_BIN="$("$root/deploy/dev/install-nats-server.sh")"
export NATS_SERVER_BIN
echo "test.sh: using $("$NATS_SERVER_BIN" --version) at $NATS_SERVER_BIN"

# Headless Chromium for the status page test (operator_page); Debian's package. The test itself
# fails with a message naming this step when Chromium is missing.
if ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium (apt-get) for the status page test"
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "test.sh: chromium could not be installed; the status page test will fail" >&2
  else
    echo "test.sh: chromium is not installed (run: sudo apt-get install -y chromium); the status page test will fail" >&2
  fi
fi

# promtool, for the alert rules' unit tests (alert_rules): Debian's prometheus package ships it.
# The test itself fails with a message naming this step when promtool is missing.
if ! command -v promtool >/dev/null 2>&1 && [[ -z "${PROMTOOL:-}" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing promtool (apt-get install prometheus) for the alert rule tests"
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
      || echo "test.sh: prometheus (promtool) could not be installed; the alert rule tests will fail" >&2
  else
    echo "test.sh: promtool is not installed (run: sudo apt-get install -y --no-install-recommends prometheus); the alert rule tests will fail" >&2
  fi
fi

# Python's aiosmtpd: the real SMTP server the notifier's e-mail test sends to (pinned; installed
# into .tools/python, found by the test through PYTHONPATH).
if ! PYTHONPATH="$root/.tools/python" python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "test.sh: installing aiosmtpd==1.4.6 into .tools/python"
  python3 -m pip install --quiet --target "$root/.tools/python" aiosmtpd==1.4.6 \
    || echo "test.sh: aiosmtpd could not be installed; the notifier e-mail tests will fail" >&2
fi

# A clean CI build gains nothing from incremental compilation (it only writes more); developers
# keep it.
if [[ -n "${CI:-}" ]]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi

start=$(date +%s)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set -o pipefail
rc=0
# --locked: CI builds exactly what Cargo.lock says. The binaries are built first because some
# tests run them as child processes (kill -9, SIGTERM).
cargo build --locked --workspace --all-targets
cargo test --locked --workspace --no-fail-fast 2>&1 | tee -a "$log" || rc=$?
if [[ "${1:-}" != "--quick" ]]; then
  echo "test.sh: slow tests (fault, cluster, load)"
  cargo test --locked --workspace --no-fail-fast -- --ignored 2>&1 | tee -a "$log" || rc=$?
fi
# One closing line over both passes (cargo's own last line is often a crate with 0 doc tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "test.sh: %d passed, %d failed\n", p, f }' "$log"
echo "test.sh: done in $(( $(date +%s) - start )) s (exit $rc)"
exit "$rc"
