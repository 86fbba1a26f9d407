#!/usr/bin/env bash
# Draws the CSV of `knafeh-bench scale --csv` as a PNG with matplotlib,
# from a virtualenv under the build directory ($CARGO_TARGET_DIR, or
# target/), created (and matplotlib installed into it) on first use.
#
#   bench/plot.sh [SCALE.csv [OUT.png]]   (defaults: bench/results/scale.csv, bench/results/scale.png)
set -euo pipefail
cd "$(dirname "$0")/.."
csv=${1:-bench/results/scale.csv}
png=${2:-bench/results/scale.png}
venv=${CARGO_TARGET_DIR:-target}/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import matplotlib" 2>/dev/null || "$venv/bin/pip" install -q "matplotlib>=3.7,<4"
"$venv/bin/python" bench/plot_scale.py "$csv" "$png"
echo "chart: $png"
