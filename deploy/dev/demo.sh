#!/usr/bin/env bash
# The Shirase demo. For now it starts the pinned nats-server with JetStream on 127.0.0.1 and says
# what is not built yet; the demo issue completes it (relay, agents, provider-sim, live view).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bin="$("$root/deploy/dev/install-nats-server.sh")"
data="$root/demo-data"
mkdir -p "$data/nats"
conf="$data/nats-server.conf"
cat > "$conf" <<CONF
server_name: demo
listen: 127.0.0.1:4222
http: 127.0.0.1:8222
jetstream { store_dir: "$data/nats", sync_interval: always }
CONF
"$bin" -c "$conf" > "$data/nats-server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8222/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
echo "demo: nats-server $("$bin" --version) is up at nats://127.0.0.1:4222 (monitoring http://127.0.0.1:8222)"
echo "demo: not built yet: relay, agents and provider-sim; they arrive with their issues."
if [[ "${1:-}" == "--keep-running" ]]; then
  echo "demo: --keep-running: press Ctrl-C to stop"
  wait $pid
fi
