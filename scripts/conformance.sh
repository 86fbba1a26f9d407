#!/usr/bin/env bash
# Protocol conformance: an HTTP/3 client written from PROTOCOL.md alone
# (Python + aioquic, tests/independent/h3_json_client.py) calls the example
# server with the JSON codec, all four call kinds; then libcurl (through
# curl_cffi, whose wheel bundles a libcurl with HTTP/3) calls it over HTTP/3
# only (tests/independent/curl_client.py), including answers the server
# sends before the request ended. Creates a virtualenv under target/ for
# both packages.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/lib.sh
# The example is built as python-tests.sh builds it (see there).
reuse_boringssl

venv=target/conformance-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# aioquic 1.x; curl_cffi 0.17.x (0.x: a minor release may change the API).
"$venv/bin/python" -c "import aioquic, curl_cffi" 2>/dev/null \
  || "$venv/bin/pip" install -q 'aioquic>=1,<2' 'curl_cffi>=0.17,<0.18'

cargo build -q -p greeter --bins
dir=$(mktemp -d)
trap 'stop_greeter; rm -rf "$dir"' EXIT
start_greeter ./target/debug/greeter-server "$dir"
rc=0
timeout 180 "$venv/bin/python" tests/independent/h3_json_client.py --addr "$GREETER_ADDR" --ca "$dir/certs/ca.pem" || rc=1
timeout 120 "$venv/bin/python" tests/independent/curl_client.py --addr "$GREETER_ADDR" --ca "$dir/certs/ca.pem" || rc=1
exit $rc
