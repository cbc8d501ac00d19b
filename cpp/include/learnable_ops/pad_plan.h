// Host-side description of an N-d pad (N = 1, 2, 3) shared by the CPU and
// CUDA pad kernels and by any op that pads internally.
#pragma once

#include <array>
#include <vector>

#include <ATen/ATen.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/padding.h"

namespace learnable_ops {

// Spatial axes are always expanded to three (missing leading ones have size 1
// and no padding), and the leading batch/channel axes are flattened to one.
struct PadPlan {
  int64_t batch = 1;                  // product of the non-spatial sizes
  std::array<int64_t, 3> in{1, 1, 1};  // D, H, W of the input
  std::array<int64_t, 3> out{1, 1, 1};
  std::array<int64_t, 3> before{0, 0, 0};  // elements added in front (negative crops)
  PadMode mode = PadMode::Zeros;
  std::vector<int64_t> out_shape;  // full output shape
};

// `pad` follows torch.nn.functional.pad: (last_before, last_after,
// second_last_before, ...), and pads exactly the ndim - 2 spatial axes.
inline PadPlan make_pad_plan(at::IntArrayRef input_shape, at::IntArrayRef pad,
                             PadMode mode, const char* input_name = "input") {
  const int64_t ndim = static_cast<int64_t>(input_shape.size());
  TORCH_CHECK_VALUE(ndim >= 3 && ndim <= 5, input_name,
                    " must be a 3D, 4D or 5D tensor (N, C, *spatial) with 1 to 3 spatial "
                    "dimensions, got shape ", input_shape);
  const int64_t nsp = ndim - 2;
  TORCH_CHECK_VALUE(static_cast<int64_t>(pad.size()) == 2 * nsp, "pad must have ", 2 * nsp,
                    " entries (before/after for each of the ", nsp,
                    " spatial dimensions, last dimension first) for an input of shape ",
                    input_shape, ", got ", pad.size());
  PadPlan plan;
  plan.mode = mode;
  plan.out_shape.assign(input_shape.begin(), input_shape.end());
  for (int64_t d = 0; d < ndim - nsp; ++d) plan.batch *= input_shape[d];
  for (int64_t k = 0; k < nsp; ++k) {
    const int64_t dim = ndim - 1 - k;  // pad[2k], pad[2k+1] act on dim
    const int64_t axis = 2 - k;        // position among D, H, W
    const int64_t n = input_shape[dim];
    const int64_t b = pad[2 * k], a = pad[2 * k + 1];
    const int64_t m = n + b + a;
    TORCH_CHECK_VALUE(m >= 1, "pad (", b, ", ", a, ") on dimension ", dim, " of size ", n,
                      " leaves ", m, " elements; the output must keep at least one");
    TORCH_CHECK_VALUE(n >= 1 || (b <= 0 && a <= 0) || mode == PadMode::Zeros, input_name,
                      " has size 0 on dimension ", dim, "; only zeros padding can pad it");
    plan.in[axis] = n;
    plan.out[axis] = m;
    plan.before[axis] = b;
    plan.out_shape[dim] = m;
  }
  return plan;
}

// Per-axis input index of every output index (-1 for zeros).
inline std::vector<int64_t> pad_axis_map(const PadPlan& plan, int axis) {
  std::vector<int64_t> map(plan.out[axis]);
  for (int64_t o = 0; o < plan.out[axis]; ++o)
    map[o] = pad_index(o - plan.before[axis], plan.in[axis], plan.mode);
  return map;
}

// Per-axis preimages in CSR form: outputs reading input j are
// idx[ptr[j]] .. idx[ptr[j+1]-1], in increasing order.
struct Preimages {
  std::vector<int64_t> ptr, idx;
};
inline Preimages pad_axis_preimages(const PadPlan& plan, int axis) {
  Preimages p;
  const int64_t n = plan.in[axis];
  p.ptr.reserve(n + 1);
  p.ptr.push_back(0);
  for (int64_t j = 0; j < n; ++j) {
    for_each_preimage(j, n, plan.before[axis], plan.out[axis], plan.mode,
                      [&](int64_t o) { p.idx.push_back(o); });
    p.ptr.push_back(static_cast<int64_t>(p.idx.size()));
  }
  return p;
}

}  // namespace learnable_ops
