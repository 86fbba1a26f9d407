#!/usr/bin/env bash
# Protocol conformance: an HTTP/3 client written from PROTOCOL.md alone
# (Python + aioquic, tests/independent/) calls the example server with the
# JSON codec. Creates a virtualenv under target/ for aioquic.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/conformance-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import aioquic" 2>/dev/null || "$venv/bin/pip" install -q aioquic

cargo build -q -p greeter --bins
dir=$(mktemp -d)
log="$dir/server.log"
./target/debug/greeter-server --addr 127.0.0.1:0 --dev-cert-dir "$dir/certs" >"$log" 2>&1 &
server=$!
cleanup() { kill -INT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q "greeter listening on" "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
addr=$(sed -n 's/^greeter listening on //p' "$log")
[ -n "$addr" ] || { echo "the example server did not start:"; cat "$log"; exit 1; }
timeout 180 "$venv/bin/python" tests/independent/h3_json_client.py --addr "$addr" --ca "$dir/certs/ca.pem"
