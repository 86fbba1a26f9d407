#!/usr/bin/env bash
# Runs the Greeter example: starts the server (with a fresh development
# certificate), calls it with the client, then stops the server with
# Ctrl-C (SIGINT) for a graceful shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release -p greeter --bins
dir=$(mktemp -d)
log="$dir/server.log"
./target/release/greeter-server --addr 127.0.0.1:0 --dev-cert-dir "$dir/certs" >"$log" 2>&1 &
server=$!
cleanup() { kill -INT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

# Wait (bounded) for the server to say where it listens.
for _ in $(seq 1 100); do
  grep -q "greeter listening on" "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
addr=$(sed -n 's/^greeter listening on //p' "$log")
[ -n "$addr" ] || { echo "server did not start:"; cat "$log"; exit 1; }
echo "--- server: $(grep 'development CA' "$log")"
echo "--- server: greeter listening on $addr"
echo "--- client:"
./target/release/greeter-client --addr "$addr" --ca "$dir/certs/ca.pem" --name Ada --n 3 --bench 2000
