// dcls_construct: the dense DCLS kernel from (weight, P, SIG), its backward,
// the schemas and the CPU kernels. The maths (profiles, one-sided derivatives,
// normalisers, gradient formulas) lives in learnable_ops/dcls_weights.h and is
// shared with cuda/dcls.cu.
//
// Memory: the forward writes only the kernel (Co, Ci/g, *D); the backward
// writes the parameter gradients, plus a (n, Co, Ci/g, Kc) buffer when P is
// broadcast over output channels. No O(prod(D) * Kc) tensor exists: each
// (o, i) kernel is built tap by tap in a per-thread accumulator of prod(D)
// elements, and contracted with its gradient tap by tap over each tap's cells
// (gauss: all taps at once, with O(Kc * sum(D)) per-thread scratch).
#include <algorithm>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "learnable_ops/dcls_plan.h"

namespace learnable_ops {
namespace {

// The three kernel axes padded to kDclsMaxAxes: missing leading axes have
// size 1 and a constant profile of 1.
struct PaddedAxes {
  int off;                   // padded axis p is kernel axis p - off
  int64_t E[kDclsMaxAxes];   // padded sizes
  int64_t max_extent;
};

PaddedAxes padded_axes(const DclsGeometry& g) {
  PaddedAxes p;
  p.off = kDclsMaxAxes - g.n;
  p.max_extent = 1;
  for (int q = 0; q < kDclsMaxAxes; ++q) {
    p.E[q] = q < p.off ? 1 : g.D[q - p.off];
    p.max_extent = std::max(p.max_extent, p.E[q]);
  }
  return p;
}

// One tap's per-axis profile over its window: phi and its derivatives with
// respect to the centre (dc) and SIG (ds), for the cells [lo, lo + len).
template <typename acc_t>
struct TapProfiles {
  int64_t lo[kDclsMaxAxes], len[kDclsMaxAxes];
  acc_t* phi[kDclsMaxAxes];
  acc_t* dc[kDclsMaxAxes];
  acc_t* ds[kDclsMaxAxes];

  // `buffer` holds 9 * max_extent values.
  TapProfiles(acc_t* buffer, int64_t max_extent) {
    for (int q = 0; q < kDclsMaxAxes; ++q) {
      phi[q] = buffer + (3 * q) * max_extent;
      dc[q] = buffer + (3 * q + 1) * max_extent;
      ds[q] = buffer + (3 * q + 2) * max_extent;
    }
  }

  // Fills the profiles and returns the tap's normaliser (from the same
  // samples, in the same order, as dcls_tap_norm). `on_grid` is false when the
  // tap has no cell on the grid.
  DclsTapNorm<acc_t> fill(const DclsGeometry& g, const PaddedAxes& axes, const acc_t* c,
                          const acc_t* sig, bool& on_grid) {
    acc_t s[kDclsMaxAxes] = {0, 0, 0}, s_dc[kDclsMaxAxes] = {0, 0, 0}, s_ds[kDclsMaxAxes] = {0, 0, 0};
    on_grid = true;
    for (int q = 0; q < kDclsMaxAxes; ++q) {
      if (q < axes.off) {
        lo[q] = 0;
        len[q] = 1;
        phi[q][0] = acc_t(1);
        dc[q][0] = ds[q][0] = acc_t(0);
        continue;
      }
      const int a = q - axes.off;
      int64_t hi;
      dcls_axis_window(g.version, c[a], sig[a], g.D[a], lo[q], hi);
      len[q] = hi - lo[q];
      on_grid = on_grid && len[q] > 0;
      for (int64_t j = 0; j < len[q]; ++j) {
        const DclsAxisSample<acc_t> p = dcls_axis_sample(g.version, lo[q] + j, c[a], sig[a]);
        phi[q][j] = p.phi;
        dc[q][j] = p.dc;
        ds[q][j] = p.dsig;
        s[a] += p.phi;
        s_dc[a] += p.dc;
        s_ds[a] += p.dsig;
      }
    }
    return dcls_norm_from_sums(g.version, g.n, s, s_dc, s_ds);
  }
};

// Rough operations per (o, i) kernel, to size the parallel chunks.
int64_t work_per_pair(const DclsGeometry& g) {
  const int64_t per_tap = g.version == DclsVersion::V0 || g.version == DclsVersion::V1
                              ? (int64_t(1) << g.n)
                              : g.cells;
  return g.Kc * per_tap + g.cells;
}

int64_t pair_grain(const DclsGeometry& g) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_pair(g)));
}

