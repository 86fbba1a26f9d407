#!/usr/bin/env bash
# Protocol conformance: an HTTP/3 client written from PROTOCOL.md alone
# (Python + aioquic, tests/independent/) calls the example server with the
# JSON codec. Creates a virtualenv under target/ for aioquic.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/lib.sh
# The example is built as python-tests.sh builds it (see there).
reuse_boringssl

venv=target/conformance-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import aioquic" 2>/dev/null || "$venv/bin/pip" install -q aioquic

cargo build -q -p greeter --bins
dir=$(mktemp -d)
trap 'stop_greeter; rm -rf "$dir"' EXIT
start_greeter ./target/debug/greeter-server "$dir"
timeout 180 "$venv/bin/python" tests/independent/h3_json_client.py --addr "$GREETER_ADDR" --ca "$dir/certs/ca.pem"
