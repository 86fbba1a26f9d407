#!/usr/bin/env bash
# What #[knafeh::service] costs at compile time: `cargo check` of a crate
# with a 50-method service trait, with and without the attribute (the
# same trait and types either way), seven times each after touching the
# source; prints the medians and the difference.
#
#   ./scripts/macro-cost.sh [methods, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
n="${1:-50}"
root="$PWD"
work="$root/target/macro-cost"
rm -rf "$work"
mkdir -p "$work"

make_crate() { # name, attribute line
  local dir="$work/$1"
  mkdir -p "$dir/src"
  cat > "$dir/Cargo.toml" <<TOML
[package]
name = "macro-cost-$1"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
knafeh = { path = "$root/knafeh" }
serde = { version = "1", features = ["derive"] }

[workspace]
TOML
  {
    echo "use knafeh::{Status, Streaming};"
    echo "use serde::{Deserialize, Serialize};"
    echo "#[derive(Serialize, Deserialize)] pub struct Req { pub a: u32, pub b: String }"
    echo "#[derive(Serialize, Deserialize)] pub struct Resp { pub x: Vec<u8> }"
    echo "$2"
    echo "pub trait Big {"
    for i in $(seq 1 "$n"); do
      if (( i % 5 == 0 )); then
        echo "    async fn m$i(&self, req: Req) -> Result<Streaming<Resp>, Status>;"
      else
        echo "    async fn m$i(&self, req: Req) -> Result<Resp, Status>;"
      fi
    done
    echo "}"
  } > "$dir/src/lib.rs"
  # Same dependency versions as the workspace, so nothing else rebuilds.
  cp "$root/Cargo.lock" "$dir/Cargo.lock"
}

make_crate plain ""
make_crate service "#[knafeh::service]"

check_time() { # name -> seconds of one `cargo check` after a touch
  local dir="$work/$1"
  touch "$dir/src/lib.rs"
  local t0 t1
  t0=$(date +%s%N)
  CARGO_TARGET_DIR="$root/target" cargo check -q --manifest-path "$dir/Cargo.toml" >/dev/null
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

median() { sort -n | sed -n 4p; }

# Warm-up: builds the dependencies once.
CARGO_TARGET_DIR="$root/target" cargo check -q --manifest-path "$work/plain/Cargo.toml"
CARGO_TARGET_DIR="$root/target" cargo check -q --manifest-path "$work/service/Cargo.toml"

# Alternating the two, so that load from elsewhere hits both alike.
plain_t=()
service_t=()
for _ in 1 2 3 4 5 6 7; do
  plain_t+=("$(check_time plain)")
  service_t+=("$(check_time service)")
done
plain=$(printf '%s\n' "${plain_t[@]}" | median)
service=$(printf '%s\n' "${service_t[@]}" | median)
echo "cargo check of a ${n}-method trait (median of 7, after touching the file):"
echo "  without #[knafeh::service]: ${plain} ms"
echo "  with    #[knafeh::service]: ${service} ms"
echo "  cost of the macro (expansion + checking what it generates): $(( service - plain )) ms"
