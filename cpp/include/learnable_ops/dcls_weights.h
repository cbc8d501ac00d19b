// DCLS kernel construction: per-axis interpolation profiles, their
// derivatives, each tap's normaliser and the gradient formulas. Shared by the
// CPU kernels (cpp/dcls.cpp) and the CUDA kernels (cuda/dcls.cu), so both
// compute exactly the same maths.
//
// A tap k of kernel (o, i) has weight w, and per kernel axis a a position P[a]
// and (gauss, max) a width parameter SIG[a]. Its centre is c_a = P[a] +
// floor(D_a / 2), in dense-grid cells from index 0; axis a of P and SIG always
// drives axis a of the kernel. Every version's profile is separable,
// phi(u) = prod_a phi_a(u_a), so the normaliser over the grid is a product of
// per-axis sums: N = prod_a s_a + eps with s_a = sum_{u_a} phi_a(u_a). Then
//   K[u] = sum_k w_k * phi_k(u) / N_k           (N_k = 1 for v0).
//
// Derivatives at kinks. The triangle profiles (v0, v1, max) have kinks at
// integer distances and |SIG| has one at SIG = 0. Everywhere, this file gives
// the one-sided derivative from above (the parameter increasing), the same
// convention as linear_shift_taps in interpolation.h: at an integer position a
// v0/v1/max tap therefore gets the gradient of moving towards higher indices,
// never the dead zero of DCLS 0.1.x. Away from kinks it is the derivative.
#pragma once

#include <cmath>
#include <cstdint>

#include "learnable_ops/interpolation.h"
#include "learnable_ops/macros.h"

