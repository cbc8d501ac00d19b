// The dense depthwise convolution on channels_last input, CPU.
//
// In NHWC the channels of a pixel are contiguous, so the kernel vectorises over
// channels: every tap (u, v) of an output pixel is one vector FMA per block of
// channels, out[c] += w[u, v, c] * x[iy, ix, c], with the taps' weights
// transposed to (kh, kw, C). A task is one output row (n, oy); within it, a
// block of 2 vectors of channels (16 floats) and 4 output columns keeps 8
// accumulators in registers across all taps and loads each weight vector once
// for the 4 columns. Each output visits only the taps that read inside the
// image (the row range of its output row, the column range of its column), so
// there is no padded copy of the input and no product with the zero padding:
// a 17x17 kernel on a 7x7 plane costs 49 taps per output, where the NCHW
// kernel (cpp/depthwise.cpp) runs its 13x13 reachable taps over a padded plane.
// Columns whose taps all lie inside the image take the 4-column blocks; the
// others (at most about kw / stride at each end of a row) one column at a time
// with their own tap range.
//
// Each output is summed by one thread in a fixed order (u, then v), so results
// do not depend on the number of threads. float16 and bfloat16 are computed in
// float32 on a converted copy of the input (as the NCHW kernel converts each
// plane). The output is channels_last, as F.conv2d gives for channels_last
// input.
#include <algorithm>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/cpu_vec.h"
#include "learnable_ops/tap_conv.h"

