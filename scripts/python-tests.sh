#!/usr/bin/env bash
# Builds the Python extensions (knafeh-py as `knafeh`, examples/greeter-py
# as `greeter`) with maturin into a virtualenv under target/, then runs
# the pytest suite against the Rust example server (test_stubs.py also
# checks that the example's .pyi is what `python -m knafeh.stubgen greeter`
# writes, and runs mypy --strict on tests/python/typing/).
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
# mypy (with typing_extensions) for tests/python/test_stubs.py, which
# type-checks the generated stubs.
"$venv/bin/python" -c "import maturin, pytest, mypy" 2>/dev/null ||
    "$venv/bin/pip" install -q "maturin>=1.7,<2" pytest "mypy>=1.11"
export VIRTUAL_ENV="$PWD/$venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
(cd knafeh-py && maturin develop -q)
(cd examples/greeter-py && maturin develop -q)
(cd tests/python/probe && maturin develop -q)
cargo build -q -p greeter --bins
# test_health.py checks a Python server's health with the `knafeh` command line.
cargo build -q -p knafeh-cli
timeout 600 python -m pytest -q -p no:cacheprovider tests/python