template <typename scalar_t>
void construct_cpu_kernel(const DclsGeometry& g, const scalar_t* W, const scalar_t* P,
                          const scalar_t* SIG, scalar_t* K) {
  using acc_t = at::opmath_type<scalar_t>;
  const PaddedAxes axes = padded_axes(g);
  const int64_t E1 = axes.E[1], E2 = axes.E[2];
  at::parallel_for(0, g.Co * g.Cig, pair_grain(g), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.cells), buffer(9 * axes.max_extent);
    TapProfiles<acc_t> prof(buffer.data(), axes.max_extent);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t o = pair / g.Cig, i = pair % g.Cig;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t k = 0; k < g.Kc; ++k) {
        acc_t c[kDclsMaxAxes], sig[kDclsMaxAxes];
        dcls_load_tap(g, P, SIG, o, i, k, c, sig);
        bool on_grid;
        const DclsTapNorm<acc_t> norm = prof.fill(g, axes, c, sig, on_grid);
        if (!on_grid) continue;
        const acc_t scale = static_cast<acc_t>(W[pair * g.Kc + k]) / norm.N;
        const acc_t* phi2 = prof.phi[2];
        const int64_t len2 = prof.len[2];
        for (int64_t j0 = 0; j0 < prof.len[0]; ++j0) {
          const acc_t c0 = scale * prof.phi[0][j0];
          for (int64_t j1 = 0; j1 < prof.len[1]; ++j1) {
            const acc_t coef = c0 * prof.phi[1][j1];
            acc_t* row = acc.data() + ((prof.lo[0] + j0) * E1 + prof.lo[1] + j1) * E2 + prof.lo[2];
            for (int64_t j2 = 0; j2 < len2; ++j2) row[j2] += coef * phi2[j2];
          }
        }
      }
      scalar_t* out = K + pair * g.cells;
      for (int64_t u = 0; u < g.cells; ++u) out[u] = static_cast<scalar_t>(acc[u]);
    }
  });
}

// Three dot products of a kernel-gradient row with a profile row, in
// kLanes independent partial sums (so the compiler can vectorise the loop)
// added in a fixed order: the result does not depend on the thread count.
constexpr int64_t kLanes = 8;

template <typename scalar_t, typename acc_t>
inline void row_dots(const scalar_t* row, const acc_t* a, const acc_t* b, const acc_t* c,
                     int64_t len, acc_t& ra, acc_t& rb, acc_t& rc) {
  acc_t la[kLanes] = {}, lb[kLanes] = {}, lc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= len; j += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const acc_t g = static_cast<acc_t>(row[j + l]);
      la[l] += g * a[j + l];
      lb[l] += g * b[j + l];
      lc[l] += g * c[j + l];
    }
  }
  for (int64_t l = 0; j < len; ++j, ++l) {
    const acc_t g = static_cast<acc_t>(row[j]);
    la[l] += g * a[j];
    lb[l] += g * b[j];
    lc[l] += g * c[j];
  }
  ra = rb = rc = acc_t(0);
  for (int64_t l = 0; l < kLanes; ++l) {
    ra += la[l];
    rb += lb[l];
    rc += lc[l];
  }
}

