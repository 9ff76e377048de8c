#!/usr/bin/env bash
# GPU check: the Triton selective scan compiled on a real GPU, its self-check, and the paper-protocol step on
# one GPU (README "Performance"). About 8 minutes on an H100/H200; every stage has its own time limit so one
# slow stage cannot eat the others.
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu_check_out/; PYTHON=... picks the interpreter
#                                              # (default .venv/bin/python if present, else python)
#   STAGES="doctor tests" bash scripts/gpu_check.sh   # a subset of the stages, in this order
#
# Stages (each one's output goes to OUT_DIR/<stage>.log, JSON results to OUT_DIR/*.json):
#   doctor:       `probes doctor`: versions, the device, every Mamba path and its self-check on this GPU, the
#                 path a run would use, bf16 / fused AdamW / SDPA kernels.
#   tests:        the CUDA tests: the Triton scan compiled (values + gradients vs the sequential reference, a
#                 mamba-130m layer shape vs our PyTorch scan, backward memory at the mamba-1.4b layer shape),
#                 the dispatch and self-check, the bench CLI, the VLM pruning counter test.
#   mamba_path:   `probes bench mamba-path` on mamba-small, B=64, L=200: every path present, ms/step, memory.
#   step_targets: `probes bench step --paper-targets --device cuda`: pythia-small, mamba-small,
#                 pythia-1.4b-shape, mamba-1.4b-shape one at a time at B=64, L=200, bf16; ms/step, MFU, peak
#                 memory and the targets table (ratio <= 1.5x / <= 2x, peak <= 40 GB, Pythia-1.4B MFU >= 45%).
#   step_compile: the same with --compile, Pythia only (what torch.compile buys on the attention side).
set -u
OUT=${1:-gpu_check_out}
STAGES=${STAGES:-doctor tests mamba_path step_targets step_compile}
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
start=$(date +%s)
stage() {  # stage NAME SECONDS CMD...: run with a time limit, tee to OUT/NAME.log, report status
  local name=$1 limit=$2; shift 2
  case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
  echo "=== $name (limit ${limit}s) ==="
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc, $(( $(date +%s) - start ))s elapsed ==="
}

stage doctor 90 "$PY" -m probes doctor --json "$OUT/doctor.json"

stage tests 150 "$PY" -m pytest -q -n 4 tests/test_triton_scan.py tests/test_ssm_patch.py tests/test_ssm_selfcheck.py \
  tests/test_vlm_pruning.py tests/test_bench_cli.py -p no:cacheprovider

stage mamba_path 90 "$PY" -m probes bench mamba-path --model mamba-small --len 200 --batch-size 64 --steps 5 \
  --skip-slow --device cuda --json "$OUT/mamba_path.json"

stage step_targets 200 "$PY" -m probes bench step --paper-targets --batch-size 64 --len 200 --steps 5 --device cuda \
  --json "$OUT/step_targets.json"

stage step_compile 90 "$PY" -m probes bench step --models pythia-small,pythia-1.4b-shape --batch-size 64 --len 200 \
  --steps 5 --device cuda --compile --json "$OUT/step_compile.json"

echo "done in $(( $(date +%s) - start ))s; logs and JSON in $OUT/"
