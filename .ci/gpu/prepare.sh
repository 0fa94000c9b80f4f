#!/usr/bin/env bash
# Prepare, on this machine, what .ci/gpu/run.sh runs on a lent GPU machine (the `device`
# tool of this workplace; CI never runs either). Builds the release binaries and the kernel
# test binary, strips them into .gpu/, adds the PyTorch and Keras peers from ../shared/device,
# the Vulkan loader (.gl/, Debian packages) and the Keras wheels (.whl/). All three folders are
# git-ignored; name them in the run's `carry`:
#   carry: [".gl", ".gpu", ".whl"]   command: bash .ci/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bins
# The kernel tests (hardware cooperative-matrix checks among them) as a binary.
kernels=$(cargo test --release --no-run --test kernels --message-format=json 2>/dev/null |
  python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="kernels" and m.get("executable"): print(m["executable"])')
rm -rf .gpu && mkdir -p .gpu
for b in bench train; do strip -o ".gpu/$b" "target/release/$b"; done
strip -o .gpu/kernels "$kernels"
peers=../shared/device
[ -d "$peers" ] && cp "$peers"/torch_peer.py "$peers"/keras_gpu_peer.py .gpu/
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq && (cd .gl && apt-get $o download libvulkan1)
fi
if ! ls .whl/keras-*.whl >/dev/null 2>&1; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl keras namex optree
fi
du -sh .gpu .gl .whl
