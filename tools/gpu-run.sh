#!/usr/bin/env bash
# One consolidated run on the GPU machine: build, CUDA tests, benchmarks.
#   tools/gpu-run.sh "<pytest args>" "<bench families>"
# Writes logs and JSON to $OUT (the device tool's output folder) when set; timing.txt
# keeps the build, test and benchmark times (the tool's output tail may cut them).
# Call the device tool's give_back right after the last run: a warm machine's idle
# time counts against the session's device budget.
# A/B of the tuning switches in one build (the machine is released ~30 s after a call):
#   bash tools/gpu-run.sh "tests -m cuda" "shift diffconv" && SKIP_BUILD=1 BENCH_TAG=switches \
#     LEARNABLE_OPS_SHIFT_FOLD_TABLE=0 LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST=0 bash tools/gpu-run.sh "" "shift diffconv"
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
repo=$PWD
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"
python3 -m pip list 2>/dev/null | grep -iE "^(timm|torchvision|pytest|expecttest|hypothesis|scikit-build-core|pybind11|cmake|ninja|numpy|matplotlib|scikit-learn|tqdm|torchao) " | tr '\n' ' '; echo
start=$(date +%s)
# SKIP_BUILD=1 reuses the package installed by an earlier call on the same (warm) machine.
if [ -z "${SKIP_BUILD:-}" ]; then
  if ! python3 -m pip install --no-build-isolation --no-deps -v . > "$OUT/build.log" 2>&1; then
    tail -80 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
  fi
  echo "== build: $(( $(date +%s) - start ))s" | tee -a "$OUT/timing.txt"
  # Per-file compile times (start, end ms), to find the build's critical path.
  cat build/*/.ninja_log > "$OUT/ninja_log.txt" 2>/dev/null
  grep -E "learnable_ops: |warning" "$OUT/build.log" | grep -v "torch/include" | sort -u | head -20
fi
cd /tmp && python3 -m learnable_ops info; cd - > /dev/null
# A few-second CUDA-against-CPU check of the recently changed ops, before the long steps, so that
# a call cut at its limit (or a short one: SMOKE_ONLY=1) still says whether they are right.
if [ -z "${SKIP_SMOKE:-}" ]; then
  # Its lines go to timing.txt (the tool returns at most 8 files).
  (cd /tmp && timeout 60 python3 "$repo/tools/smoke_cuda.py" 2>&1 | tee -a "$OUT/timing.txt" | grep -E "BAD|SMOKE|Error")
  echo "== smoke: $(( $(date +%s) - start ))s" | tee -a "$OUT/timing.txt"
  [ -n "${SMOKE_ONLY:-}" ] && exit 0
fi
[ -n "${DIAG:-}" ] && bash tools/gpu-diag.sh 2>&1 | tee "$OUT/diag.log"
# Run tests against the installed package (not the source tree, which has no _C).
mkdir -p /tmp/t && cp -r tests /tmp/t/ && cp pyproject.toml /tmp/t/ && cp -r docs README.md /tmp/t/ 2>/dev/null
# pytest-xdist, where present, spreads the tests over processes and survives a crashing one.
xdist=""; python3 -c "import xdist" 2>/dev/null && xdist="-n ${WORKERS:-8}"
[ -n "${1:-}" ] && (cd /tmp/t && timeout ${TEST_TIMEOUT:-300} python3 -m pytest ${1:-tests} -q -p no:cacheprovider $xdist 2>&1 | tee "$OUT/tests${BENCH_TAG:+-$BENCH_TAG}.log" | tail -40)
echo "== tests: $(( $(date +%s) - start ))s" | tee -a "$OUT/timing.txt"
if [ -n "${PROFILE:-}" ]; then
  (cd /tmp && timeout ${PROFILE_TIMEOUT:-240} python3 "$repo/tools/gpu_profile.py" ${PROFILE/all/} > "$OUT/profile${BENCH_TAG:+-$BENCH_TAG}.txt" 2>&1; tail -5 "$OUT/profile${BENCH_TAG:+-$BENCH_TAG}.txt")
  echo "== profile: $(( $(date +%s) - start ))s"
fi
# Benchmark tables and JSON go to /tmp/bench, packed into $OUT/bench.tgz (the tool returns 8 files at most).
mkdir -p /tmp/bench
# BENCH_ONLY="a,b" runs only the cases whose name contains a or b (e.g. BENCH_ONLY="fwd+bwd").
only=(); IFS=',' read -ra parts <<< "${BENCH_ONLY:-}"; for p in "${parts[@]}"; do only+=(--only "$p"); done
for fam in ${2:-}; do
  (cd /tmp && timeout ${BENCH_TIMEOUT:-200} python3 -m learnable_ops bench --family "$fam" --device cuda --out /tmp/bench --min-run-time ${MIN_RUN:-0.3} "${only[@]}" 2>&1 | grep --line-buffered -E "^\| $fam|Traceback|Error" | head -40)
  echo "== bench $fam: $(( $(date +%s) - start ))s" | tee -a "$OUT/timing.txt"
  # Packed after every family, so that a command cut at its limit still returns the finished ones.
  # BENCH_TAG names the tarball (bench-<tag>.tgz), so that a second call in the same command (for
  # example SKIP_BUILD=1 with a tuning switch such as LEARNABLE_OPS_SHIFT_FOLD_TABLE=1) keeps both.
  tar czf "$OUT/bench${BENCH_TAG:+-$BENCH_TAG}.tgz" -C /tmp/bench .
done
rm -rf /tmp/bench/*
echo "== total: $(( $(date +%s) - start ))s"