namespace learnable_ops {
namespace {

template <typename acc_t>
struct NhwcConv {
  const acc_t* x;     // (N, H, W, C)
  const acc_t* w;     // (kh, kw, C)
  const acc_t* bias;  // (C) or nullptr
  acc_t* y;           // (N, Ho, Wo, C)
  int64_t C, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl;
};

// J output columns from ox on (all with the tap columns [v_lo, v_hi)), the
// channels [c0, c0 + NB vectors), tap rows [u_lo, u_hi) of input rows iy0 + u.
template <typename acc_t, int Bytes, int NB, int J>
LO_ALWAYS_INLINE void nhwc_block(const NhwcConv<acc_t>& a, const acc_t* xn, acc_t* yrow, int64_t iy0, int64_t u_lo,
                                 int64_t u_hi, int64_t ox, int64_t v_lo, int64_t v_hi, int64_t c0) {
  using V = typename Vec<acc_t, Bytes>::type;
  using U = typename Vec<acc_t, Bytes>::unaligned;
  constexpr int64_t L = kLanes<acc_t, Bytes>;
  const int64_t C = a.C, column_step = a.sw * C;
  V acc[J][NB];
  for (int b = 0; b < NB; ++b) {
    const V b0 = a.bias ? *reinterpret_cast<const U*>(a.bias + c0 + b * L) : V{};
    for (int j = 0; j < J; ++j) acc[j][b] = b0;
  }
  const int64_t ix = ox * a.sw - a.pl + v_lo;  // input column of tap v_lo for column ox
  for (int64_t u = u_lo; u < u_hi; ++u) {
    const acc_t* xr = xn + ((iy0 + u) * a.W + ix) * C + c0;
    const acc_t* wr = a.w + (u * a.kw + v_lo) * C + c0;
    for (int64_t v = 0; v < v_hi - v_lo; ++v) {
      V wv[NB];
      for (int b = 0; b < NB; ++b) wv[b] = *reinterpret_cast<const U*>(wr + v * C + b * L);
      const acc_t* xv = xr + v * C;
      for (int j = 0; j < J; ++j)
        for (int b = 0; b < NB; ++b) acc[j][b] += wv[b] * *reinterpret_cast<const U*>(xv + j * column_step + b * L);
    }
  }
  for (int j = 0; j < J; ++j)
    for (int b = 0; b < NB; ++b) *reinterpret_cast<U*>(yrow + (ox + j) * C + c0 + b * L) = acc[j][b];
}

// The tap columns [v_lo, v_hi) of output column ox that read inside the image.
template <typename acc_t>
LO_ALWAYS_INLINE void column_taps(const NhwcConv<acc_t>& a, int64_t ox, int64_t& v_lo, int64_t& v_hi) {
  const int64_t ix0 = ox * a.sw - a.pl;
  v_lo = std::max<int64_t>(0, -ix0);
  v_hi = std::max<int64_t>(v_lo, std::min<int64_t>(a.kw, a.W - ix0));
}

// J output columns from ox on, every channel: blocks of 2 vectors, then of 1,
// then the channels past the last whole vector one at a time (same tap order).
// All channels of a few pixels before the next columns, so that the input
// pixels they read stay in L1 and the output is written contiguously.
template <typename acc_t, int J>
LO_ALWAYS_INLINE void nhwc_columns(const NhwcConv<acc_t>& a, const acc_t* xn, acc_t* yrow, int64_t iy0, int64_t u_lo,
                                   int64_t u_hi, int64_t ox, int64_t v_lo, int64_t v_hi) {
  constexpr int64_t L = kLanes<acc_t, 64>, L2 = kLanes<acc_t, 32>;
  const int64_t C = a.C;
  int64_t c0 = 0;
  // A single column runs 4 channel blocks at a time: 4 independent FMA chains, as 4 columns do.
  if constexpr (J == 1)
    for (; c0 + 4 * L <= C; c0 += 4 * L) nhwc_block<acc_t, 64, 4, 1>(a, xn, yrow, iy0, u_lo, u_hi, ox, v_lo, v_hi, c0);
  for (; c0 + L <= C; c0 += L) nhwc_block<acc_t, 64, 1, J>(a, xn, yrow, iy0, u_lo, u_hi, ox, v_lo, v_hi, c0);
  for (; c0 + L2 <= C; c0 += L2) nhwc_block<acc_t, 32, 1, J>(a, xn, yrow, iy0, u_lo, u_hi, ox, v_lo, v_hi, c0);
  for (int j = 0; j < J && c0 < C; ++j) {
    const int64_t ix = (ox + j) * a.sw - a.pl;
    for (int64_t c = c0; c < C; ++c) {
      acc_t s = a.bias ? a.bias[c] : acc_t(0);
      for (int64_t u = u_lo; u < u_hi; ++u)
        for (int64_t v = v_lo; v < v_hi; ++v) s += a.w[(u * a.kw + v) * C + c] * xn[((iy0 + u) * a.W + ix + v) * C + c];
      yrow[(ox + j) * C + c] = s;
    }
  }
}

// Output rows [begin, end) of the flattened (n, oy): the interior columns
// [in_lo, in_hi) (every tap column inside the image) 4 at a time, the others
// one by one with their own tap columns.
template <typename acc_t>
LO_ALWAYS_INLINE void nhwc_rows(const NhwcConv<acc_t>& a, int64_t begin, int64_t end) {
  // Interior columns: ox * sw - pl >= 0 and ox * sw - pl + kw <= W.
  const int64_t in_lo = std::min<int64_t>(a.Wo, (a.pl + a.sw - 1) / a.sw);
  const int64_t in_hi =
      a.W - a.kw + a.pl >= 0 ? std::max<int64_t>(in_lo, std::min<int64_t>(a.Wo, (a.W - a.kw + a.pl) / a.sw + 1))
                             : in_lo;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / a.Ho, oy = row % a.Ho;
    const acc_t* xn = a.x + n * a.H * a.W * a.C;
    acc_t* yrow = a.y + row * a.Wo * a.C;
    const int64_t iy0 = oy * a.sh - a.pt;
    const int64_t u_lo = std::max<int64_t>(0, -iy0);
    const int64_t u_hi = std::max<int64_t>(u_lo, std::min<int64_t>(a.kh, a.H - iy0));
    int64_t v_lo, v_hi;
    int64_t ox = 0;
    for (; ox < in_lo; ++ox) {
      column_taps(a, ox, v_lo, v_hi);
      nhwc_columns<acc_t, 1>(a, xn, yrow, iy0, u_lo, u_hi, ox, v_lo, v_hi);
    }
    for (; ox + 8 <= in_hi; ox += 8) nhwc_columns<acc_t, 8>(a, xn, yrow, iy0, u_lo, u_hi, ox, 0, a.kw);
    for (; ox + 4 <= in_hi; ox += 4) nhwc_columns<acc_t, 4>(a, xn, yrow, iy0, u_lo, u_hi, ox, 0, a.kw);
    for (; ox < in_hi; ++ox) nhwc_columns<acc_t, 1>(a, xn, yrow, iy0, u_lo, u_hi, ox, 0, a.kw);
    for (; ox < a.Wo; ++ox) {
      column_taps(a, ox, v_lo, v_hi);
      nhwc_columns<acc_t, 1>(a, xn, yrow, iy0, u_lo, u_hi, ox, v_lo, v_hi);
    }
  }
}

LO_CPU_CLONES void nhwc_rows_f32(const NhwcConv<float>& a, int64_t begin, int64_t end) {
  nhwc_rows<float>(a, begin, end);
}
void nhwc_rows_any(const NhwcConv<float>& a, int64_t begin, int64_t end) { nhwc_rows_f32(a, begin, end); }
void nhwc_rows_any(const NhwcConv<double>& a, int64_t begin, int64_t end) { nhwc_rows<double>(a, begin, end); }

// ---------------------------------------------------------------------------
// Weight gradient: corr[c, (u, v)] = sum over n, oy, ox of
// go[n, oy, ox, c] * x[n, oy * sh - pt + u, ox * sw - pl + v, c] (terms inside the
// image), and (when asked) gbias[c] = the sum of go[., c]. A task is one block of 16 channels;
// for each image, KT taps of a kernel row at a time keep KT accumulators (one
// vector each: a lane is a channel, so no horizontal sums) over the image's
// outputs, and the image's partial sums are added to the task's totals in image
// order: a fixed order per channel, whatever the number of threads.

template <typename acc_t>
struct NhwcCorr {
  const acc_t* go;  // (N, Ho, Wo, C)
  const acc_t* x;   // (N, H, W, C)
  acc_t* corr;      // (C, kh * kw)
  acc_t* gbias;     // (C)
  int64_t N, C, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl;
  bool bias;        // whether gbias is summed (it stays zero otherwise)
};

// The taps v0 .. v0 + KT - 1 of kernel row u over image n, channels [c0, c0 + L):
// adds the image's sums to tot[k] (k < KT).
// tot: KT vectors of L lanes, unaligned (a std::vector does not promise 64-byte alignment).
template <typename acc_t, int Bytes, int KT>
LO_ALWAYS_INLINE void corr_taps(const NhwcCorr<acc_t>& a, const acc_t* gn, const acc_t* xn, int64_t c0, int64_t u,
                                int64_t v0, acc_t* tot) {
  using V = typename Vec<acc_t, Bytes>::type;
  using U = typename Vec<acc_t, Bytes>::unaligned;
  const int64_t C = a.C;
  V acc[KT];
  for (int k = 0; k < KT; ++k) acc[k] = V{};
  // Outputs whose KT taps all read inside the row: ox * sw - pl + v0 >= 0 and
  // ox * sw - pl + v0 + KT - 1 <= W - 1.
  const int64_t lo = std::min<int64_t>(a.Wo, std::max<int64_t>(0, (a.pl - v0 + a.sw - 1) / a.sw));
  const int64_t last = a.W - KT - v0 + a.pl;  // the largest ox * sw that fits
  const int64_t hi = last < 0 ? lo : std::max<int64_t>(lo, std::min<int64_t>(a.Wo, last / a.sw + 1));
  for (int64_t oy = 0; oy < a.Ho; ++oy) {
    const int64_t iy = oy * a.sh - a.pt + u;
    if (iy < 0 || iy >= a.H) continue;
    const acc_t* grow = gn + oy * a.Wo * C + c0;
    const acc_t* xrow = xn + iy * a.W * C + c0;
    auto edge = [&](int64_t ox) {
      const V gv = *reinterpret_cast<const U*>(grow + ox * C);
      for (int k = 0; k < KT; ++k) {
        const int64_t ix = ox * a.sw - a.pl + v0 + k;
        if (ix >= 0 && ix < a.W) acc[k] += gv * *reinterpret_cast<const U*>(xrow + ix * C);
      }
    };
    for (int64_t ox = 0; ox < lo; ++ox) edge(ox);
    for (int64_t ox = lo; ox < hi; ++ox) {
      const V gv = *reinterpret_cast<const U*>(grow + ox * C);
      const acc_t* xp = xrow + (ox * a.sw - a.pl + v0) * C;
      for (int k = 0; k < KT; ++k) acc[k] += gv * *reinterpret_cast<const U*>(xp + k * C);
    }
    for (int64_t ox = hi; ox < a.Wo; ++ox) edge(ox);
  }
  constexpr int64_t L = kLanes<acc_t, Bytes>;
  for (int k = 0; k < KT; ++k) *reinterpret_cast<U*>(tot + k * L) += acc[k];
}

// Channels [c0, c0 + one vector of Bytes): every tap and the bias sum, images in order.
template <typename acc_t, int Bytes>
LO_ALWAYS_INLINE void corr_channels(const NhwcCorr<acc_t>& a, int64_t c0, acc_t* tot) {
  using V = typename Vec<acc_t, Bytes>::type;
  using U = typename Vec<acc_t, Bytes>::unaligned;
  constexpr int64_t L = kLanes<acc_t, Bytes>;
  const int64_t T = a.kh * a.kw, C = a.C;
  std::fill(tot, tot + (T + 1) * L, acc_t(0));  // vector T: the bias sum
  for (int64_t n = 0; n < a.N; ++n) {
    const acc_t* gn = a.go + n * a.Ho * a.Wo * C;
    const acc_t* xn = a.x + n * a.H * a.W * C;
    for (int64_t u = 0; u < a.kh; ++u) {
      int64_t v = 0;
      for (; v + 8 <= a.kw; v += 8) corr_taps<acc_t, Bytes, 8>(a, gn, xn, c0, u, v, tot + (u * a.kw + v) * L);
      for (; v + 4 <= a.kw; v += 4) corr_taps<acc_t, Bytes, 4>(a, gn, xn, c0, u, v, tot + (u * a.kw + v) * L);
      for (; v < a.kw; ++v) corr_taps<acc_t, Bytes, 1>(a, gn, xn, c0, u, v, tot + (u * a.kw + v) * L);
    }
    if (!a.bias) continue;
    V bsum = V{};
    for (int64_t p = 0; p < a.Ho * a.Wo; ++p) bsum += *reinterpret_cast<const U*>(gn + p * C + c0);
    *reinterpret_cast<U*>(tot + T * L) += bsum;
  }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t l = 0; l < L; ++l) a.corr[(c0 + l) * T + t] = tot[t * L + l];
  if (a.bias)
    for (int64_t l = 0; l < L; ++l) a.gbias[c0 + l] = tot[T * L + l];
}

