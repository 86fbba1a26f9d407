#!/usr/bin/env bash
# Builds the Python extensions (knafeh-py as `knafeh`, examples/greeter-py
# as `greeter`) with maturin into a virtualenv under target/, then runs
# the pytest suite against the Rust example server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Every build below (maturin's, the example's) points boring-sys at the
# BoringSSL the workspace's test build compiled, if there is one, instead
# of compiling BoringSSL again: their feature sets differ from the
# workspace build's, so cargo would otherwise build boring-sys anew.
reuse_boringssl

venv=target/py-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import maturin, pytest" 2>/dev/null || "$venv/bin/pip" install -q "maturin>=1.7,<2" pytest
export VIRTUAL_ENV="$PWD/$venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
(cd knafeh-py && maturin develop -q)
(cd examples/greeter-py && maturin develop -q)
(cd tests/python/probe && maturin develop -q)
cargo build -q -p greeter --bins
timeout 600 python -m pytest -q -p no:cacheprovider tests/python
