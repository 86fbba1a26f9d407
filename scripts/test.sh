#!/usr/bin/env bash
# Runs every test: unit tests, trybuild UI tests, end-to-end tests over
# loopback QUIC, doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo test --workspace

# The wire protocol as PROTOCOL.md describes it, checked by a client that
# shares no code with knafeh.
./scripts/conformance.sh
