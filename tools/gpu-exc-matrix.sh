#!/usr/bin/env bash
# Builds a one-op extension that throws, under several compiler/linker flag sets,
# and reports which of them raise cleanly on this machine. Needs no GPU.
set -uo pipefail
W=/tmp/excm; rm -rf $W; mkdir -p $W; cd $W
env | grep -iE "flags|^CC=|^CXX=|LD_" ; echo
g++ -v 2>&1 | tail -3
echo | g++ -dM -E -x c++ - | grep -E "GLIBCXX|FORTIFY|_FILE_OFFSET|__OPTIMIZE__" ; echo
echo | g++ -O2 -dM -E -x c++ - | grep -E "GLIBCXX_ASSERT|FORTIFY"
ls -la /lib/x86_64-linux-gnu/libstdc++.so.6*
TI=$(python3 -c "import torch.utils.cpp_extension as c; print(' '.join('-I'+p for p in c.include_paths()))")
TL=$(python3 -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
SO=$(python3 -c "import learnable_ops._C as c; print(c.__file__)" 2>/dev/null)
if [ -n "$SO" ]; then
  echo "our _C: $(nm -C -D "$SO" | grep -E '_M_insert<long>|codecvt<char16_t' | head -3)"
  readelf -d "$SO" | grep NEEDED
fi
cat > boom.cpp <<'CPP'
#include <torch/library.h>
#include <ATen/ATen.h>
at::Tensor boom(const at::Tensor& x) { TORCH_CHECK_VALUE(x.dim() == 99, "x must have 99 dims, got ", x.sizes()); return x; }
at::Tensor boom_str(const at::Tensor& x) { TORCH_CHECK_VALUE(x.dim() == 99, "x must have 99 dims"); return x; }
TORCH_LIBRARY(NAME, m) { m.def("boom(Tensor x) -> Tensor"); m.impl("boom", c10::DispatchKey::CPU, &boom);
  m.def("boom_str(Tensor x) -> Tensor"); m.impl("boom_str", c10::DispatchKey::CPU, &boom_str); }
CPP
base="-O2 -std=c++17 -fPIC -shared -D_GLIBCXX_USE_CXX11_ABI=1 $TI"
link="-L$TL -lc10 -ltorch_cpu -ltorch -Wl,-rpath,$TL"
declare -A V=(
  [v0_plain]=""
  [v1_noassert]="-U_GLIBCXX_ASSERTIONS"
  [v2_assert]="-D_GLIBCXX_ASSERTIONS"
  [v3_bsymbolic]="-Wl,-Bsymbolic"
  [v4_nofortify]="-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=0"
  [v5_nocf]="-fcf-protection=none"
  [v6_O0]="-O0"
  [v7_static]="-static-libstdc++"
  [v8_clang]="CLANG"
)
for k in "${!V[@]}"; do
  f=${V[$k]}; cxx=g++
  if [ "$f" = CLANG ]; then command -v clang++ >/dev/null || continue; cxx=clang++; f=""; fi
  sed "s/NAME/$k/" boom.cpp > $k.cpp
  ( $cxx $base $f $k.cpp -o $k.so $link > $k.log 2>&1 || echo "$k BUILD FAILED: $(tail -3 $k.log)" ) &
done; wait
for k in $(echo "${!V[@]}" | tr ' ' '\n' | sort); do
  [ -f $k.so ] || continue
  for op in boom boom_str; do
    python3 -c "
import torch; torch.ops.load_library('$W/$k.so')
try:
    torch.ops.$k.$op(torch.randn(2)); print('$k $op: NO ERROR')
except Exception as e: print('$k $op: raised', type(e).__name__)
" 2>/dev/null || echo "$k $op: CRASH rc=$?"
  done
done
