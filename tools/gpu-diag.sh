#!/usr/bin/env bash
# Diagnoses how a C++ exception thrown by a kernel reaches Python on this machine.
# Run after the package is installed (tools/gpu-run.sh does the install).
#   tools/gpu-diag.sh            -> prints versions, the repro's outcome and, on a crash, a backtrace
set -uo pipefail
echo "== toolchain"
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)"
python3 -c "import pybind11; print('pybind11', pybind11.__version__)" 2>&1
gcc --version | head -1
for lib in $(python3 -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libtorch_python.so'))") \
           $(python3 -c "import learnable_ops._C as c; print(c.__file__)" 2>/dev/null); do
  echo "$lib: $(strings "$lib" | grep -m1 '__pybind11_internals')"
done
command -v gdb cuda-gdb || ls /usr/local/cuda/bin | grep gdb
repro='import torch, learnable_ops
for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
    try:
        torch.ops.learnable_ops.pad_backward(torch.randn(2,3,4,11, device=dev),[2,3,4,5],[3,4,0,0],"reflect")
        print(dev, "NO ERROR RAISED")
    except Exception as e:
        print(dev, "raised", type(e).__name__, str(e)[:80])
try:
    torch.ops.aten.add(torch.randn(2), torch.randn(3))
except Exception as e:
    print("aten raised", type(e).__name__)'
echo "== repro"
cd /tmp
python3 -X faulthandler -c "$repro"; rc=$?
echo "repro rc=$rc"
if [ $rc -ne 0 ]; then
  dbg=$(command -v gdb || command -v cuda-gdb || echo /usr/local/cuda/bin/cuda-gdb)
  timeout 120 "$dbg" -q -batch -ex run -ex bt -ex "info sharedlibrary" --args python3 -c "$repro" 2>&1 | grep -v "^\[New Thread\|^\[Thread" | head -80
fi
# The cause of the crash this diagnosed (a compiler that links libstdc++ statically) is handled
# by cmake/LearnableOpsStdlib.cmake; tools/gpu-exc-matrix.sh reproduces it with a one-op
# extension under several compiler/linker flag sets.
exit $rc