// Contracts one tap's profile with the kernel gradient G of its (o, i)
// kernel over the tap's window (nested: last axis, then middle, then first).
template <typename scalar_t, typename acc_t>
DclsTapContraction<acc_t> contract_tap(const TapProfiles<acc_t>& prof, const PaddedAxes& axes,
                                       const scalar_t* G) {
  const int64_t E1 = axes.E[1], E2 = axes.E[2];
  const int64_t len2 = prof.len[2];
  const acc_t *phi2 = prof.phi[2], *dc2 = prof.dc[2], *ds2 = prof.ds[2];
  acc_t t = 0, e_c[3] = {0, 0, 0}, e_s[3] = {0, 0, 0};
  for (int64_t j0 = 0; j0 < prof.len[0]; ++j0) {
    acc_t t1 = 0, c1 = 0, s1 = 0, c12 = 0, s12 = 0;
    for (int64_t j1 = 0; j1 < prof.len[1]; ++j1) {
      const scalar_t* row = G + ((prof.lo[0] + j0) * E1 + prof.lo[1] + j1) * E2 + prof.lo[2];
      acc_t r, rc, rs;
      row_dots(row, phi2, dc2, ds2, len2, r, rc, rs);
      const acc_t p1 = prof.phi[1][j1];
      t1 += p1 * r;
      c1 += prof.dc[1][j1] * r;
      s1 += prof.ds[1][j1] * r;
      c12 += p1 * rc;
      s12 += p1 * rs;
    }
    const acc_t p0 = prof.phi[0][j0];
    t += p0 * t1;
    e_c[0] += prof.dc[0][j0] * t1;
    e_s[0] += prof.ds[0][j0] * t1;
    e_c[1] += p0 * c1;
    e_s[1] += p0 * s1;
    e_c[2] += p0 * c12;
    e_s[2] += p0 * s12;
  }
  DclsTapContraction<acc_t> e;
  e.T_ = t;
  for (int a = 0; a < kDclsMaxAxes; ++a) e.E_c[a] = e.E_sig[a] = acc_t(0);
  for (int q = axes.off; q < kDclsMaxAxes; ++q) {
    e.E_c[q - axes.off] = e_c[q];
    e.E_sig[q - axes.off] = e_s[q];
  }
  return e;
}

// Sums a (n, Co, cols) buffer over Co into (n, 1, cols), each column in the
// order o = 0, 1, ..., whatever the number of threads.
template <typename scalar_t, typename acc_t>
void sum_over_out_channels(const acc_t* full, scalar_t* out, int n, int64_t Co, int64_t cols) {
  at::parallel_for(0, n * cols, std::max<int64_t>(1, 32768 / std::max<int64_t>(Co, 1)),
                   [&](int64_t begin, int64_t end) {
                     std::vector<acc_t> sum;
                     for (int64_t start = begin; start < end;) {
                       const int64_t a = start / cols;
                       const int64_t stop = std::min(end, (a + 1) * cols);
                       const int64_t c0 = start - a * cols, len = stop - start;
                       sum.assign(len, acc_t(0));
                       for (int64_t o = 0; o < Co; ++o) {
                         const acc_t* src = full + (a * Co + o) * cols + c0;
                         for (int64_t j = 0; j < len; ++j) sum[j] += src[j];
                       }
                       for (int64_t j = 0; j < len; ++j) out[start + j] = static_cast<scalar_t>(sum[j]);
                       start = stop;
                     }
                   });
}

