#!/usr/bin/env bash
# Python benchmark: knafeh's generated Python clients (asyncio and blocking)
# against the knafeh Rust echo server, next to grpcio's clients against the
# tonic echo server. Builds the extensions in release into a virtualenv
# under target/, runs bench/python/bench.py (which starts and stops the
# servers) and prints a table. Extra arguments go to bench.py
# (--rounds N, --duration SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

venv=target/bench-py-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import maturin, grpc" 2>/dev/null || "$venv/bin/pip" install -q "maturin>=1.7,<2" grpcio
export VIRTUAL_ENV="$PWD/$venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
(cd knafeh-py && maturin develop --release -q)
(cd bench/py && maturin develop --release -q)
cargo build --release -q -p knafeh-bench
timeout 900 python bench/python/bench.py --bench-bin target/release/knafeh-bench "$@"
