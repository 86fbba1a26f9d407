#!/usr/bin/env bash
# Installs what building knafeh needs and is missing: BoringSSL's build
# wants cmake, and clang + libclang for bindgen. Sourced by the other
# scripts; safe to run again.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v clang >/dev/null || missing+=(clang)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  missing+=(libclang-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

# Exports BORING_BSSL_PATH/BORING_BSSL_INCLUDE_PATH (unless already set) for the first (by name,
# so the choice is stable) BoringSSL build under target/debug that has
# both libraries and the headers; does nothing when there is none.
reuse_boringssl() {
  local out
  # Already pointed at a BoringSSL (by the caller or an earlier call): keep
  # it, so every build of one target directory sees the same value.
  if [ -n "${BORING_BSSL_PATH:-}" ] && [ -f "$BORING_BSSL_PATH/libssl.a" ]; then
    return 0
  fi
  for out in $(ls -d target/debug/build/boring-sys-*/out 2>/dev/null | sort); do
    if [ -f "$out/build/libssl.a" ] && [ -f "$out/build/libcrypto.a" ] \
      && [ -f "$out/boringssl/include/openssl/ssl.h" ]; then
      export BORING_BSSL_PATH="$PWD/$out/build"
      export BORING_BSSL_INCLUDE_PATH="$PWD/$out/boringssl/include"
      return 0
    fi
  done
  return 0
}

