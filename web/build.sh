#!/usr/bin/env bash
# Build the web page into web/dist: the wasm crate (web/, release, wasm32-unknown-unknown),
# wasm-bindgen's ES-module glue (--target web) and the static files, plus the shipped demo
# model (data/web/demo, made by `export`). With --serve, then serve web/dist on
# http://localhost:${PORT:-8000} (python3's http.server; any static server will do: the
# page needs no server code, only a secure context, which localhost is).
#
# Needs: rustup target add wasm32-unknown-unknown, and the wasm-bindgen CLI of exactly the
# wasm-bindgen version in Cargo.lock:
#   cargo install wasm-bindgen-cli --version <it> --no-default-features --bin wasm-bindgen
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "error: web/build.sh needs wasm-bindgen-cli $want (Cargo.lock's wasm-bindgen), found: ${have:-none}." >&2
  echo "       cargo install wasm-bindgen-cli --version $want --no-default-features --bin wasm-bindgen" >&2
  exit 1
fi
cargo build --release -p mien-web --target wasm32-unknown-unknown
rm -rf web/dist
mkdir -p web/dist/pkg web/dist/models
wasm-bindgen --target web --no-typescript --out-dir web/dist/pkg target/wasm32-unknown-unknown/release/mien_web.wasm
cp web/index.html web/app.js web/style.css web/dist/
cp -r data/web/demo web/dist/models/demo
echo "built web/dist ($(du -sh web/dist | cut -f1)); serve it: python3 -m http.server -d web/dist 8000"
if [ "${1:-}" = "--serve" ]; then
  exec python3 -m http.server -d web/dist "${PORT:-8000}"
fi