namespace learnable_ops {

enum class DclsVersion : int { V0 = 0, V1 = 1, Max = 2, Gauss = 3 };

// The most kernel axes a DCLS kernel has (3D).
constexpr int kDclsMaxAxes = 3;

// Added to every normaliser of v1, max and gauss (as DCLS 0.1.x).
template <typename T> LO_HD constexpr T dcls_norm_eps() { return T(1e-7); }

LO_HD constexpr bool dcls_has_sig(DclsVersion v) {
  return v == DclsVersion::Max || v == DclsVersion::Gauss;
}
LO_HD constexpr bool dcls_normalised(DclsVersion v) { return v != DclsVersion::V0; }

// d|x|/dx from above: +1 at 0.
template <typename T> LO_HD T sign_from_above(T x) { return x < T(0) ? T(-1) : T(1); }

// Sizes of one construction, passed by value to the CUDA kernels.
struct DclsGeometry {
  DclsVersion version;
  int n;                      // kernel axes (1, 2 or 3)
  int64_t D[kDclsMaxAxes];    // dilated kernel size; axes 0..n-1 are used
  int64_t Co, Cig, Kc;        // weight (Co, Ci/g, Kc)
  bool broadcast_p;           // P (n, 1, Ci/g, Kc) shared by all output channels
  int64_t cells;              // prod(D)
};

// Index of P[a, o, i, k] (or SIG's), P broadcast or not.
LO_HD int64_t dcls_param_index(const DclsGeometry& g, int a, int64_t o, int64_t i, int64_t k) {
  const int64_t po = g.broadcast_p ? 1 : g.Co;
  return ((a * po + (g.broadcast_p ? 0 : o)) * g.Cig + i) * g.Kc + k;
}

// A tap's centres c_a = P[a] + floor(D_a / 2) and SIG[a] (0 without SIG), in
// the accumulation type T.
template <typename T, typename scalar_t>
LO_HD void dcls_load_tap(const DclsGeometry& g, const scalar_t* P, const scalar_t* SIG, int64_t o,
                         int64_t i, int64_t k, T* c, T* sig) {
  for (int a = 0; a < g.n; ++a) {
    const int64_t idx = dcls_param_index(g, a, o, i, k);
    c[a] = static_cast<T>(P[idx]) + static_cast<T>(g.D[a] / 2);
    sig[a] = SIG ? static_cast<T>(SIG[idx]) : T(0);
  }
}

// exp in T's precision on host and device (::exp(float) is the double one
// on the host).
template <typename T>
LO_HD T dcls_exp(T x) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

// One axis of one tap at grid cell u: the profile value and its one-sided
// derivatives (from above) with respect to the centre c and to SIG.
template <typename T>
struct DclsAxisSample {
  T phi, dc, dsig;
};

template <typename T>
LO_HD DclsAxisSample<T> dcls_axis_sample(DclsVersion v, int64_t u, T c, T sig) {
  DclsAxisSample<T> s{T(0), T(0), T(0)};
  switch (v) {
    case DclsVersion::V0:
    case DclsVersion::V1: {
      // The linear taps of the centre (linear_shift_taps' weights, compared
      // in floating point so that any centre is safe): cell f = floor(c) has
      // weight 1 - r, cell f + 1 weight r, with derivatives -1 and +1 (from
      // above at integer c).
      const T f = ::floor(c);
      const T r = c - f;
      if (T(u) == f) {
        s.phi = T(1) - r;
        s.dc = linear_dw0<T>();
      } else if (T(u) == f + T(1)) {
        s.phi = r;
        s.dc = linear_dw1<T>();
      }
      break;
    }
    case DclsVersion::Max: {
      // phi = max(0, w - |d|), d = u - c, w = |sig| + 1.
      const T d = T(u) - c;
      const T w = ::fabs(sig) + T(1);
      const T a = ::fabs(d);
      s.phi = a < w ? w - a : T(0);
      // Raising c lowers d: +1 where phi rises (0 < d <= w), -1 where it
      // falls (-w < d <= 0).
      if (d > -w && d <= T(0)) s.dc = T(-1);
      else if (d > T(0) && d <= w) s.dc = T(1);
      // Raising sig widens the triangle for sig >= 0 (cells with |d| <= w
      // rise, the edge cell included) and narrows it for sig < 0.
      if (sig >= T(0)) s.dsig = a <= w ? T(1) : T(0);
      else s.dsig = a < w ? T(-1) : T(0);
      break;
    }
    case DclsVersion::Gauss: {
      // gaussian() of interpolation.h and its derivatives from one exp (in
      // the precision of T: float exp for float on the host too).
      const T d = T(u) - c;
      const T sd = gauss_sigma(sig);
      const T z = d / sd;
      s.phi = dcls_exp(T(-0.5) * z * z);
      s.dc = d / (sd * sd) * s.phi;  // -gaussian_dd: d/dc = -d/dd
      s.dsig = sign_from_above(sig) * d * d / (sd * sd * sd) * s.phi;
      break;
    }
  }
  return s;
}

// The cells [lo, hi) of an axis of length D where a tap's profile or one of
// its one-sided derivatives can be non-zero: 2 cells for v0/v1 (fewer at the
// border), about 2|sig| + 3 for max, the whole axis for gauss.
// Clamps a floating cell index to [-1, D + 1] before the integer conversion,
// so that far-off (or non-finite) centres give an empty window.
template <typename T>
LO_HD int64_t dcls_clamped_cell(T x, int64_t D) {
  if (!(x > T(-1))) return -1;
  if (!(x < T(D + 1))) return D + 1;
  return int64_t(x);
}

template <typename T>
LO_HD void dcls_axis_window(DclsVersion v, T c, T sig, int64_t D, int64_t& lo, int64_t& hi) {
  lo = 0;  // every case below assigns both; this only keeps -Wmaybe-uninitialized quiet
  hi = D;
  switch (v) {
    case DclsVersion::V0:
    case DclsVersion::V1: {
      const T f = ::floor(c);
      lo = dcls_clamped_cell(f, D);
      hi = dcls_clamped_cell(f + T(1), D) + 1;
      break;
    }
    case DclsVersion::Max: {
      // Cells with |u - c| <= w, widened by one on each side against rounding
      // (dcls_axis_sample returns exact zeros there).
      const T w = ::fabs(sig) + T(1);
      lo = dcls_clamped_cell(::floor(c - w), D);
      hi = dcls_clamped_cell(::floor(c + w) + T(1), D) + 1;
      break;
    }
    case DclsVersion::Gauss:
      lo = 0;
      hi = D;
      break;
  }
  if (lo < 0) lo = 0;
  if (hi > D) hi = D;
  if (hi < lo) hi = lo;
}

// A tap's normaliser N and its one-sided derivatives with respect to each
// axis' centre and SIG. For v0, N = 1 and the derivatives are 0.
template <typename T>
struct DclsTapNorm {
  T N;
  T dN_dc[kDclsMaxAxes];
  T dN_dsig[kDclsMaxAxes];
};

// The normaliser from the per-axis sums s_a = sum_u phi_a(u) and their
// derivatives: N = prod_a s_a + eps, dN/dtheta_a = ds_a/dtheta_a prod_{b!=a} s_b.
template <typename T>
LO_HD DclsTapNorm<T> dcls_norm_from_sums(DclsVersion v, int n, const T* s, const T* ds_dc,
                                         const T* ds_dsig) {
  DclsTapNorm<T> r;
  r.N = T(1);
  for (int a = 0; a < kDclsMaxAxes; ++a) r.dN_dc[a] = r.dN_dsig[a] = T(0);
  if (!dcls_normalised(v)) return r;
  T prod = T(1);
  for (int a = 0; a < n; ++a) prod *= s[a];
  r.N = prod + dcls_norm_eps<T>();
  for (int a = 0; a < n; ++a) {
    T others = T(1);
    for (int b = 0; b < n; ++b)
      if (b != a) others *= s[b];
    r.dN_dc[a] = ds_dc[a] * others;
    r.dN_dsig[a] = ds_dsig[a] * others;
  }
  return r;
}

// The normaliser of a tap, summing each axis' profile over its window.
template <typename T>
LO_HD DclsTapNorm<T> dcls_tap_norm(DclsVersion v, int n, const T* c, const T* sig,
                                   const int64_t* D) {
  T s[kDclsMaxAxes] = {T(0), T(0), T(0)}, ds_dc[kDclsMaxAxes] = {T(0), T(0), T(0)},
    ds_dsig[kDclsMaxAxes] = {T(0), T(0), T(0)};
  if (dcls_normalised(v)) {
    for (int a = 0; a < n; ++a) {
      int64_t lo, hi;
      dcls_axis_window(v, c[a], sig[a], D[a], lo, hi);
      for (int64_t u = lo; u < hi; ++u) {
        const DclsAxisSample<T> p = dcls_axis_sample(v, u, c[a], sig[a]);
        s[a] += p.phi;
        ds_dc[a] += p.dc;
        ds_dsig[a] += p.dsig;
      }
    }
  }
  return dcls_norm_from_sums(v, n, s, ds_dc, ds_dsig);
}

// Contractions of the kernel gradient G with one tap's profile, summed over
// the tap's window: T = sum_u G[u] phi(u), and per axis a the same sum with
// factor a of phi replaced by its derivative with respect to c_a (E_c[a]) or
// to SIG[a] (E_sig[a]).
template <typename T>
struct DclsTapContraction {
  T T_;
  T E_c[kDclsMaxAxes];
  T E_sig[kDclsMaxAxes];
};

// Gradients of one tap from its contractions: with K[u] = w phi(u) / N,
//   dL/dw = T / N,   dL/dtheta_a = w (E_theta[a] / N - T dN/dtheta_a / N^2).
template <typename T>
struct DclsTapGrads {
  T weight;
  T c[kDclsMaxAxes];
  T sig[kDclsMaxAxes];
};

template <typename T>
LO_HD DclsTapGrads<T> dcls_tap_grads(int n, T w, const DclsTapNorm<T>& norm,
                                     const DclsTapContraction<T>& e) {
  DclsTapGrads<T> g;
  const T inv = T(1) / norm.N;
  g.weight = e.T_ * inv;
  const T t_over_n2 = e.T_ * inv * inv;
  for (int a = 0; a < kDclsMaxAxes; ++a) g.c[a] = g.sig[a] = T(0);
  for (int a = 0; a < n; ++a) {
    g.c[a] = w * (e.E_c[a] * inv - t_over_n2 * norm.dN_dc[a]);
    g.sig[a] = w * (e.E_sig[a] * inv - t_over_n2 * norm.dN_dsig[a]);
  }
  return g;
}

}  // namespace learnable_ops
