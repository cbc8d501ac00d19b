// Interpolation weights and their derivatives, shared by every kernel.
//
// Sign and axis convention (the only one in learnable_ops): a shift s moves
// content towards higher indices, out[i] = x(i - s), along each axis
// independently; multi-axis weights are products of the per-axis ones, and
// axis a of a parameter always drives axis a of the data or kernel.
//
// Kernel profiles phi(d) are functions of the signed distance d = u - c between
// a grid cell u and a (real-valued) centre c; derivatives are given with
// respect to d, so d(phi)/dc = -phi'(d).
#pragma once

#include <cmath>
#include <cstdint>

#include "learnable_ops/macros.h"

namespace learnable_ops {

// ---------------------------------------------------------------------------
// Linear interpolation of a shift: x(i - s) = w0 * x[i - f] + w1 * x[i - f - 1]
// with f = floor(s), r = s - f, w0 = 1 - r, w1 = r. The derivative of the
// sample with respect to s is x[i - f - 1] - x[i - f], i.e. dw0/ds = -1 and
// dw1/ds = +1. At integer s this is the one-sided derivative from above
// (s -> s+), the documented gradient at lattice points.
// ---------------------------------------------------------------------------
template <typename T>
struct LinearTaps {
  int64_t floor_shift;  // f: tap 0 reads i - f, tap 1 reads i - f - 1
  T w0, w1;             // weights of tap 0 and tap 1
};

template <typename T>
LO_HD LinearTaps<T> linear_shift_taps(T s) {
  const T f = ::floor(s);
  const T r = s - f;
  return {static_cast<int64_t>(f), T(1) - r, r};
}
// d(w0)/ds and d(w1)/ds.
template <typename T> LO_HD constexpr T linear_dw0() { return T(-1); }
template <typename T> LO_HD constexpr T linear_dw1() { return T(1); }

// Multilinear (2D/3D) weights are products: corner (b_0, ..., b_{n-1}) with
// b_a in {0, 1} has weight prod_a (b_a ? r_a : 1 - r_a) and reads
// i_a - f_a - b_a; its derivative along s_a replaces factor a by (b_a ? 1 : -1).
template <typename T>
LO_HD T linear_corner_weight(const T* r, int n, int corner) {
  T w = T(1);
  for (int a = 0; a < n; ++a) w *= ((corner >> a) & 1) ? r[a] : T(1) - r[a];
  return w;
}
template <typename T>
LO_HD T linear_corner_dweight(const T* r, int n, int corner, int axis) {
  T w = ((corner >> axis) & 1) ? T(1) : T(-1);
  for (int a = 0; a < n; ++a)
    if (a != axis) w *= ((corner >> a) & 1) ? r[a] : T(1) - r[a];
  return w;
}

// ---------------------------------------------------------------------------
// Triangle (hat) profile, half-width 1: phi(d) = max(0, 1 - |d|).
// Used unnormalised by the multilinear DCLS version (v0) and, normalised over
// the kernel grid, by DCLS v1. phi'(d) = -sign(d) for |d| < 1, else 0; at d = 0
// the derivative is taken as 0 (the symmetric subgradient, as DCLS 0.1.x).
// ---------------------------------------------------------------------------
template <typename T>
LO_HD T triangle(T d) {
  const T a = ::fabs(d);
  return a < T(1) ? T(1) - a : T(0);
}
template <typename T>
LO_HD T triangle_dd(T d) {
  if (!(::fabs(d) < T(1)) || d == T(0)) return T(0);
  return d > T(0) ? T(-1) : T(1);
}

// ---------------------------------------------------------------------------
// Learnable-width triangle (DCLS "max"): phi(d; w) = max(0, w - |d|) with
// w = |sig| + 1 > 0. Derivatives: dphi/dd = -sign(d) inside (0 at d = 0),
// dphi/dsig = sign(sig) inside (0 at sig = 0, where DCLS starts).
// ---------------------------------------------------------------------------
template <typename T>
LO_HD T width_triangle(T d, T sig) {
  const T w = ::fabs(sig) + T(1);
  const T a = ::fabs(d);
  return a < w ? w - a : T(0);
}
template <typename T>
LO_HD T width_triangle_dd(T d, T sig) {
  const T w = ::fabs(sig) + T(1);
  if (!(::fabs(d) < w) || d == T(0)) return T(0);
  return d > T(0) ? T(-1) : T(1);
}
template <typename T>
LO_HD T width_triangle_dsig(T d, T sig) {
  const T w = ::fabs(sig) + T(1);
  if (!(::fabs(d) < w) || sig == T(0)) return T(0);
  return sig > T(0) ? T(1) : T(-1);
}

// ---------------------------------------------------------------------------
// Gaussian (DCLS "gauss"): phi(d; sig) = exp(-d^2 / (2 s^2)), s = |sig| + 0.27.
// dphi/dd = -d / s^2 * phi; dphi/dsig = sign(sig) * d^2 / s^3 * phi.
// ---------------------------------------------------------------------------
template <typename T> LO_HD constexpr T gauss_sigma_floor() { return T(0.27); }

template <typename T>
LO_HD T gauss_sigma(T sig) { return ::fabs(sig) + gauss_sigma_floor<T>(); }

template <typename T>
LO_HD T gaussian(T d, T sig) {
  const T s = gauss_sigma(sig);
  const T z = d / s;
  return ::exp(T(-0.5) * z * z);
}
template <typename T>
LO_HD T gaussian_dd(T d, T sig) {
  const T s = gauss_sigma(sig);
  return -d / (s * s) * gaussian(d, sig);
}
template <typename T>
LO_HD T gaussian_dsig(T d, T sig) {
  const T s = gauss_sigma(sig);
  const T sign = sig > T(0) ? T(1) : (sig < T(0) ? T(-1) : T(0));
  return sign * d * d / (s * s * s) * gaussian(d, sig);
}

}  // namespace learnable_ops
