// Expansion of the learnable DCLS taps of a depthwise layer into integer
// corner taps, for the sparse-tap path (cpp/dcls_sparse.cpp, cuda/dcls_sparse.cu).
//
// Tap k of channel c sits at c_a = P[a, c, k] + floor(D_a / 2) along kernel axis a
// (P[a] drives kernel axis a). With f_a = floor(c_a) and r_a = c_a - f_a, its
// corners f_a + b_a (b_a in {0, 1}) carry the per-axis factors
//   phi_a(0) = 1 - r_a,  phi_a(1) = r_a
// (the triangle max(0, 1 - |u - c|) of interpolation.h at u = f and f + 1);
// corners off the grid [0, D_a) are dropped.
//   v0: weight of a corner = prod_a phi_a(b_a)                      (multilinear)
//   v1: the same divided by prod_a S_a + 1e-7, S_a the sum of the in-grid
//       phi_a: the triangle kernel normalised over the grid, which factorises.
// Position derivatives are those of dcls_construct (cpp/dcls.cpp): d phi / d c
// = (-1, +1) for the two corners, which at integer c is the one-sided
// derivative from above (as the linear shift taps of interpolation.h), in v0
// and in v1 alike, so taps on the grid keep learning and every dispatch path
// gives the same gradient.
//
// Written with ATen ops on tensors of C * Kc * 2^n elements, so one definition
// serves both devices.
#pragma once

#include <vector>

#include <ATen/ATen.h>

namespace learnable_ops {

constexpr double kDclsNormEps = 1e-7;

struct DclsCornerTaps {
  at::Tensor offsets;  // (C, T, 2) int64, (row, col) in the dense kernel; T = Kc * 2^n
  at::Tensor corner;   // (C, T) opmath: interpolation weight of the corner (0 when dropped)
  at::Tensor dcorner;  // (n, C, T) opmath: d corner / d c_a
};

// P: (n, C, Kc); D: n entries; n = 1 (offsets (0, u)) or 2 (offsets (u_0, u_1)).
inline DclsCornerTaps make_dcls_corner_taps(const at::Tensor& P, at::IntArrayRef D, bool normalise) {
  const int64_t n = P.size(0), C = P.size(1), Kc = P.size(2);
  const auto acc = P.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  std::vector<at::Tensor> phi(n), dphi(n), idx(n);  // each (C, Kc, 2)
  for (int64_t a = 0; a < n; ++a) {
    const at::Tensor c = P[a].to(acc) + static_cast<double>(D[a] / 2);
    const at::Tensor finite = at::isfinite(c);
    const at::Tensor cs = at::where(finite, c, at::zeros_like(c));
    const at::Tensor f = at::floor(cs);
    const at::Tensor r = cs - f;
    const at::Tensor u = at::stack({f, f + 1}, -1);
    const at::Tensor inside = (u >= 0) & (u <= static_cast<double>(D[a] - 1)) & finite.unsqueeze(-1);
    const at::Tensor zero = at::zeros({}, r.options());
    phi[a] = at::where(inside, at::stack({1 - r, r}, -1), zero);
    const at::Tensor slope = at::stack({at::full_like(r, -1), at::full_like(r, 1)}, -1);
    dphi[a] = at::where(inside, slope, zero);
    idx[a] = at::where(inside, u, zero).to(at::kLong);
  }
  const int64_t T = Kc << n;
  // Corner (b_0, ..., b_{n-1}) of tap k is entry k * 2^n + sum_a b_a * 2^(n-1-a):
  // the last axis varies fastest.
  std::vector<int64_t> full = {C, Kc};
  for (int64_t a = 0; a < n; ++a) full.push_back(2);
  auto on_axis = [&](const at::Tensor& t, int64_t a) {
    std::vector<int64_t> shape = {C, Kc};
    for (int64_t b = 0; b < n; ++b) shape.push_back(b == a ? 2 : 1);
    return t.view(shape);
  };
  auto product_except = [&](const std::vector<at::Tensor>& factors, int64_t skip) {
    at::Tensor out;
    for (int64_t a = 0; a < n; ++a) {
      if (a == skip) continue;
      out = out.defined() ? out * on_axis(factors[a], a) : on_axis(factors[a], a);
    }
    return out.defined() ? out.expand(full) : at::ones(full, phi[0].options());
  };
  const at::Tensor num = product_except(phi, -1);
  std::vector<at::Tensor> dnum(n);
  for (int64_t a = 0; a < n; ++a) dnum[a] = on_axis(dphi[a], a) * product_except(phi, a);

  at::Tensor corner = num;
  std::vector<at::Tensor> dcorner = dnum;
  if (normalise) {
    std::vector<int64_t> tap_shape = {C, Kc};
    for (int64_t a = 0; a < n; ++a) tap_shape.push_back(1);
    std::vector<at::Tensor> S(n), dS(n);
    at::Tensor area = at::ones({C, Kc}, phi[0].options());
    for (int64_t a = 0; a < n; ++a) {
      S[a] = phi[a].sum(-1);
      dS[a] = dphi[a].sum(-1);
      area = area * S[a];
    }
    const at::Tensor den = (area + kDclsNormEps).view(tap_shape);
    corner = num / den;
    for (int64_t a = 0; a < n; ++a) {
      at::Tensor d_area = dS[a];
      for (int64_t b = 0; b < n; ++b)
        if (b != a) d_area = d_area * S[b];
      dcorner[a] = dnum[a] / den - num * d_area.view(tap_shape) / (den * den);
    }
  }
  const at::Tensor row = n == 2 ? on_axis(idx[0], 0).expand(full) : at::zeros(full, idx[0].options());
  const at::Tensor col = on_axis(idx[n - 1], n - 1).expand(full);
  DclsCornerTaps taps;
  taps.offsets = at::stack({row, col}, -1).reshape({C, T, 2}).contiguous();
  taps.corner = corner.reshape({C, T}).contiguous();
  taps.dcorner = at::stack(dcorner, 0).reshape({n, C, T}).contiguous();
  return taps;
}

}  // namespace learnable_ops
