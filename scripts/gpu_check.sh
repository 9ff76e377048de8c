#!/usr/bin/env bash
# GPU check for issue 12 (Triton selective scan; the paper-protocol step on one GPU). Written for an H100 80GB,
# about 8 minutes in all; every stage has its own time limit so one slow stage cannot eat the others.
# Nobody has run it yet: the sessions that wrote it had no GPU.
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu_check_out/; PYTHON=... picks the interpreter
#                                              # (default .venv/bin/python if present, else python)
#
# Stages (each one's output goes to OUT_DIR/<stage>.log, JSON results to OUT_DIR/*.json):
#   1. environment: nvidia-smi, torch / triton / transformers versions, mamba-ssm / mambapy importable?
#   2. CUDA tests: the Triton scan compiled on the GPU (values + gradients vs the sequential reference, a
#      mamba-130m layer shape vs our PyTorch scan, backward memory at the mamba-1.4b layer shape), the dispatch
#      (probes-triton picked on CUDA without mamba-ssm), the bench CLI, the VLM pruning counter test.
#   3. `probes bench mamba-path` on mamba-small, B=64, L=200: every path present, ms/step and peak memory.
#   4. `probes bench step --paper-targets --device cuda`: pythia-small, mamba-small, pythia-1.4b-shape,
#      mamba-1.4b-shape one at a time at B=64, L=200, bf16; prints ms/step, MFU, peak memory and the
#      issue's targets table (ratio <= 1.5x / <= 2x, peak <= 40 GB, Pythia-1.4B MFU >= 45%).
#   5. the same with --compile, Pythia only (what torch.compile buys on the attention side), if time allows.
set -u
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
start=$(date +%s)
stage() {  # stage NAME SECONDS CMD...: run with a time limit, tee to OUT/NAME.log, report status
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s) ==="
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc, $(( $(date +%s) - start ))s elapsed ==="
}

stage env 60 bash -c "nvidia-smi; $PY - <<'PY'
import importlib.util, torch, transformers
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))
print('transformers', transformers.__version__)
try:
    import triton; print('triton', triton.__version__)
except ImportError:
    print('triton missing')
for m in ('mamba_ssm', 'causal_conv1d', 'mambapy'):
    print(m, 'importable' if importlib.util.find_spec(m) else 'absent')
PY"

stage tests 150 "$PY" -m pytest -q -x tests/test_triton_scan.py tests/test_ssm_patch.py tests/test_vlm_pruning.py \
  tests/test_bench_cli.py -p no:cacheprovider

stage mamba_path 90 "$PY" -m probes bench mamba-path --model mamba-small --len 200 --batch-size 64 --steps 5 \
  --skip-slow --device cuda --json "$OUT/mamba_path.json"

stage step_targets 210 "$PY" -m probes bench step --paper-targets --batch-size 64 --len 200 --steps 5 --device cuda \
  --json "$OUT/step_targets.json"

stage step_compile 90 "$PY" -m probes bench step --models pythia-small,pythia-1.4b-shape --batch-size 64 --len 200 \
  --steps 5 --device cuda --compile --json "$OUT/step_compile.json"

echo "done in $(( $(date +%s) - start ))s; logs and JSON in $OUT/"
