#!/usr/bin/env bash
# On a lent GPU machine (see prepare.sh): the hardware kernel checks, mien's benchmark, one
# FER2013-sized epoch, and the PyTorch / Keras peers on the same GPU. Every part has its own
# time limit and writes under $OUT as it goes (at most 8 files come back).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mien-gpu-out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export MIEN_CACHE_DIR=/tmp/mien-cache RUST_LOG=warn
B=.gpu
part() { echo "== $1 ($(date +%T))"; }
{
  part env; nvidia-smi -L; nvidia-smi --query-gpu=driver_version,clocks.sm,clocks.mem --format=csv
  part "kernel tests (hardware cooperative matrices included)"
  timeout 80 $B/kernels --test-threads=8 2>&1 | tail -40
} > "$OUT/tests.log" 2>&1
{
  part "coop block shapes (seed-cnn convs, dense 4608->512, 512->7), beside tiled"
  timeout 80 $B/kernels coop_timing --ignored --nocapture --test-threads=1 2>&1 | grep -vE "^(running|test |$)"
} > "$OUT/coop.log" 2>&1
{
  part bench
  timeout "${BENCH_S:-170}" $B/bench --quick --json "$OUT/bench.json" --models seed-cnn,seed-dnn --batch 64,256 \
    --kernel-batch 256 --infer-batch 256 --precision f32,mixed ${BENCH_ARGS:-}
} > "$OUT/bench.log" 2>&1
{
  for p in f32 mixed; do
    part "FER2013-sized epochs (28,709 synthetic faces, seed-cnn, batch 256, --precision $p)"
    timeout 45 $B/train --synthetic 28709 --model seed-cnn --batch 256 --epochs 2 --precision $p --out /tmp/mien-run-$p --quiet ${TRAIN_ARGS:-}
    cat /tmp/mien-run-$p/history.csv
  done
} > "$OUT/train.log" 2>&1
{
  part "PyTorch peer"
  timeout 60 python3 $B/torch_peer.py --models seed-cnn --batches 64,256 --modes fp32,bf16 --seconds 2
  part "Keras peer (JAX)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site timeout 90 python3 $B/keras_gpu_peer.py 64,256
} > "$OUT/peers.log" 2>&1
tail -n 3 "$OUT"/*.log
