// depthwise_conv2d: a native depthwise convolution for any kernel size (the
// dense fast path of DCLS in depthwise layers), CPU kernels and schemas.
//
// The CPU core works on tap lists (learnable_ops/tap_conv.h) so the sparse
// DCLS path (cpp/dcls_sparse.cpp) reuses it. Every (n, c) plane is padded once
// into a thread-local buffer in the opmath dtype, with the columns split into
// `stride` phases, so that for every tap the inner loop runs over contiguous
// output columns with no bounds checks: out_row[j] += w * buf_row[j + v/sw].
#include <algorithm>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/constant_pad_nd.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/cpu_vec.h"
#include "learnable_ops/macros.h"
#include "learnable_ops/tap_conv.h"

namespace learnable_ops {
namespace {

// Vectors (learnable_ops/cpu_vec.h): output columns are computed in blocks of
// 1, 2 or 4 vectors (by plane width), 8, 4 or 2 rows at a time, so 8
// independent accumulator chains stay in registers across all taps and hide
// the FMA latency. The phase buffers are padded to kBlock = 4 vectors.
template <typename acc_t> constexpr int64_t kBlock = 4 * kLanes<acc_t>;

// A plane padded into the opmath dtype, columns split by phase:
// element (r, q, m) holds the padded coordinate (r, m * sw + q), i.e. the input
// element (r - pt, m * sw + q - pl), or 0 outside the input.
struct PhaseLayout {
  int64_t rows, phases, cols;  // cols per phase row, including block slack
  int64_t size() const { return rows * phases * cols; }
  int64_t row(int64_t r, int64_t q) const { return (r * phases + q) * cols; }
};

template <typename acc_t>
PhaseLayout phase_layout(int64_t out_h, int64_t out_w, int64_t kh, int64_t kw, int64_t sh, int64_t sw) {
  const int64_t block = kBlock<acc_t>;
  const int64_t padded_w = (out_w + block - 1) / block * block;
  return {(out_h - 1) * sh + kh, sw, padded_w + (kw - 1) / sw};
}

template <typename scalar_t, typename acc_t>
void fill_phase_buffer(acc_t* __restrict__ buf, const PhaseLayout& L, const scalar_t* __restrict__ plane,
                       int64_t H, int64_t W, int64_t pt, int64_t pl) {
  for (int64_t r = 0; r < L.rows; ++r) {
    const int64_t iy = r - pt;
    for (int64_t q = 0; q < L.phases; ++q) {
      acc_t* dst = buf + L.row(r, q);
      if (iy < 0 || iy >= H) {
        std::fill(dst, dst + L.cols, acc_t(0));
        continue;
      }
      const scalar_t* src = plane + iy * W;
      // Columns m with 0 <= m * sw + q - pl < W.
      const int64_t first = q - pl;
      const int64_t m0 = first >= 0 ? 0 : (-first + L.phases - 1) / L.phases;
      const int64_t m1 = std::max<int64_t>(m0, std::min<int64_t>(L.cols, (W - first + L.phases - 1) / L.phases));
      std::fill(dst, dst + m0, acc_t(0));
      if (L.phases == 1) {
        for (int64_t m = m0; m < m1; ++m) dst[m] = static_cast<acc_t>(src[m + first]);
      } else {
        for (int64_t m = m0; m < m1; ++m) dst[m] = static_cast<acc_t>(src[m * L.phases + first]);
      }
      std::fill(dst + m1, dst + L.cols, acc_t(0));
    }
  }
}

// R output rows starting at row i, in blocks of NV vectors (Wb a whole number
// of blocks): out = b0 + sum_t w[t] * buf[row * row_step + tap_base[t] + j].
// The R * NV accumulators stay in registers across all taps.
template <typename acc_t, int NV, int R>
LO_ALWAYS_INLINE void forward_rows(const acc_t* buf, int64_t row_step, const int64_t* tap_base, const acc_t* w,
                                   int64_t T, acc_t b0, acc_t* out, int64_t i, int64_t Wb) {
  using V = typename Vec<acc_t>::type;
  using U = typename Vec<acc_t>::unaligned;
  constexpr int64_t NL = kLanes<acc_t>;
  for (int64_t j0 = 0; j0 < Wb; j0 += NV * NL) {
    V a[R][NV];
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < NV; ++q) a[r][q] = V{} + b0;
    for (int64_t t = 0; t < T; ++t) {
      const acc_t wt = w[t];
      const acc_t* s = buf + i * row_step + tap_base[t] + j0;
      for (int r = 0; r < R; ++r)
        for (int q = 0; q < NV; ++q) a[r][q] += wt * *reinterpret_cast<const U*>(s + r * row_step + q * NL);
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < NV; ++q) *reinterpret_cast<U*>(out + (i + r) * Wb + j0 + q * NL) = a[r][q];
  }
}

// One plane (Ho x Wb) with blocks of NV vectors: 8 / NV rows at a time, so
// narrow planes (7 or 14 columns) waste few lanes and still run 8 FMA chains.
template <typename acc_t, int NV>
LO_ALWAYS_INLINE void forward_plane_nv(const acc_t* buf, int64_t row_step, const int64_t* tap_base,
                                       const acc_t* w, int64_t T, acc_t b0, acc_t* out, int64_t Ho, int64_t Wb) {
  constexpr int R = 8 / NV;
  int64_t i = 0;
  for (; i + R <= Ho; i += R) forward_rows<acc_t, NV, R>(buf, row_step, tap_base, w, T, b0, out, i, Wb);
  if constexpr (R >= 8)
    for (; i + 4 <= Ho; i += 4) forward_rows<acc_t, NV, 4>(buf, row_step, tap_base, w, T, b0, out, i, Wb);
  if constexpr (R >= 4)
    for (; i + 2 <= Ho; i += 2) forward_rows<acc_t, NV, 2>(buf, row_step, tap_base, w, T, b0, out, i, Wb);
  for (; i < Ho; ++i) forward_rows<acc_t, NV, 1>(buf, row_step, tap_base, w, T, b0, out, i, Wb);
}

template <typename acc_t>
LO_ALWAYS_INLINE void forward_plane(const acc_t* buf, int64_t row_step, const int64_t* tap_base, const acc_t* w,
                                    int64_t T, acc_t b0, acc_t* out, int64_t Ho, int64_t Wb, int nv) {
  if (nv == 1) forward_plane_nv<acc_t, 1>(buf, row_step, tap_base, w, T, b0, out, Ho, Wb);
  else if (nv == 2) forward_plane_nv<acc_t, 2>(buf, row_step, tap_base, w, T, b0, out, Ho, Wb);
  else forward_plane_nv<acc_t, 4>(buf, row_step, tap_base, w, T, b0, out, Ho, Wb);
}

// out[t] += sum over the plane of grad[i, j] * buf[i * row_step + tap_base[t] + j]:
// KT taps at a time (independent accumulator chains), NV vector accumulators
// per tap, reduced in a fixed order (deterministic).
template <typename acc_t, int NV, int KT>
LO_ALWAYS_INLINE void correlate_taps(const acc_t* gplane, const acc_t* buf, int64_t row_step,
                                     const int64_t* tap_base, int64_t Ho, int64_t Wb, acc_t* out) {
  using V = typename Vec<acc_t>::type;
  using U = typename Vec<acc_t>::unaligned;
  constexpr int64_t NL = kLanes<acc_t>;
  V lanes[KT][NV] = {};
  for (int64_t i = 0; i < Ho; ++i) {
    const acc_t* a = gplane + i * Wb;
    const acc_t* b = buf + i * row_step;
    for (int64_t j0 = 0; j0 < Wb; j0 += NV * NL)
      for (int q = 0; q < NV; ++q) {
        const V av = *reinterpret_cast<const U*>(a + j0 + q * NL);
        for (int k = 0; k < KT; ++k) lanes[k][q] += av * *reinterpret_cast<const U*>(b + tap_base[k] + j0 + q * NL);
      }
  }
  for (int k = 0; k < KT; ++k) {
    V v = lanes[k][0];
    for (int q = 1; q < NV; ++q) v += lanes[k][q];
    acc_t s = 0;
    for (int64_t l = 0; l < NL; ++l) s += v[l];
    out[k] += s;
  }
}

template <typename acc_t, int NV>
LO_ALWAYS_INLINE void correlate_plane_nv(const acc_t* gplane, const acc_t* buf, int64_t row_step,
                                         const int64_t* tap_base, int64_t T, int64_t Ho, int64_t Wb, acc_t* out) {
  constexpr int KT = 8 / NV;
  int64_t t = 0;
  for (; t + KT <= T; t += KT) correlate_taps<acc_t, NV, KT>(gplane, buf, row_step, tap_base + t, Ho, Wb, out + t);
  for (; t < T; ++t) correlate_taps<acc_t, NV, 1>(gplane, buf, row_step, tap_base + t, Ho, Wb, out + t);
}

template <typename acc_t>
LO_ALWAYS_INLINE void correlate_plane(const acc_t* gplane, const acc_t* buf, int64_t row_step,
                                      const int64_t* tap_base, int64_t T, int64_t Ho, int64_t Wb, acc_t* out, int nv) {
  if (nv == 1) correlate_plane_nv<acc_t, 1>(gplane, buf, row_step, tap_base, T, Ho, Wb, out);
  else if (nv == 2) correlate_plane_nv<acc_t, 2>(gplane, buf, row_step, tap_base, T, Ho, Wb, out);
  else correlate_plane_nv<acc_t, 4>(gplane, buf, row_step, tap_base, T, Ho, Wb, out);
}

// Vectors per column block for a row of Wo outputs, and the row width padded
// to whole blocks (never more than the phase buffer's padding to kBlock).
template <typename acc_t>
int block_vectors(int64_t Wo) {
  return Wo <= kLanes<acc_t> ? 1 : (Wo <= 2 * kLanes<acc_t> ? 2 : 4);
}
template <typename acc_t>
int64_t padded_width(int64_t Wo) {
  const int64_t b = block_vectors<acc_t>(Wo) * kLanes<acc_t>;
  return (Wo + b - 1) / b * b;
}

// float gets clones for AVX-512 and AVX2+FMA, picked at load time (the
// extension itself is compiled for x86-64-v2).
LO_CPU_CLONES void forward_plane_f32(const float* buf, int64_t row_step, const int64_t* tap_base, const float* w,
                                     int64_t T, float b0, float* out, int64_t Ho, int64_t Wb, int nv) {
  forward_plane<float>(buf, row_step, tap_base, w, T, b0, out, Ho, Wb, nv);
}
LO_CPU_CLONES void correlate_plane_f32(const float* gplane, const float* buf, int64_t row_step,
                                       const int64_t* tap_base, int64_t T, int64_t Ho, int64_t Wb, float* out,
                                       int nv) {
  correlate_plane<float>(gplane, buf, row_step, tap_base, T, Ho, Wb, out, nv);
}
void forward_plane_any(const float* buf, int64_t row_step, const int64_t* tap_base, const float* w, int64_t T,
                       float b0, float* out, int64_t Ho, int64_t Wb, int nv) {
  forward_plane_f32(buf, row_step, tap_base, w, T, b0, out, Ho, Wb, nv);
}
void forward_plane_any(const double* buf, int64_t row_step, const int64_t* tap_base, const double* w, int64_t T,
                       double b0, double* out, int64_t Ho, int64_t Wb, int nv) {
  forward_plane<double>(buf, row_step, tap_base, w, T, b0, out, Ho, Wb, nv);
}
void correlate_plane_any(const float* gplane, const float* buf, int64_t row_step, const int64_t* tap_base,
                         int64_t T, int64_t Ho, int64_t Wb, float* out, int nv) {
  correlate_plane_f32(gplane, buf, row_step, tap_base, T, Ho, Wb, out, nv);
}
void correlate_plane_any(const double* gplane, const double* buf, int64_t row_step, const int64_t* tap_base,
                         int64_t T, int64_t Ho, int64_t Wb, double* out, int nv) {
  correlate_plane<double>(gplane, buf, row_step, tap_base, T, Ho, Wb, out, nv);
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& weights,
                    const std::optional<at::Tensor>& bias, at::Tensor& out, const TapConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const PhaseLayout L = phase_layout<acc_t>(g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw);
  const int nv = block_vectors<acc_t>(g.Wo);
  const int64_t Wb = padded_width<acc_t>(g.Wo);
  const int64_t T = offsets.size(1);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const int64_t* op = offsets.const_data_ptr<int64_t>();
  const acc_t* wp = weights.const_data_ptr<acc_t>();
  at::Tensor bias_acc;
  if (bias.has_value()) bias_acc = bias->to(weights.scalar_type()).contiguous();
  const acc_t* bp = bias_acc.defined() ? bias_acc.const_data_ptr<acc_t>() : nullptr;
  scalar_t* yp = out.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf(L.size());
    std::vector<acc_t> acc(g.Ho * Wb);
    std::vector<int64_t> tap_base(T);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % g.C;
      fill_phase_buffer(buf.data(), L, xp + p * g.H * g.W, g.H, g.W, g.pt, g.pl);
      const int64_t* off = op + (offsets.size(0) == 1 ? 0 : c) * T * 2;
      for (int64_t t = 0; t < T; ++t)
        tap_base[t] = L.row(off[2 * t], off[2 * t + 1] % g.sw) + off[2 * t + 1] / g.sw;
      forward_plane_any(buf.data(), L.row(g.sh, 0), tap_base.data(), wp + c * T, T, bp ? bp[c] : acc_t(0),
                        acc.data(), g.Ho, Wb, nv);
      scalar_t* plane = yp + p * g.Ho * g.Wo;
      for (int64_t i = 0; i < g.Ho; ++i)
        for (int64_t j = 0; j < g.Wo; ++j) plane[i * g.Wo + j] = static_cast<scalar_t>(acc[i * Wb + j]);
    }
  });
}

