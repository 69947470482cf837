#!/bin/bash
# One device call: the CUDA tests, then the GPU stages (orient, features, pairs, screen, matches) of kyiv timed
# per config, from `.dev/` built by tests/device/prepare_carry.py (read its docstring). No pycolmap there, so no
# verification or mapping. Usage: bash tests/device/gpu_stages.sh [cuda|cpu] [key=value overrides...]
# Figures of its first runs: README "Measured", "The GPU".
export PYTHONUNBUFFERED=1
DEV=${1:-cuda}; shift
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
R=$PWD
PY=${PY:-python3}
export PYTHONPATH=/tmp/site:$R/.dev/stub IMC_WEIGHTS_DIR=/tmp/w IMC_SHARED=$R/.dev/shared
if [ ! -d /tmp/site/kornia ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/whl/*.whl || exit 1
fi
{
nvidia-smi -L 2>&1; $PY -c "import torch;print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
$PY tests/device/prepare_carry.py --restore .dev/w /tmp/w
} 2>&1 | tee $OUT/setup.log
if [ "$DEV" = cuda ]; then
  timeout 100 $PY -m pytest -m gpu tests/test_gpu.py tests/test_preflight.py -q -p no:cacheprovider 2>&1 | tee $OUT/pytest.log
fi
STAGES=${STAGES:-"orient features pairs screen matches"}
ROOT=$R/.dev/shared/data/real/imc2023/train
for c in default accurate aliked_default; do
  C=/tmp/cache_$c; rm -rf $C
  for s in $STAGES; do
    t0=$EPOCHREALTIME
    timeout 200 $PY -m imc stage $s --config configs/$c.yaml data.root=$ROOT 'data.scenes=["urban/kyiv-puppet-theater"]' \
      cache_dir=$C device=$DEV progress=false "$@" 2>&1 | grep -v "^$" | tail -3
    echo "TIMING $c $s wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s"
  done
done 2>&1 | tee $OUT/timing.log