// Channel blocks [begin, end) of 64 bytes; the block past the last whole one (if
// any) in 32-byte vectors, then channel by channel.
template <typename acc_t>
LO_ALWAYS_INLINE void corr_blocks(const NhwcCorr<acc_t>& a, int64_t begin, int64_t end) {
  constexpr int64_t L = kLanes<acc_t, 64>, L2 = kLanes<acc_t, 32>;
  const int64_t T = a.kh * a.kw, C = a.C;
  std::vector<acc_t> tot((T + 1) * L);
  for (int64_t b = begin; b < end; ++b) {
    const int64_t c0 = b * L;
    if (c0 + L <= C) {
      corr_channels<acc_t, 64>(a, c0, tot.data());
      continue;
    }
    int64_t c = c0;
    for (; c + L2 <= C; c += L2) corr_channels<acc_t, 32>(a, c, tot.data());
    for (; c < C; ++c) {
      // One channel: the same sums, image by image, taps in order.
      for (int64_t t = 0; t < T; ++t) a.corr[c * T + t] = 0;
      acc_t bsum = 0;
      for (int64_t n = 0; n < a.N; ++n) {
        const acc_t* gn = a.go + n * a.Ho * a.Wo * C;
        const acc_t* xn = a.x + n * a.H * a.W * C;
        for (int64_t t = 0; t < T; ++t) {
          const int64_t u = t / a.kw, v = t % a.kw;
          acc_t s = 0;
          for (int64_t oy = 0; oy < a.Ho; ++oy) {
            const int64_t iy = oy * a.sh - a.pt + u;
            if (iy < 0 || iy >= a.H) continue;
            for (int64_t ox = 0; ox < a.Wo; ++ox) {
              const int64_t ix = ox * a.sw - a.pl + v;
              if (ix >= 0 && ix < a.W) s += gn[(oy * a.Wo + ox) * C + c] * xn[(iy * a.W + ix) * C + c];
            }
          }
          a.corr[c * T + t] += s;
        }
        if (!a.bias) continue;
        acc_t bs = 0;
        for (int64_t p = 0; p < a.Ho * a.Wo; ++p) bs += gn[p * C + c];
        bsum += bs;
      }
      if (a.bias) a.gbias[c] = bsum;
    }
  }
}