// The adjoint as a scatter into a phase buffer (any stride and padding): each
// plane is owned by one thread, so the accumulation order is fixed.
template <typename scalar_t>
void backward_input_scatter_kernel(const at::Tensor& go, const at::Tensor& offsets,
                                   const at::Tensor& weights, at::Tensor& gx, const TapConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const PhaseLayout L = phase_layout<acc_t>(g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw);
  const int64_t T = offsets.size(1);
  const scalar_t* gp = go.const_data_ptr<scalar_t>();
  const int64_t* op = offsets.const_data_ptr<int64_t>();
  const acc_t* wp = weights.const_data_ptr<acc_t>();
  scalar_t* xp = gx.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf(L.size());
    std::vector<acc_t> grow(g.Wo);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % g.C;
      std::fill(buf.begin(), buf.end(), acc_t(0));
      const int64_t* off = op + (offsets.size(0) == 1 ? 0 : c) * T * 2;
      const acc_t* w = wp + c * T;
      for (int64_t i = 0; i < g.Ho; ++i) {
        const scalar_t* src = gp + (p * g.Ho + i) * g.Wo;
        for (int64_t j = 0; j < g.Wo; ++j) grow[j] = static_cast<acc_t>(src[j]);
        acc_t* rows = buf.data() + L.row(i * g.sh, 0);
        for (int64_t t = 0; t < T; ++t) {
          const acc_t wt = w[t];
          acc_t* __restrict__ dst = rows + L.row(off[2 * t], off[2 * t + 1] % g.sw) + off[2 * t + 1] / g.sw;
          const acc_t* __restrict__ gr = grow.data();
          for (int64_t j = 0; j < g.Wo; ++j) dst[j] += wt * gr[j];
        }
      }
      scalar_t* plane = xp + p * g.H * g.W;
      for (int64_t y = 0; y < g.H; ++y) {
        const int64_t r = y + g.pt;
        for (int64_t x = 0; x < g.W; ++x) {
          const int64_t col = x + g.pl, m = col / g.sw;
          plane[y * g.W + x] = (r < L.rows && m < L.cols)
                                   ? static_cast<scalar_t>(buf[L.row(r, col % g.sw) + m])
                                   : scalar_t(0);
        }
      }
    }
  });
}

