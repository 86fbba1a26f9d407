# Shared shell helpers; sourced by the other scripts.

# start_greeter BINARY DIR: starts the example server on a free loopback
# port with a development certificate in DIR; sets GREETER_PID and
# GREETER_ADDR, and the CA is DIR/certs/ca.pem. Waits (bounded) for the
# server to say where it listens.
start_greeter() {
  local bin=$1 dir=$2
  "$bin" --addr 127.0.0.1:0 --dev-cert-dir "$dir/certs" >"$dir/server.log" 2>&1 &
  GREETER_PID=$!
  for _ in $(seq 1 300); do
    grep -q "greeter listening on" "$dir/server.log" && break
    kill -0 "$GREETER_PID" 2>/dev/null || { cat "$dir/server.log"; return 1; }
    sleep 0.1
  done
  GREETER_ADDR=$(sed -n 's/^greeter listening on //p' "$dir/server.log")
  [ -n "$GREETER_ADDR" ] || { echo "the example server did not start:"; cat "$dir/server.log"; return 1; }
}

# stop_greeter: graceful stop (SIGINT) of the server start_greeter started.
stop_greeter() {
  kill -INT "$GREETER_PID" 2>/dev/null || true
  wait "$GREETER_PID" 2>/dev/null || true
}