LO_CPU_CLONES void corr_blocks_f32(const NhwcCorr<float>& a, int64_t begin, int64_t end) {
  corr_blocks<float>(a, begin, end);
}
void corr_blocks_any(const NhwcCorr<float>& a, int64_t begin, int64_t end) { corr_blocks_f32(a, begin, end); }
void corr_blocks_any(const NhwcCorr<double>& a, int64_t begin, int64_t end) { corr_blocks<double>(a, begin, end); }

}  // namespace

at::Tensor depthwise_forward_nhwc_cpu(const at::Tensor& x, const at::Tensor& weights,
                                      const std::optional<at::Tensor>& bias, const TapConvGeometry& g) {
  TORCH_CHECK(g.dense && weights.dim() == 2 && weights.size(0) == g.C && weights.size(1) == g.kh * g.kw,
              "depthwise_forward_nhwc_cpu: dense weights (C, kh * kw) expected");
  const at::ScalarType acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor xa = x.to(acc).contiguous(at::MemoryFormat::ChannelsLast);
  // (kh * kw, C): the weights of one tap contiguous over channels.
  const at::Tensor wt = weights.to(acc).t().contiguous();
  const at::Tensor ba = bias.has_value() ? bias->to(acc).contiguous() : at::Tensor();
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, xa.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(acc, "depthwise_forward_nhwc_cpu", [&] {
      const NhwcConv<scalar_t> a{xa.const_data_ptr<scalar_t>(),
                                 wt.const_data_ptr<scalar_t>(),
                                 ba.defined() ? ba.const_data_ptr<scalar_t>() : nullptr,
                                 y.mutable_data_ptr<scalar_t>(),
                                 g.C, g.H, g.W, g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl};
      at::parallel_for(0, g.N * g.Ho, 1, [&](int64_t begin, int64_t end) { nhwc_rows_any(a, begin, end); });
    });
  }
  return acc == x.scalar_type() ? y : y.to(x.scalar_type());
}

}  // namespace learnable_ops