template <typename scalar_t>
void correlation_kernel(const at::Tensor& go, const at::Tensor& x, const at::Tensor& offsets,
                        at::Tensor& corr, at::Tensor& gbias, const TapConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t B = kLanes<acc_t>;
  const PhaseLayout L = phase_layout<acc_t>(g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw);
  const int64_t T = offsets.size(1);
  const int nv = block_vectors<acc_t>(g.Wo);
  const int64_t Wb = padded_width<acc_t>(g.Wo);  // grad rows zero-padded to whole blocks
  const scalar_t* gp = go.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const int64_t* op = offsets.const_data_ptr<int64_t>();
  acc_t* cp = corr.mutable_data_ptr<acc_t>();
  acc_t* bp = gbias.mutable_data_ptr<acc_t>();
  // One channel per task: the batch is summed in order inside it.
  at::parallel_for(0, g.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf(L.size());
    std::vector<acc_t> gplane(g.Ho * Wb, acc_t(0));
    std::vector<int64_t> tap_base(T);
    for (int64_t c = begin; c < end; ++c) {
      const int64_t* off = op + (offsets.size(0) == 1 ? 0 : c) * T * 2;
      for (int64_t t = 0; t < T; ++t)
        tap_base[t] = L.row(off[2 * t], off[2 * t + 1] % g.sw) + off[2 * t + 1] / g.sw;
      acc_t* out = cp + c * T;
      std::fill(out, out + T, acc_t(0));
      acc_t bsum = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t p = n * g.C + c;
        fill_phase_buffer(buf.data(), L, xp + p * g.H * g.W, g.H, g.W, g.pt, g.pl);
        acc_t lanes_b[B] = {};
        for (int64_t i = 0; i < g.Ho; ++i) {
          const scalar_t* src = gp + (p * g.Ho + i) * g.Wo;
          acc_t* dst = gplane.data() + i * Wb;
          for (int64_t j = 0; j < g.Wo; ++j) dst[j] = static_cast<acc_t>(src[j]);
          for (int64_t j0 = 0; j0 < Wb; j0 += B)
            for (int64_t l = 0; l < B; ++l) lanes_b[l] += dst[j0 + l];
        }
        for (int64_t l = 0; l < B; ++l) bsum += lanes_b[l];
        correlate_plane_any(gplane.data(), buf.data(), L.row(g.sh, 0), tap_base.data(), T, g.Ho, Wb, out, nv);
      }
      bp[c] = bsum;
    }
  });
}

