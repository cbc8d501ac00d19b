// Polynomial (Lagrange) extrapolation along one axis, shared by the CPU and
// CUDA kernels of the pad op's `polynomial` mode and by DiffConv2d.
//
// An axis of length n is extended beyond its edges by the polynomial of
// degree `order` through the order+1 samples nearest to the edge. With a
// step (the dilation of a convolution) s > 1, every residue class modulo s is
// extended on its own: the padded coordinate p < 0 lies on the grid
// p, p + s, p + 2s, ..., and its value extrapolates the order+1 in-range
// samples of that grid nearest to the edge. For s = 1 this is the plain rule
//
//   value at distance d outside the edge = sum_i l_i(-d) * x[edge + i],
//
// with l_i the Lagrange basis on the nodes 0..order and x[edge + i] the i-th
// sample going inward (for d = 1 and order 2 the weights are 3, -3, 1). With
// s > 1, d is the distance in grid steps, m = ceil(d / s), and the nodes are
// r0, r0 + s, ..., r0 + order * s with r0 = m * s - d (mirrored at the end).
//
// The map is linear and acts on one axis, so an N-d pad is the tensor product
// of the per-axis maps (corners are products of the two edge rules) and its
// adjoint is the product of the per-axis transposes. Every sample of the
// padded axis needs n >= step * (order + 1).
//
// Weights are computed in double from the closed form; for the orders used in
// practice (<= 10) the numerator and denominator are exact integers in double.
#pragma once

#include <cstdint>

#include "learnable_ops/macros.h"

namespace learnable_ops {

// l_i(t) for the Lagrange basis on the nodes 0..order.
LO_HD double lagrange_basis(int64_t order, int64_t i, double t) {
  double num = 1.0, den = 1.0;
  for (int64_t m = 0; m <= order; ++m) {
    if (m == i) continue;
    num *= t - static_cast<double>(m);
    den *= static_cast<double>(i - m);
  }
  return num / den;
}

// Weight of node i (i = 0 at the edge, going inward) in the value `steps`
// grid steps outside the edge: l_i(-steps).
LO_HD double extrapolation_weight(int64_t order, int64_t i, int64_t steps) {
  return lagrange_basis(order, i, -static_cast<double>(steps));
}

// The samples that padded coordinate p outside [0, n) combines: node i
// (i = 0..order, going inward from the edge) is input first + i * delta, with
// weight extrapolation_weight(order, i, m), m the distance in grid steps (the
// same for every node). Index arithmetic only, in the caller's integer type,
// so that a kernel can take the weights from a table indexed by (i, m).
template <typename I>
struct ExtrapolationNodes {
  I first, delta, m;
};

template <typename I>
LO_HD ExtrapolationNodes<I> extrapolation_nodes(I p, I n, I step) {
  const I d = p < 0 ? -p : p - (n - 1);
  const I m = step == 1 ? d : (d + step - 1) / step;
  const I r0 = m * step - d;
  return p < 0 ? ExtrapolationNodes<I>{r0, step, m} : ExtrapolationNodes<I>{n - 1 - r0, -step, m};
}

// Calls f(input_index, weight) for the samples that padded coordinate p of
// an axis of length n combines: one sample (weight 1) inside, order + 1
// outside. Requires n >= step * (order + 1) when p is outside.
template <typename F>
LO_HD void for_each_polynomial_source(int64_t p, int64_t n, int64_t order, int64_t step, F&& f) {
  if (p >= 0 && p < n) {
    f(p, 1.0);
    return;
  }
  const ExtrapolationNodes<int64_t> nodes = extrapolation_nodes(p, n, step);
  for (int64_t i = 0; i <= order; ++i) f(nodes.first + i * nodes.delta, extrapolation_weight(order, i, nodes.m));
}

// Calls f(output_index, i, m) for every output o in [0, out_len) of an axis
// padded by `before` (output o holds padded coordinate o - before) whose value
// uses input j, in increasing order of o: the transpose of the map above.
// Input j is node i of the extrapolation at distance m (weight
// extrapolation_weight(order, i, m)); the copy o = j + before comes as i = 0,
// m = 0 (weight 1), and is left out with include_identity = false. Index
// arithmetic only, in the caller's integer type.
template <typename I, typename F>
LO_HD void for_each_preimage_node(I j, I n, I before, I out_len, I order, I step, bool include_identity, F&& f) {
  // Front edge: j is node i = j / step of residue class r0 = j % step, which
  // serves the coordinates p = r0 - m * step (m >= 1), i.e. o = before + p.
  if (j / step <= order) {
    const I i = j / step, r0 = j % step;
    // Largest m with o >= 0 first, so that o increases.
    const I m_max = (before + r0) >= step ? (before + r0) / step : 0;
    for (I m = m_max; m >= 1; --m) {
      const I o = before + r0 - m * step;
      if (o >= 0 && o < out_len) f(o, i, m);
    }
  }
  if (include_identity && j + before >= 0 && j + before < out_len) f(j + before, I(0), I(0));
  const I jr = n - 1 - j;  // position counted from the back edge
  if (jr / step <= order) {
    const I i = jr / step, r0 = jr % step;
    for (I m = 1;; ++m) {
      const I o = before + (n - 1) + (m * step - r0);
      if (o >= out_len) break;
      if (o >= 0) f(o, i, m);
    }
  }
}

// Calls f(output_index, weight) for the outputs of for_each_preimage_node.
template <typename F>
LO_HD void for_each_polynomial_preimage(int64_t j, int64_t n, int64_t before, int64_t out_len,
                                        int64_t order, int64_t step, bool include_identity,
                                        F&& f) {
  for_each_preimage_node<int64_t>(j, n, before, out_len, order, step, include_identity,
                                  [&](int64_t o, int64_t i, int64_t m) {
                                    f(o, m == 0 ? 1.0 : extrapolation_weight(order, i, m));
                                  });
}

}  // namespace learnable_ops
