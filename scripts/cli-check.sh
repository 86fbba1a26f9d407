#!/usr/bin/env bash
# The `knafeh` command line against the example server binary
# (greeter-server, health on): list, describe, a call of each kind, health,
# a request refused before sending, and the exit statuses. The CLI's own
# tests (knafeh-cli/tests) cover the rest in process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/lib.sh
reuse_boringssl

cargo build -q -p greeter --bins
cargo build -q -p knafeh-cli
dir=$(mktemp -d)
trap 'stop_greeter; rm -rf "$dir"' EXIT
start_greeter ./target/debug/greeter-server "$dir"
knafeh() { timeout 30 ./target/debug/knafeh "$@" --ca "$dir/certs/ca.pem"; }
fails=0
expect() { # expect NAME WANT GOT
  if [ "$2" == "$3" ]; then echo "ok   $1"; else echo "FAIL $1: want [$2], got [$3]"; fails=$((fails + 1)); fi
}
expect list "helloworld.Greeter knafeh.Describe knafeh.Health" "$(knafeh list "$GREETER_ADDR" | tr '\n' ' ' | sed 's/ $//')"
expect describe "    rpc say_hello(HelloRequest) -> HelloReply;  // unary" \
  "$(knafeh describe "$GREETER_ADDR" helloworld.Greeter/say_hello | grep 'rpc say_hello')"
expect unary '{"message":"Hello, Ada!"}' "$(knafeh call "$GREETER_ADDR" helloworld.Greeter/say_hello '{"name":"Ada"}')"
expect server-streaming '{"value":1} {"value":2}' \
  "$(knafeh call "$GREETER_ADDR" helloworld.Greeter/count_to '{"n":2}' | tr '\n' ' ' | sed 's/ $//')"
expect client-streaming '{"sum":3,"count":2}' \
  "$(printf '{"value":1}\n{"value":2}\n' | knafeh call "$GREETER_ADDR" helloworld.Greeter/add_up)"
expect bidi '{"message":"Hello, A!"} {"message":"Hello, B!"}' \
  "$(printf '{"name":"A"}\n{"name":"B"}\n' | knafeh call "$GREETER_ADDR" helloworld.Greeter/chat | tr '\n' ' ' | sed 's/ $//')"
expect health SERVING "$(knafeh health "$GREETER_ADDR")"
expect health-service SERVING "$(knafeh health "$GREETER_ADDR" helloworld.Greeter)"
set +e
err=$(knafeh call "$GREETER_ADDR" helloworld.Greeter/say_hello '{"name":1}' 2>&1 >/dev/null); rc=$?
set -e
expect refused-before-sending "3 INVALID_ARGUMENT: name: expected str, got number" "$rc $err"
set +e
err=$(knafeh call "$GREETER_ADDR" helloworld.Greeter/say_hello '{"name":""}' 2>&1 >/dev/null); rc=$?
set -e
expect server-status "3 INVALID_ARGUMENT: name must not be empty" "$rc $err"
echo "cli: $fails failed"
[ "$fails" -eq 0 ]