void check_tap_inputs(const at::Tensor& offsets, const at::Tensor& weights, const TapConvGeometry& g) {
  TORCH_CHECK(offsets.scalar_type() == at::kLong && offsets.dim() == 3 &&
                  (offsets.size(0) == g.C || offsets.size(0) == 1) && offsets.size(2) == 2 &&
                  offsets.is_contiguous() && offsets.device().is_cpu(),
              "tap offsets must be a contiguous (C or 1, T, 2) int64 CPU tensor");
  TORCH_CHECK(g.pt >= 0 && g.pl >= 0 && g.sh >= 1 && g.sw >= 1, "bad tap-conv geometry");
}

}  // namespace

at::Tensor tap_conv_forward_cpu(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& weights,
                                const std::optional<at::Tensor>& bias, const TapConvGeometry& g) {
  check_tap_inputs(offsets, weights, g);
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty({g.N, g.C, g.Ho, g.Wo}, xc.options());
  if (out.numel() == 0) return out;
  const at::Tensor wc = weights.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "tap_conv_forward_cpu",
                                  [&] { forward_kernel<scalar_t>(xc, offsets, wc, bias, out, g); });
  return out;
}

at::Tensor tap_conv_backward_input_cpu(const at::Tensor& grad_out, const at::Tensor& offsets,
                                       const at::Tensor& weights, const TapConvGeometry& g) {
  check_tap_inputs(offsets, weights, g);
  const at::Tensor go = grad_out.contiguous();
  at::Tensor gx = at::empty({g.N, g.C, g.H, g.W}, go.options());
  if (gx.numel() == 0) return gx;
  if (go.numel() == 0) return gx.zero_();
  const at::Tensor wc = weights.contiguous();
  if (adjoint_is_flipped_conv(g))  // runs on the register-blocked forward kernel
    return tap_conv_forward_cpu(go, flip_offsets(offsets, g), wc, std::nullopt, flipped_geometry(g));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "tap_conv_backward_input_cpu",
                                  [&] { backward_input_scatter_kernel<scalar_t>(go, offsets, wc, gx, g); });
  return gx;
}

