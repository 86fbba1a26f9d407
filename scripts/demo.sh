#!/usr/bin/env bash
# Runs the Greeter example: starts the server (with a fresh development
# certificate), calls it with the client, then stops the server with
# Ctrl-C (SIGINT) for a graceful shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/lib.sh

cargo build --release -p greeter --bins
dir=$(mktemp -d)
trap 'stop_greeter; rm -rf "$dir"' EXIT
start_greeter ./target/release/greeter-server "$dir"
echo "--- server: $(grep 'development CA' "$dir/server.log")"
echo "--- server: greeter listening on $GREETER_ADDR"
echo "--- client:"
./target/release/greeter-client --addr "$GREETER_ADDR" --ca "$dir/certs/ca.pem" --name Ada --n 3 --add-up 1,2,3 --chat Ada,Grace --bench 2000
