#!/usr/bin/env bash
# Creates .venv (unless VENV points elsewhere), installs torch and the build
# requirements, and builds learnable_ops against that torch.
#   TORCH_SPEC   the torch requirement (default torch==2.13.0; CPU wheel here)
#   LEARNABLE_OPS_WITH_CUDA=AUTO|ON|OFF, TORCH_CUDA_ARCH_LIST  (see README)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# torch first, pinned, so that nothing later can resolve a different build.
python -c "import torch" 2>/dev/null || python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q scikit-build-core pybind11 "cmake>=3.26" ninja numpy pytest expecttest \
  scikit-learn matplotlib tqdm
if [ "${LEARNABLE_OPS_DOCS:-1}" = 1 ]; then
  python -m pip install -q mkdocs-material "mkdocstrings[python]" || echo "warning: docs tools not installed"
fi
python -m pip install --no-build-isolation --no-deps -v . > "${BUILD_LOG:-build.log}" 2>&1 || {
  tail -60 "${BUILD_LOG:-build.log}"; echo "learnable_ops: build FAILED (full log: ${BUILD_LOG:-build.log})"; exit 1; }
python -c "import learnable_ops, json; print(json.dumps(learnable_ops.build_info()))"