std::tuple<at::Tensor, at::Tensor> tap_conv_correlation_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                            const at::Tensor& offsets, const TapConvGeometry& g,
                                                            bool /*bias: summed anyway*/) {
  const auto acc_dtype = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor corr = at::zeros({g.C, offsets.size(1)}, x.options().dtype(acc_dtype));
  at::Tensor gbias = at::zeros({g.C}, x.options().dtype(acc_dtype));
  if (g.N == 0 || g.Ho == 0 || g.Wo == 0 || g.C == 0) return {corr, gbias};
  const at::Tensor go = grad_out.contiguous(), xc = x.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "tap_conv_correlation_cpu",
                                  [&] { correlation_kernel<scalar_t>(go, xc, offsets, corr, gbias, g); });
  return {corr, gbias};
}

namespace {

// ---------------------------------------------------------------------------
// depthwise_conv2d ops. weight: (C, kh, kw); padding: (top, bottom, left, right).
// ---------------------------------------------------------------------------

TapConvGeometry depthwise_geometry(at::IntArrayRef input_size, int64_t kh, int64_t kw, at::IntArrayRef stride,
                                   at::IntArrayRef padding) {
  TORCH_CHECK_VALUE(input_size.size() == 4, "input must be a 4D tensor (N, C, H, W), got shape ", input_size);
  TORCH_CHECK_VALUE(stride.size() == 2 && stride[0] >= 1 && stride[1] >= 1,
                    "stride must be two positive ints, got ", stride);
  TORCH_CHECK_VALUE(padding.size() == 4 && padding[0] >= 0 && padding[1] >= 0 && padding[2] >= 0 &&
                        padding[3] >= 0,
                    "padding must be four non-negative ints (top, bottom, left, right), got ", padding);
  TORCH_CHECK_VALUE(kh >= 1 && kw >= 1, "weight must have a non-empty kernel, got ", kh, "x", kw);
  TapConvGeometry g;
  g.N = input_size[0];
  g.C = input_size[1];
  g.H = input_size[2];
  g.W = input_size[3];
  g.kh = kh;
  g.kw = kw;
  g.sh = stride[0];
  g.sw = stride[1];
  g.pt = padding[0];
  g.pl = padding[2];
  g.dense = true;
  TORCH_CHECK_VALUE(g.H + padding[0] + padding[1] >= kh && g.W + padding[2] + padding[3] >= kw,
                    "the padded input (", g.H + padding[0] + padding[1], "x", g.W + padding[2] + padding[3],
                    ") is smaller than the kernel (", kh, "x", kw, ")");
  g.Ho = tap_conv_out_size(g.H, kh, g.sh, padding[0], padding[1]);
  g.Wo = tap_conv_out_size(g.W, kw, g.sw, padding[2], padding[3]);
  return g;
}

void check_depthwise_weight(const at::Tensor& weight, int64_t channels, const at::Tensor& like,
                            const char* like_name) {
  check_floating(weight, "weight");
  check_same_dtype(like, like_name, weight, "weight");
  check_same_device(like, like_name, weight, "weight");
  TORCH_CHECK_VALUE(weight.dim() == 3 && weight.size(0) == channels, "weight must have shape (C=", channels,
                    ", kh, kw), got ", weight.sizes());
}

// Taps (u, v) of a dense kh x kw kernel, shared by every channel (a (1, T, 2)
// CPU tensor), in row-major order. The CUDA backend does not read it: it runs
// dedicated dense kernels when g.dense is set.
at::Tensor dense_offsets(int64_t kh, int64_t kw) {
  at::Tensor off = at::empty({1, kh * kw, 2}, at::TensorOptions().dtype(at::kLong));
  int64_t* p = off.mutable_data_ptr<int64_t>();
  for (int64_t u = 0; u < kh; ++u)
    for (int64_t v = 0; v < kw; ++v, p += 2) {
      p[0] = u;
      p[1] = v;
    }
  return off;
}

// Taps that only ever read zero padding. Output o reads input row
// o * sh - pt + u at kernel row u, so rows u outside [u0, u1] (u0 =
// max(0, pt - (Ho - 1) * sh), u1 = min(kh - 1, H - 1 + pt)) multiply padding
// for every output: a 17x17 kernel on a 7x7 plane with 'same' padding reaches
// only its central 13x13 taps. The ops run the conv of the kernel cropped to
// [u0, u1] x [v0, v1] with the leading padding reduced by u0 and v0 (the
// output size is unchanged), which gives the same sums without the zero
// products (1 - 169/289 = 42% of the work at ConvNeXt's 768x7x7 stage); the
// weight gradient of a cropped tap is exactly 0.
struct TapCrop {
  int64_t u0, u1, v0, v1;
  bool crops(const TapConvGeometry& g) const { return u0 > 0 || v0 > 0 || u1 < g.kh - 1 || v1 < g.kw - 1; }
};

TapCrop reachable_taps(const TapConvGeometry& g) {
  const auto range = [](int64_t size, int64_t k, int64_t s, int64_t before, int64_t out, int64_t& lo, int64_t& hi) {
    lo = std::max<int64_t>(0, before - (out - 1) * s);
    hi = std::min<int64_t>(k - 1, size - 1 + before);
    if (lo > hi) {  // no output reaches the input: keep the kernel (outputs are the bias)
      lo = 0;
      hi = k - 1;
    }
  };
  TapCrop c;
  range(g.H, g.kh, g.sh, g.pt, g.Ho, c.u0, c.u1);
  range(g.W, g.kw, g.sw, g.pl, g.Wo, c.v0, c.v1);
  return c;
}

// g for the cropped kernel: same input and output, smaller taps and padding
// (g itself where nothing is cropped; crop_weight then returns a view of the
// whole kernel).
TapConvGeometry cropped_geometry(TapConvGeometry g, const TapCrop& c) {
  g.kh = c.u1 - c.u0 + 1;
  g.kw = c.v1 - c.v0 + 1;
  g.pt -= c.u0;
  g.pl -= c.v0;
  return g;
}

at::Tensor crop_weight(const at::Tensor& weight, const TapCrop& c) {
  return weight.slice(1, c.u0, c.u1 + 1).slice(2, c.v0, c.v1 + 1);
}

at::Tensor opmath_weights(const at::Tensor& weight) {
  const auto acc = weight.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return weight.reshape({weight.size(0), -1}).to(acc).contiguous();
}

}  // namespace

