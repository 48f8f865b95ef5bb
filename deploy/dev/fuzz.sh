#!/usr/bin/env bash
# Runs one cargo-fuzz (libFuzzer) target of tests/fuzz for a given time, on the nightly
# toolchain; installs cargo-fuzz when it is missing.
#
#   ./deploy/dev/fuzz.sh --list                    # the targets
#   ./deploy/dev/fuzz.sh notice 600                # run `notice` for 600 s
#   ./deploy/dev/fuzz.sh notice 600 -jobs=2        # further arguments go to libFuzzer
#
# The corpus grows in tests/fuzz/corpus/TARGET (not committed; seeded from the committed
# tests/fuzz/seeds/TARGET). A crash, a timeout (a unit over 60 s) or an out-of-memory exits
# non-zero and leaves the input in tests/fuzz/artifacts/TARGET/; the script prints its path and
# how to reproduce it. The run's output is kept in tests/fuzz/target/TARGET.log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
fuzz_dir=tests/fuzz

targets() {
  for f in "$fuzz_dir"/fuzz_targets/*.rs; do basename "$f" .rs; done
}

usage() {
  echo "usage: deploy/dev/fuzz.sh TARGET SECONDS [libFuzzer args...] | --list" >&2
  echo "targets: $(targets | tr '\n' ' ')" >&2
  exit 2
}

if [[ ${1:-} == --list ]]; then
  targets
  exit 0
fi
[[ $# -ge 2 ]] || usage
target=$1
seconds=$2
shift 2
targets | grep -x -- "$target" >/dev/null || { echo "fuzz.sh: no target $target" >&2; usage; }
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive integer, got $seconds" >&2; usage; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

corpus="$fuzz_dir/corpus/$target"
artifacts="$fuzz_dir/artifacts/$target"
mkdir -p "$corpus" "$artifacts" "$fuzz_dir/target"
if [[ -d $fuzz_dir/seeds/$target ]]; then
  cp -n "$fuzz_dir/seeds/$target"/* "$corpus"/ 2>/dev/null || true
fi
log="$fuzz_dir/target/$target.log"
marker="$(mktemp)"
trap 'rm -f "$marker"' EXIT

echo "fuzz.sh: $target for ${seconds} s (corpus $corpus, log $log)"
status=0
cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "$target" "$corpus" -- \
  -max_total_time="$seconds" -timeout=60 -print_final_stats=1 "$@" 2>&1 | tee "$log" || status=$?

if [[ $status -ne 0 ]]; then
  echo >&2
  echo "fuzz.sh: $target failed (exit $status)" >&2
  found=0
  while IFS= read -r f; do
    found=1
    echo "fuzz.sh: failing input: $f" >&2
    echo "  reproduce: cargo +nightly fuzz run --fuzz-dir $fuzz_dir $target $f" >&2
    echo "  minimize:  cargo +nightly fuzz tmin --fuzz-dir $fuzz_dir $target $f" >&2
  done < <(find "$artifacts" -type f -newer "$marker" 2>/dev/null)
  [[ $found -eq 1 ]] || echo "fuzz.sh: no new input in $artifacts (a build error? see $log)" >&2
  exit "$status"
fi

echo
echo "fuzz.sh: $target: no crash in ${seconds} s"
grep -E '^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units' "$log" || true
echo "corpus: $(find "$corpus" -type f | wc -l) inputs in $corpus"
