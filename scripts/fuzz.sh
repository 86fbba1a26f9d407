#!/usr/bin/env bash
# Fuzzes knafeh's parsers with cargo-fuzz (libFuzzer, AddressSanitizer) for
# a fixed time per target, and prints one summary line per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 60 seconds, every target in fuzz/Cargo.toml. Exits non-zero if a
# target crashed, failed a check, hung (an input taking over 10 s) or could
# not be built; the input that did it is in fuzz/artifacts/TARGET/ and the
# log in fuzz/logs/TARGET.log. Corpora grow in fuzz/corpus/TARGET/ (the
# hand-written seed-* files are committed, the rest is git-ignored).
# Builds go to fuzz/target (fuzz builds use their own compiler flags).
# Replay one input: fuzz/target/x86_64-unknown-linux-gnu/release/TARGET FILE
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
case $secs in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

# cargo-fuzz needs nightly flags (-Z sanitizer, ...): use the nightly
# toolchain when rustup has one, else let stable accept them.
cargo=(cargo)
if rustup run nightly rustc --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  echo "fuzz.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

fuzz_args=(--fuzz-dir fuzz --target-dir fuzz/target)
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${cargo[@]}" fuzz list --fuzz-dir fuzz)
fi

echo "fuzz.sh: building ${targets[*]} (${cargo[*]} fuzz build)" >&2
for t in "${targets[@]}"; do
  "${cargo[@]}" fuzz build "${fuzz_args[@]}" "$t"
done

mkdir -p fuzz/logs
failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/logs/$t.log"
  extra=()
  case $t in
    metadata | request) extra+=(-dict=fuzz/dict/headers.dict) ;;
  esac
  echo "fuzz.sh: running $t for ${secs}s" >&2
  set +e
  "${cargo[@]}" fuzz run "${fuzz_args[@]}" "$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${extra[@]}" \
    >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  status_line=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status_line")
  if [ $rc -eq 0 ]; then
    result=ok
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    result="FAILED (exit $rc${artifact:+, input $artifact}; log $log)"
    # The panic or sanitizer report, for the console.
    grep -E -m 8 "panicked at|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY" "$log" >&2 || tail -n 20 "$log" >&2
  fi
  summary+=("$(printf '%-14s runs=%-10s cov=%-6s features=%-6s corpus=%-6s result=%s' \
    "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

echo "fuzz.sh: ${secs}s per target"
printf '%s\n' "${summary[@]}"
exit $failed