at::Tensor depthwise_conv2d_impl(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, const TapConvBackend& be) {
  check_floating(input, "input");
  const TapConvGeometry g = depthwise_geometry(input.sizes(), weight.dim() == 3 ? weight.size(1) : 0,
                                               weight.dim() == 3 ? weight.size(2) : 0, stride, padding);
  check_depthwise_weight(weight, g.C, input, "input");
  if (bias.has_value()) {
    check_same_dtype(input, "input", *bias, "bias");
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == g.C, "bias must have shape (", g.C, ",), got ",
                      bias->sizes());
  }
  const TapCrop crop = reachable_taps(g);
  const TapConvGeometry gc = cropped_geometry(g, crop);
  if (be.forward_channels_last && strictly_channels_last(input))
    return be.forward_channels_last(input, opmath_weights(crop_weight(weight, crop)), bias, gc);
  return be.forward(input, dense_offsets(gc.kh, gc.kw), opmath_weights(crop_weight(weight, crop)), bias, gc);
}

at::Tensor depthwise_conv2d_backward_input_impl(const at::Tensor& grad_output, const at::Tensor& weight,
                                                at::IntArrayRef input_size, at::IntArrayRef stride,
                                                at::IntArrayRef padding, const TapConvBackend& be) {
  check_floating(grad_output, "grad_output");
  const TapConvGeometry g = depthwise_geometry(input_size, weight.dim() == 3 ? weight.size(1) : 0,
                                               weight.dim() == 3 ? weight.size(2) : 0, stride, padding);
  check_depthwise_weight(weight, g.C, grad_output, "grad_output");
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef({g.N, g.C, g.Ho, g.Wo}), "grad_output must have shape ",
                    at::IntArrayRef({g.N, g.C, g.Ho, g.Wo}), ", got ", grad_output.sizes());
  const TapCrop crop = reachable_taps(g);
  const TapConvGeometry gc = cropped_geometry(g, crop);
  const at::Tensor w = opmath_weights(crop_weight(weight, crop));
  if (be.forward_channels_last && strictly_channels_last(grad_output)) {
    // channels_last in, channels_last out, as the forward: the flipped kernel's conv where the
    // adjoint is one (stride 1), else the NCHW adjoint laid out channels_last.
    if (adjoint_is_flipped_conv(gc))
      return be.forward_channels_last(grad_output, w.flip(1), std::nullopt, flipped_geometry(gc));
    return be.backward_input(grad_output, dense_offsets(gc.kh, gc.kw), w, gc)
        .contiguous(at::MemoryFormat::ChannelsLast);
  }
  return be.backward_input(grad_output, dense_offsets(gc.kh, gc.kw), w, gc);
}

