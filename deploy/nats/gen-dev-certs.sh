#!/usr/bin/env bash
# Generates a DEV-ONLY certificate authority and one server certificate for the 3-node NATS
# cluster (client and route TLS of cluster.conf), valid for nats-1..nats-3, the Kubernetes
# service names, localhost and 127.0.0.1. Used by the compose stack; a real deployment takes
# its certificates from the municipality's or vendor's PKI.
#
#   deploy/nats/gen-dev-certs.sh [OUT_DIR]     # default: deploy/compose/tls (git-ignored)
#
# Writes ca.pem, ca-key.pem, server.pem, server-key.pem. Needs openssl.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/deploy/compose/tls}"
mkdir -p "$out"
cd "$out"
days=825
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=Shirase dev CA" -keyout ca-key.pem -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=nats" \
  -keyout server-key.pem -out server.csr 2>/dev/null
cat > server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
# serverAuth for clients and incoming routes, clientAuth for outgoing routes (mutual TLS).
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:nats-1,DNS:nats-2,DNS:nats-3,DNS:nats,DNS:*.nats-headless,DNS:*.nats-headless.shirase.svc.cluster.local,DNS:nats.shirase.svc.cluster.local,DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
  -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 0644 ca.pem server.pem
# Readable by the nats user of the container (uid 1000 in some images): dev only.
chmod 0644 server-key.pem
chmod 0600 ca-key.pem
echo "gen-dev-certs: wrote ca.pem, server.pem, server-key.pem to $out"
