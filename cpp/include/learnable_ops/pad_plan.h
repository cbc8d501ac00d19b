// Host-side description of an N-d pad (N = 1, 2, 3) shared by the CPU and
// CUDA pad kernels and by any op that pads internally.
#pragma once

#include <array>
#include <optional>
#include <vector>

#include <ATen/ATen.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/lagrange.h"
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
  std::array<int64_t, 3> order{0, 0, 0};  // polynomial mode: degree per axis
  std::array<int64_t, 3> step{1, 1, 1};   // polynomial mode: grid step (dilation) per axis
  std::vector<int64_t> out_shape;  // full output shape
};

// `pad` follows torch.nn.functional.pad: (last_before, last_after,
// second_last_before, ...), and pads exactly the ndim - 2 spatial axes.
//
// `order` and `dilation` belong to the polynomial mode only (and are required
// / optional there): one entry, or one per spatial dimension in dimension
// order (D, H, W), as for a convolution's dilation.
inline PadPlan make_pad_plan(at::IntArrayRef input_shape, at::IntArrayRef pad, PadMode mode,
                             at::OptionalIntArrayRef order, at::OptionalIntArrayRef dilation,
                             const char* input_name = "input") {
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
  if (mode != PadMode::Polynomial) {
    TORCH_CHECK_VALUE(!order.has_value() && !dilation.has_value(),
                      "order and dilation apply to mode 'polynomial' only");
    return plan;
  }
  TORCH_CHECK_VALUE(order.has_value(),
                    "order is required for mode 'polynomial': the degree of the extrapolating "
                    "polynomial, which passes through the order + 1 samples nearest to each edge");
  auto per_axis = [&](at::IntArrayRef values, const char* name, int64_t lowest) {
    TORCH_CHECK_VALUE(values.size() == 1 || static_cast<int64_t>(values.size()) == nsp, name,
                      " must have 1 or ", nsp, " entries (one per spatial dimension), got ",
                      values.size());
    std::array<int64_t, 3> out{lowest, lowest, lowest};
    for (int64_t k = 0; k < nsp; ++k) {
      const int64_t v = values.size() == 1 ? values[0] : values[k];
      TORCH_CHECK_VALUE(v >= lowest, name, " must be >= ", lowest, ", got ", values);
      out[3 - nsp + k] = v;
    }
    return out;
  };
  plan.order = per_axis(*order, "order", 0);
  if (dilation.has_value()) plan.step = per_axis(*dilation, "dilation", 1);
  for (int64_t k = 0; k < nsp; ++k) {
    const int64_t axis = 3 - nsp + k, dim = 2 + k;
    const bool extends = plan.before[axis] > 0 || plan.in[axis] + plan.before[axis] < plan.out[axis];
    const int64_t need = plan.step[axis] * (plan.order[axis] + 1);
    TORCH_CHECK_VALUE(!extends || plan.in[axis] >= need, input_name, " has size ",
                      plan.in[axis], " on dimension ", dim, "; polynomial padding of order ",
                      plan.order[axis], " with dilation ", plan.step[axis], " needs at least ",
                      need, " samples there");
  }
  return plan;
}

inline PadPlan make_pad_plan(at::IntArrayRef input_shape, at::IntArrayRef pad, PadMode mode,
                             const char* input_name = "input") {
  return make_pad_plan(input_shape, pad, mode, std::nullopt, std::nullopt, input_name);
}

// Polynomial mode, one axis: a sparse matrix in CSR form with double weights.
// Row r lists the (index, weight) pairs of row r.
struct WeightedMap {
  std::vector<int64_t> ptr, idx;
  std::vector<double> weight;
};

// Output -> the input samples it combines (the copy included).
inline WeightedMap polynomial_axis_sources(const PadPlan& plan, int axis) {
  WeightedMap map;
  map.ptr.push_back(0);
  for (int64_t o = 0; o < plan.out[axis]; ++o) {
    for_each_polynomial_source(o - plan.before[axis], plan.in[axis], plan.order[axis],
                               plan.step[axis], [&](int64_t i, double w) {
                                 map.idx.push_back(i);
                                 map.weight.push_back(w);
                               });
    map.ptr.push_back(static_cast<int64_t>(map.idx.size()));
  }
  return map;
}

// Input -> the outputs that use it, in increasing order (the transpose).
inline WeightedMap polynomial_axis_preimages(const PadPlan& plan, int axis,
                                             bool include_identity) {
  WeightedMap map;
  map.ptr.push_back(0);
  for (int64_t j = 0; j < plan.in[axis]; ++j) {
    for_each_polynomial_preimage(j, plan.in[axis], plan.before[axis], plan.out[axis],
                                 plan.order[axis], plan.step[axis], include_identity,
                                 [&](int64_t o, double w) {
                                   map.idx.push_back(o);
                                   map.weight.push_back(w);
                                 });
    map.ptr.push_back(static_cast<int64_t>(map.idx.size()));
  }
  return map;
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
