#!/usr/bin/env bash
# The accelerator checks, as one call on a machine with a GPU (or TPU) whose Python already has JAX
# for it: proves the non-CPU path end to end and measures bfloat16 against float32.
#
#   bash tools/accel_check.sh            # logs and JSON under $OUT (default /tmp/accel-check)
#
# 1. `netspec train specs/lenet.yaml` in float32 on the accelerator (the README's main job);
# 2. tools/bench_accel.py: netspec vs hand-written Flax (and PyTorch when it sees CUDA), float32 and
#    bfloat16, LeNet and ResNet-18;
# 3. the lowering, kernel, training-loop and device-mesh tests on the accelerator, at float32's full
#    precision (their references are float64 NumPy; the matrix units' TF32 default would fail them by
#    design). The whole suite runs there too (about 5.5 minutes with -n 14 on 16 cores), but not in
#    this script: a lease is short;
# 4. `netspec train specs/lenet.yaml --dtype bfloat16`.
# Wheels in .whl/ (what that machine's Python lacks, e.g. pydantic) are installed first. Each step has
# its own time limit, so a slow one costs only itself; the summary at the end names each step's status.
set -u
OUT=${OUT:-/tmp/accel-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
RUNS=$(mktemp -d)
declare -A status

step() {  # step NAME SECONDS CMD...: run CMD with a limit, log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T), limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  status[$name]=${PIPESTATUS[0]}
}

{ nvidia-smi -L 2>/dev/null; $PY -c "import jax, flax, optax, orbax.checkpoint as o, pydantic, sys
print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__,
      'orbax', o.__version__, 'pydantic', pydantic.__version__); print(jax.devices())"; } 2>&1 | tee "$OUT/env.log"

step train_f32 90 $PY -m netspec.cli train specs/lenet.yaml --progress plain -o "$RUNS/f32"
cp "$RUNS/f32/run.json" "$OUT/run_f32.json" 2>/dev/null
step bench 200 $PY tools/bench_accel.py --json "$OUT/bench.json"
step tests 150 env JAX_DEFAULT_MATMUL_PRECISION=highest $PY -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 --timeout 120 \
  tests/test_kernels_conv.py tests/test_kernels_pool.py tests/test_lowering_layers.py tests/test_lowering_grad.py \
  tests/test_lowering_kernels_reference.py tests/test_lowering_nets.py tests/test_lowering_api.py \
  tests/test_lowering_nd.py tests/test_train_loop.py tests/test_distributed.py
step train_bf16 60 $PY -m netspec.cli train specs/lenet.yaml --dtype bfloat16 --progress plain -o "$RUNS/bf16"
cp "$RUNS/bf16/run.json" "$OUT/run_bf16.json" 2>/dev/null

echo "=== summary"
for name in train_f32 bench tests train_bf16; do echo "$name: exit ${status[$name]:-not run}"; done
grep -h -E "^test accuracy|[0-9]+ (passed|failed)" "$OUT/train_f32.log" "$OUT/tests.log" "$OUT/train_bf16.log"
