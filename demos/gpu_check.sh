#!/usr/bin/env bash
# The GPU check: run everything minillm claims on CuPy, on a machine with an NVIDIA GPU.
#
#   bash demos/gpu_check.sh                      # logs and a summary in out/gpu_check/
#   DATA=path/to/tinyshakespeare.txt TRAIN_SECONDS=240 bash demos/gpu_check.sh
#
# 1. installs what it needs (CuPy through the `gpu` extra only if it is missing),
# 2. runs the test suite with MINILLM_BACKEND=cupy (the parity tests compare
#    NumPy and CuPy results on the same inputs),
# 3. times training (baby and nanoGPT Shakespeare-char configs) and generation
#    (with and without the KV cache) on CuPy and, for the speed-up, on NumPy,
# 4. trains the nanoGPT Shakespeare-char config for TRAIN_SECONDS on $DATA,
# and prints a summary. Each step has its own time limit, so one failure does
# not hide the rest.
set -u
cd "$(dirname "$0")/.."
LOG=${LOG:-out/gpu_check}
TRAIN_SECONDS=${TRAIN_SECONDS:-240}
SUITE_SECONDS=${SUITE_SECONDS:-360}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1

# -- 1. install: reuse a CuPy that is already there, never reinstall it
if ! python -c "import cupy" 2>/dev/null; then
  python -m pip install -e ".[gpu,test]" || { echo "could not install CuPy"; exit 1; }
elif ! python -c "import minillm" 2>/dev/null; then
  python -m pip install --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
python - <<'PY' | tee "$LOG/device.txt"
import cupy
props = cupy.cuda.runtime.getDeviceProperties(0)
print("GPU:", props["name"].decode(), "| CuPy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion())
PY

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the log and the exit code
  local name=$1 seconds=$2; shift 2
  echo "=== $name (limit ${seconds}s): $*"
  local start=$SECONDS
  timeout -s INT -k 10 "$seconds" "$@" > "$LOG/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start))s" | tee -a "$LOG/summary.txt"
  tail -n 25 "$LOG/$name.log"
}

: > "$LOG/summary.txt"
# -- 2. the suite on CuPy
step suite "$SUITE_SECONDS" env MINILLM_BACKEND=cupy python -m pytest -q --hypothesis-profile=ci -rs -p no:cacheprovider
# -- 3. benchmarks, CuPy then NumPy on the same machine
step bench_train_cupy 150 env MINILLM_BACKEND=cupy python demos/bench_train.py --config baby --config nanogpt --no-torch
step bench_train_numpy 120 env MINILLM_BACKEND=numpy python demos/bench_train.py --config baby --config nanogpt --iters 3 --warmup 1 --no-torch
step bench_generate_cupy 120 env MINILLM_BACKEND=cupy python demos/bench_generate.py --config shakespeare-char --lengths 64,256 --repeats 2
step bench_generate_numpy 120 env MINILLM_BACKEND=numpy python demos/bench_generate.py --config shakespeare-char --lengths 64,256 --repeats 2
# -- 4. the nanoGPT Shakespeare-char run, stopped (with a checkpoint) after TRAIN_SECONDS
if [ -n "${DATA:-}" ]; then
  step train_char "$TRAIN_SECONDS" env MINILLM_BACKEND=cupy python demos/train_shakespeare.py --data "$DATA" \
    --out "$LOG/char" --iters 5000 --eval-every 500 --eval-iters 50 --batch-size 64 --block-size 256 \
    --n-layer 6 --n-head 6 --n-embd 384 --dropout 0.2 --lr 1e-3 --min-lr 1e-4 --warmup-iters 100 \
    --weight-decay 0.1 --grad-clip 1.0 --sample-tokens 300
fi
echo "=== summary"
cat "$LOG/summary.txt"
grep -hE "passed|failed" "$LOG/suite.log" | tail -n 1