std::tuple<at::Tensor, at::Tensor> depthwise_conv2d_backward_weight_impl(const at::Tensor& grad_output,
                                                                         const at::Tensor& input,
                                                                         at::IntArrayRef kernel_size,
                                                                         at::IntArrayRef stride,
                                                                         at::IntArrayRef padding, bool bias_grad,
                                                                         const TapConvBackend& be) {
  check_floating(grad_output, "grad_output");
  check_floating(input, "input");
  check_same_dtype(grad_output, "grad_output", input, "input");
  TORCH_CHECK_VALUE(kernel_size.size() == 2, "kernel_size must be two ints, got ", kernel_size);
  const TapConvGeometry g = depthwise_geometry(input.sizes(), kernel_size[0], kernel_size[1], stride, padding);
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef({g.N, g.C, g.Ho, g.Wo}), "grad_output must have shape ",
                    at::IntArrayRef({g.N, g.C, g.Ho, g.Wo}), ", got ", grad_output.sizes());
  const TapCrop crop = reachable_taps(g);
  const TapConvGeometry gc = cropped_geometry(g, crop);
  auto [corr, gbias] = be.correlation_channels_last && strictly_channels_last(input)
                           ? be.correlation_channels_last(grad_output, input, gc, bias_grad)
                           : be.correlation(grad_output, input, dense_offsets(gc.kh, gc.kw), gc, bias_grad);
  at::Tensor gw = corr.view({g.C, gc.kh, gc.kw}).to(input.scalar_type());
  if (crop.crops(g)) gw = at::constant_pad_nd(gw, {crop.v0, g.kw - 1 - crop.v1, crop.u0, g.kh - 1 - crop.u1});
  // Without bias_grad the second result is empty (shape (0,)): no bias sum is run.
  return {gw, bias_grad ? gbias.to(input.scalar_type()) : at::empty({0}, input.options())};
}

TORCH_LIBRARY_FRAGMENT(learnable_ops, m) {
  m.def("depthwise_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[4] padding) -> Tensor");
  m.def(
      "depthwise_conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, int[2] stride, "
      "int[4] padding) -> Tensor");
  m.def(
      "depthwise_conv2d_backward_weight(Tensor grad_output, Tensor input, int[2] kernel_size, int[2] stride, "
      "int[4] padding, bool bias_grad=True) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) { TapConvOps<kCpuTapConv>::register_depthwise(m); }

}  // namespace learnable_ops