namespace learnable_ops {

std::tuple<at::Tensor, at::Tensor> depthwise_correlation_nhwc_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                                  const TapConvGeometry& g, bool bias) {
  TORCH_CHECK(g.dense, "depthwise_correlation_nhwc_cpu: dense taps expected");
  const at::ScalarType acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor go = grad_out.to(acc).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor xa = x.to(acc).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor corr = at::zeros({g.C, g.kh * g.kw}, xa.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor gbias = at::zeros({g.C}, corr.options());
  if (g.N == 0 || g.Ho == 0 || g.Wo == 0 || g.C == 0) return {corr, gbias};
  AT_DISPATCH_FLOATING_TYPES(acc, "depthwise_correlation_nhwc_cpu", [&] {
    const NhwcCorr<scalar_t> a{go.const_data_ptr<scalar_t>(),
                               xa.const_data_ptr<scalar_t>(),
                               corr.mutable_data_ptr<scalar_t>(),
                               gbias.mutable_data_ptr<scalar_t>(),
                               g.N, g.C, g.H, g.W, g.Ho, g.Wo, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, bias};
    const int64_t blocks = (g.C + kLanes<scalar_t, 64> - 1) / kLanes<scalar_t, 64>;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) { corr_blocks_any(a, begin, end); });
  });
  return {corr, gbias};
}

}  // namespace learnable_ops