// gauss: every tap covers the whole grid, so the taps of one (o, i) kernel
// are contracted together, each loop over taps a contiguous, vectorisable
// axpy (no reduction is reordered; per tap the cells are summed in the same
// nested order as contract_tap). The profiles are tap-minor: for padded axis
// q, phi[q][u * Kc + k] (likewise dc, ds). `out` receives T, E_c[0..2] and
// E_sig[0..2] over padded axes, 7 arrays of Kc; `scratch` holds 8 * Kc.
template <typename scalar_t, typename acc_t>
void contract_all_taps(const scalar_t* G, const PaddedAxes& axes, int64_t Kc,
                       acc_t* const* phi, acc_t* const* dc, acc_t* const* ds, acc_t* out,
                       acc_t* scratch) {
  const int64_t E0 = axes.E[0], E1 = axes.E[1], E2 = axes.E[2];
  acc_t *t = out, *c0 = out + Kc, *c1 = out + 2 * Kc, *c2 = out + 3 * Kc;
  acc_t *s0 = out + 4 * Kc, *s1 = out + 5 * Kc, *s2 = out + 6 * Kc;
  acc_t *at = scratch, *ac1 = scratch + Kc, *as1 = scratch + 2 * Kc, *ac2 = scratch + 3 * Kc,
        *as2 = scratch + 4 * Kc, *r = scratch + 5 * Kc, *rc = scratch + 6 * Kc,
        *rs = scratch + 7 * Kc;
  std::fill(out, out + 7 * Kc, acc_t(0));
  for (int64_t u0 = 0; u0 < E0; ++u0) {
    std::fill(scratch, scratch + 5 * Kc, acc_t(0));
    for (int64_t u1 = 0; u1 < E1; ++u1) {
      std::fill(r, r + 3 * Kc, acc_t(0));
      const scalar_t* row = G + (u0 * E1 + u1) * E2;
      for (int64_t u2 = 0; u2 < E2; ++u2) {
        const acc_t gv = static_cast<acc_t>(row[u2]);
        const acc_t *p = phi[2] + u2 * Kc, *pc = dc[2] + u2 * Kc, *ps = ds[2] + u2 * Kc;
        for (int64_t k = 0; k < Kc; ++k) {
          r[k] += gv * p[k];
          rc[k] += gv * pc[k];
          rs[k] += gv * ps[k];
        }
      }
      const acc_t *p = phi[1] + u1 * Kc, *pc = dc[1] + u1 * Kc, *ps = ds[1] + u1 * Kc;
      for (int64_t k = 0; k < Kc; ++k) {
        at[k] += p[k] * r[k];
        ac1[k] += pc[k] * r[k];
        as1[k] += ps[k] * r[k];
        ac2[k] += p[k] * rc[k];
        as2[k] += p[k] * rs[k];
      }
    }
    const acc_t *p = phi[0] + u0 * Kc, *pc = dc[0] + u0 * Kc, *ps = ds[0] + u0 * Kc;
    for (int64_t k = 0; k < Kc; ++k) {
      t[k] += p[k] * at[k];
      c0[k] += pc[k] * at[k];
      s0[k] += ps[k] * at[k];
      c1[k] += p[k] * ac1[k];
      s1[k] += p[k] * as1[k];
      c2[k] += p[k] * ac2[k];
      s2[k] += p[k] * as2[k];
    }
  }
}

template <typename scalar_t>
void construct_backward_cpu_kernel(const DclsGeometry& g, const scalar_t* G, const scalar_t* W,
                                   const scalar_t* P, const scalar_t* SIG, scalar_t* gW,
                                   scalar_t* gP, scalar_t* gSIG) {
  using acc_t = at::opmath_type<scalar_t>;
  const PaddedAxes axes = padded_axes(g);
  const int64_t cols = g.Cig * g.Kc;
  // Broadcast P: per-output-channel contributions first (a parameter-sized
  // buffer, allocated through ATen so memory profilers see it), summed in a
  // fixed order below.
  at::Tensor full;
  acc_t *full_p = nullptr, *full_sig = nullptr;
  if (g.broadcast_p) {
    full = at::empty({SIG ? 2 : 1, g.n * g.Co * cols},
                     at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value));
    full_p = full.mutable_data_ptr<acc_t>();
    if (SIG) full_sig = full_p + g.n * g.Co * cols;
  }
  // Writes one tap's gradients.
  auto emit = [&](int64_t o, int64_t i, int64_t k, const DclsTapNorm<acc_t>& norm,
                  const DclsTapContraction<acc_t>& e) {
    const int64_t t = (o * g.Cig + i) * g.Kc + k;
    const DclsTapGrads<acc_t> grads = dcls_tap_grads(g.n, static_cast<acc_t>(W[t]), norm, e);
    gW[t] = static_cast<scalar_t>(grads.weight);
    for (int a = 0; a < g.n; ++a) {
      if (g.broadcast_p) {
        const int64_t idx = (a * g.Co + o) * cols + i * g.Kc + k;
        full_p[idx] = grads.c[a];
        if (SIG) full_sig[idx] = grads.sig[a];
      } else {
        const int64_t idx = dcls_param_index(g, a, o, i, k);
        gP[idx] = static_cast<scalar_t>(grads.c[a]);
        if (SIG) gSIG[idx] = static_cast<scalar_t>(grads.sig[a]);
      }
    }
  };
  if (g.version == DclsVersion::Gauss) {
    const int64_t Kc = g.Kc;
    at::parallel_for(0, g.Co * g.Cig, pair_grain(g), [&](int64_t begin, int64_t end) {
      // Tap-minor profiles of the three padded axes, their per-axis sums, scratch.
      std::vector<acc_t> buffer(3 * Kc * (axes.E[0] + axes.E[1] + axes.E[2]) + 15 * Kc);
      acc_t *phi[kDclsMaxAxes], *dc[kDclsMaxAxes], *ds[kDclsMaxAxes];
      acc_t* next = buffer.data();
      for (int q = 0; q < kDclsMaxAxes; ++q) {
        phi[q] = next;
        dc[q] = next + axes.E[q] * Kc;
        ds[q] = next + 2 * axes.E[q] * Kc;
        next += 3 * axes.E[q] * Kc;
      }
      acc_t* out = next;
      acc_t* scratch = next + 7 * Kc;
      for (int64_t pair = begin; pair < end; ++pair) {
        const int64_t o = pair / g.Cig, i = pair % g.Cig;
        for (int q = 0; q < axes.off; ++q) {
          std::fill(phi[q], phi[q] + Kc, acc_t(1));
          std::fill(dc[q], dc[q] + Kc, acc_t(0));
          std::fill(ds[q], ds[q] + Kc, acc_t(0));
        }
        for (int64_t k = 0; k < Kc; ++k) {
          acc_t c[kDclsMaxAxes], sig[kDclsMaxAxes];
          dcls_load_tap(g, P, SIG, o, i, k, c, sig);
          for (int a = 0; a < g.n; ++a) {
            const int q = a + axes.off;
            for (int64_t u = 0; u < g.D[a]; ++u) {
              const DclsAxisSample<acc_t> p = dcls_axis_sample(g.version, u, c[a], sig[a]);
              phi[q][u * Kc + k] = p.phi;
              dc[q][u * Kc + k] = p.dc;
              ds[q][u * Kc + k] = p.dsig;
            }
          }
        }
        contract_all_taps(G + pair * g.cells, axes, Kc, phi, dc, ds, out, scratch);
        for (int64_t k = 0; k < Kc; ++k) {
          acc_t s[kDclsMaxAxes], s_dc[kDclsMaxAxes], s_ds[kDclsMaxAxes];
          DclsTapContraction<acc_t> e;
          e.T_ = out[k];
          for (int a = 0; a < kDclsMaxAxes; ++a) e.E_c[a] = e.E_sig[a] = acc_t(0);
          for (int a = 0; a < g.n; ++a) {
            const int q = a + axes.off;
            s[a] = s_dc[a] = s_ds[a] = acc_t(0);
            for (int64_t u = 0; u < g.D[a]; ++u) {
              s[a] += phi[q][u * Kc + k];
              s_dc[a] += dc[q][u * Kc + k];
              s_ds[a] += ds[q][u * Kc + k];
            }
            e.E_c[a] = out[(1 + q) * Kc + k];
            e.E_sig[a] = out[(4 + q) * Kc + k];
          }
          emit(o, i, k, dcls_norm_from_sums(g.version, g.n, s, s_dc, s_ds), e);
        }
      }
    });
  } else {
    at::parallel_for(0, g.Co * g.Cig, pair_grain(g), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> buffer(9 * axes.max_extent);
      TapProfiles<acc_t> prof(buffer.data(), axes.max_extent);
      for (int64_t pair = begin; pair < end; ++pair) {
        const int64_t o = pair / g.Cig, i = pair % g.Cig;
        const scalar_t* Gk = G + pair * g.cells;
        for (int64_t k = 0; k < g.Kc; ++k) {
          acc_t c[kDclsMaxAxes], sig[kDclsMaxAxes];
          dcls_load_tap(g, P, SIG, o, i, k, c, sig);
          bool on_grid;
          const DclsTapNorm<acc_t> norm = prof.fill(g, axes, c, sig, on_grid);
          DclsTapContraction<acc_t> e{};
          if (on_grid) e = contract_tap(prof, axes, Gk);
          emit(o, i, k, norm, e);
        }
      }
    });
  }
  if (g.broadcast_p) {
    sum_over_out_channels(full_p, gP, g.n, g.Co, cols);
    if (SIG) sum_over_out_channels(full_sig, gSIG, g.n, g.Co, cols);
  }
}

at::Tensor dcls_construct_cpu(const at::Tensor& weight, const at::Tensor& P,
                              const c10::optional<at::Tensor>& SIG,
                              at::IntArrayRef dilated_kernel_size, c10::string_view version) {
  std::vector<int64_t> kernel_shape;
  const DclsGeometry g =
      make_dcls_geometry(weight, P, SIG, dilated_kernel_size, std::string(version), &kernel_shape);
  check_device(weight, "weight", c10::DeviceType::CPU);
  const at::Tensor w = weight.contiguous(), p = P.contiguous();
  const at::Tensor s = dcls_has_sig(g.version) ? SIG->contiguous() : at::Tensor();
  at::Tensor kernel = at::empty(kernel_shape, w.options());
  if (kernel.numel() == 0) return kernel;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "dcls_construct_cpu", [&] {
    construct_cpu_kernel<scalar_t>(g, w.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(),
                                   s.defined() ? s.const_data_ptr<scalar_t>() : nullptr,
                                   kernel.mutable_data_ptr<scalar_t>());
  });
  return kernel;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dcls_construct_backward_cpu(
    const at::Tensor& grad_kernel, const at::Tensor& weight, const at::Tensor& P,
    const c10::optional<at::Tensor>& SIG, at::IntArrayRef dilated_kernel_size,
    c10::string_view version) {
  std::vector<int64_t> kernel_shape;
  const DclsGeometry g =
      make_dcls_geometry(weight, P, SIG, dilated_kernel_size, std::string(version), &kernel_shape);
  check_dcls_grad_kernel(grad_kernel, weight, kernel_shape);
  check_device(weight, "weight", c10::DeviceType::CPU);
  const at::Tensor gk = grad_kernel.contiguous(), w = weight.contiguous(), p = P.contiguous();
  const at::Tensor s = dcls_has_sig(g.version) ? SIG->contiguous() : at::Tensor();
  at::Tensor grad_weight = at::empty(w.sizes(), w.options());
  at::Tensor grad_P = at::empty(p.sizes(), p.options());
  at::Tensor grad_SIG = s.defined() ? at::empty(s.sizes(), s.options()) : at::empty({0}, w.options());
  if (grad_weight.numel() == 0) {
    grad_P.zero_();
    grad_SIG.zero_();
    return {grad_weight, grad_P, grad_SIG};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "dcls_construct_backward_cpu", [&] {
    construct_backward_cpu_kernel<scalar_t>(
        g, gk.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
        p.const_data_ptr<scalar_t>(), s.defined() ? s.const_data_ptr<scalar_t>() : nullptr,
        grad_weight.mutable_data_ptr<scalar_t>(), grad_P.mutable_data_ptr<scalar_t>(),
        s.defined() ? grad_SIG.mutable_data_ptr<scalar_t>() : nullptr);
  });
  return {grad_weight, grad_P, grad_SIG};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(learnable_ops, m) {
  m.def("dcls_construct(Tensor weight, Tensor P, Tensor? SIG, int[] dilated_kernel_size, "
        "str version) -> Tensor");
  m.def("dcls_construct_backward(Tensor grad_kernel, Tensor weight, Tensor P, Tensor? SIG, "
        "int[] dilated_kernel_size, str version) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) {
  m.impl("dcls_construct", &dcls_construct_cpu);
  m.impl("dcls_construct_backward", &dcls_construct_backward_cpu);
}

}  // namespace learnable_ops
