// shift: Sparse Shift (rounded integer gather) and Active Shift (multilinear
// interpolation) in 1D/2D/3D: schemas, CPU kernels of the forward, the input
// gradient (exact adjoint) and the shift gradient, and the QuantizedCPU
// sparse shift. Taps and conventions are in learnable_ops/shift_plan.h.
//
// Every kernel works on rows of the last axis (W): the D and H taps select
// whole source rows (combined with their weights into one row when there are
// several), and the W taps are a shifted copy whose interior is a contiguous
// loop the compiler vectorises; only the |f| + 1 edge elements go through the
// padding map.
#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/shift_plan.h"

namespace learnable_ops {
namespace {

// The row loops below are compute-bound once the rows are in the cache, and
// the portable build targets SSE2 only: on x86-64 Linux with GCC each gets an
// AVX2+FMA clone beside the baseline one, chosen once at load time (function
// multiversioning, ifunc). Results can then differ by FMA rounding between
// machines, never between calls or thread counts on one machine.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LO_ROW_LOOP __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LO_ROW_LOOP
#endif

// Per-channel padding-map table of one axis: for channel c and position i,
// tap 1 reads of(c)[i] and tap 0 reads of(c)[i + 1] (-1 = zero).
struct AxisMaps {
  int64_t n = 1;
  std::vector<int64_t> map;
  const int64_t* of(int64_t c) const { return map.data() + c * (n + 1); }
};

std::vector<ChannelTaps> all_channel_taps(const at::Tensor& shifts, const ShiftGeometry& g,
                                          bool rounded) {
  const at::Tensor s = shifts.detach().to(at::kCPU, at::kDouble).contiguous();
  const double* p = s.const_data_ptr<double>();
  std::vector<ChannelTaps> taps(g.channels);
  for (int64_t c = 0; c < g.channels; ++c) taps[c] = channel_taps(p + c * g.ndim, g, rounded);
  return taps;
}

AxisMaps axis_maps(const std::vector<ChannelTaps>& taps, const ShiftGeometry& g, int a) {
  AxisMaps m;
  m.n = g.size[a];
  m.map.resize(taps.size() * (m.n + 1));
  for (size_t c = 0; c < taps.size(); ++c)
    for (int64_t q = 0; q <= m.n; ++q)
      m.map[c * (m.n + 1) + q] = pad_index(q - taps[c].axis[a].f - 1, m.n, g.padding);
  return m;
}

// Per-channel, per-tap preimages of one axis in CSR form: the positions o
// whose tap k reads input index j are idx[ptr[s + j] .. ptr[s + j + 1]),
// s = (c * 2 + k) * (n + 1), in increasing order of o.
struct AxisPreimages {
  int64_t n = 1;
  std::vector<int64_t> ptr, idx;
  const int64_t* begin(int64_t c, int k, int64_t j) const {
    return idx.data() + ptr[(c * 2 + k) * (n + 1) + j];
  }
  const int64_t* end(int64_t c, int k, int64_t j) const {
    return idx.data() + ptr[(c * 2 + k) * (n + 1) + j + 1];
  }
};

AxisPreimages axis_preimages(const std::vector<ChannelTaps>& taps, const ShiftGeometry& g, int a) {
  AxisPreimages p;
  p.n = g.size[a];
  p.ptr.reserve(taps.size() * 2 * (p.n + 1));
  for (size_t c = 0; c < taps.size(); ++c) {
    for (int k = 0; k < 2; ++k) {
      p.ptr.push_back(static_cast<int64_t>(p.idx.size()));
      for (int64_t j = 0; j < p.n; ++j) {
        for_each_preimage(j, p.n, taps[c].axis[a].f + k, p.n, g.padding,
                          [&](int64_t o) { p.idx.push_back(o); });
        p.ptr.push_back(static_cast<int64_t>(p.idx.size()));
      }
    }
  }
  return p;
}

// Positions [lo, hi) of an axis of length n whose taps (tap 0 only, or both)
// read inside [0, n) without the padding map.
struct Span {
  int64_t lo, hi;
};
inline Span interior(int64_t f, int64_t n, bool both_taps) {
  const int64_t lo = std::clamp<int64_t>(f + (both_taps ? 1 : 0), 0, n);
  const int64_t hi = std::clamp<int64_t>(f + n, lo, n);
  return {lo, hi};
}

template <typename T>
inline void fill_nan(T* out, int64_t n) {
  if constexpr (std::numeric_limits<T>::has_quiet_NaN)
    std::fill(out, out + n, std::numeric_limits<T>::quiet_NaN());
  else
    std::fill(out, out + n, T(0));
}

// out[w] = src[tap 0 of w] (one tap), `zero` where the map gives -1.
template <typename out_t, typename src_t>
void gather_row(out_t* __restrict__ out, const src_t* __restrict__ src, int64_t n, int64_t f,
                const int64_t* map, out_t zero) {
  const Span in = interior(f, n, false);
  auto edge = [&](int64_t w) {
    const int64_t j = map[w + 1];
    out[w] = j < 0 ? zero : static_cast<out_t>(src[j]);
  };
  for (int64_t w = 0; w < in.lo; ++w) edge(w);
  if constexpr (std::is_same_v<out_t, src_t>) {
    if (in.hi > in.lo) std::memcpy(out + in.lo, src + in.lo - f, (in.hi - in.lo) * sizeof(out_t));
  } else {
    const src_t* s = src - f;
    for (int64_t w = in.lo; w < in.hi; ++w) out[w] = static_cast<out_t>(s[w]);
  }
  for (int64_t w = in.hi; w < n; ++w) edge(w);
}

// out[w] = (1 - t) src[tap 0] + t src[tap 1].
template <typename acc_t, typename out_t, typename src_t>
LO_ROW_LOOP void lerp_row(out_t* __restrict__ out, const src_t* __restrict__ src, int64_t n, int64_t f, acc_t t,
              const int64_t* map) {
  const acc_t u = acc_t(1) - t;
  const Span in = interior(f, n, true);
  auto edge = [&](int64_t w) {
    const int64_t j0 = map[w + 1], j1 = map[w];
    acc_t v = 0;
    if (j0 >= 0) v += u * static_cast<acc_t>(src[j0]);
    if (j1 >= 0) v += t * static_cast<acc_t>(src[j1]);
    out[w] = static_cast<out_t>(v);
  };
  for (int64_t w = 0; w < in.lo; ++w) edge(w);
  const src_t* s = src - f;
  for (int64_t w = in.lo; w < in.hi; ++w)
    out[w] = static_cast<out_t>(u * static_cast<acc_t>(s[w]) + t * static_cast<acc_t>(s[w - 1]));
  for (int64_t w = in.hi; w < n; ++w) edge(w);
}

// Adjoint of lerp_row (t = 0: of gather_row): acc[j] = sum over the
// positions w whose taps read j of their weight times src[w].
template <typename acc_t, typename src_t>
LO_ROW_LOOP void adjoint_row(acc_t* __restrict__ acc, const src_t* __restrict__ src, int64_t n, int64_t f, acc_t t,
                 const int64_t* map) {
  const bool two = t != acc_t(0);
  const acc_t u = acc_t(1) - t;
  const Span in = interior(f, n, two);
  acc_t* a0 = acc - f;
  if (two) {
    std::fill(acc, acc + n, acc_t(0));
    for (int64_t w = in.lo; w < in.hi; ++w) a0[w] += u * static_cast<acc_t>(src[w]);
    acc_t* a1 = a0 - 1;
    for (int64_t w = in.lo; w < in.hi; ++w) a1[w] += t * static_cast<acc_t>(src[w]);
  } else if (in.hi > in.lo) {
    // One tap: the interior inputs [in.lo - f, in.hi - f) have exactly one preimage each,
    // written rather than added to a zeroed row (the edges below add after it).
    std::fill(acc, acc + (in.lo - f), acc_t(0));
    for (int64_t w = in.lo; w < in.hi; ++w) a0[w] = static_cast<acc_t>(src[w]);
    std::fill(acc + (in.hi - f), acc + n, acc_t(0));
  } else {
    std::fill(acc, acc + n, acc_t(0));
  }
  auto edge = [&](int64_t w) {
    const acc_t v = static_cast<acc_t>(src[w]);
    const int64_t j0 = map[w + 1];
    if (j0 >= 0) acc[j0] += u * v;
    if (two) {
      const int64_t j1 = map[w];
      if (j1 >= 0) acc[j1] += t * v;
    }
  };
  for (int64_t w = 0; w < in.lo; ++w) edge(w);
  for (int64_t w = in.hi; w < n; ++w) edge(w);
}

// Adjoint of the W taps applied to S = sum_k weight_k rows_k (K rows, t != 0),
// in one gather pass over the interior: input j receives (1 - t) S[j + f]
// from the output whose tap 0 reads it and t S[j + f + 1] from the one whose
// tap 1 does; the edge outputs then scatter through the padding map.
template <int K, typename acc_t, typename src_t>
LO_ROW_LOOP void adjoint_corners(acc_t* __restrict__ dst, const src_t* const* rows, const acc_t* weights,
                     int64_t n, int64_t f, acc_t t, const int64_t* map) {
  const acc_t u = acc_t(1) - t;
  auto combined = [&](int64_t w) {
    acc_t v = 0;
    for (int k = 0; k < K; ++k) v += weights[k] * static_cast<acc_t>(rows[k][w]);
    return v;
  };
  std::fill(dst, dst + n, acc_t(0));
  const Span in = interior(f, n, true);
  if (in.hi > in.lo) {
    // Both neighbours of j are interior outputs for j in [in.lo - f, in.hi - f - 1).
    const src_t* r[K];
    for (int k = 0; k < K; ++k) r[k] = rows[k] + f;
    for (int64_t j = in.lo - f; j < in.hi - f - 1; ++j) {
      acc_t s0 = 0, s1 = 0;
      for (int k = 0; k < K; ++k) {
        s0 += weights[k] * static_cast<acc_t>(r[k][j]);
        s1 += weights[k] * static_cast<acc_t>(r[k][j + 1]);
      }
      dst[j] = u * s0 + t * s1;
    }
    dst[in.hi - f - 1] += u * combined(in.hi - 1);
    dst[in.lo - f - 1] += t * combined(in.lo);
  }
  auto edge = [&](int64_t w) {
    const acc_t v = combined(w);
    const int64_t j0 = map[w + 1], j1 = map[w];
    if (j0 >= 0) dst[j0] += u * v;
    if (j1 >= 0) dst[j1] += t * v;
  };
  for (int64_t w = 0; w < in.lo; ++w) edge(w);
  for (int64_t w = in.hi; w < n; ++w) edge(w);
}

// Rows of the last axis per parallel task: enough work to amortise a task.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

// One source row of a D/H corner and its weights.
template <typename scalar_t, typename acc_t>
struct Corner {
  const scalar_t* row;
  acc_t weight;    // product of the D and H tap weights
  acc_t d_weight[2];  // derivative of `weight` along the D (0) and H (1) shift
};

// The (up to 4) D/H corners that output row (d, h) of a plane reads.
// `both_taps` forces tap 1 on every present axis (for derivatives), otherwise
// tap 1 is used only where its weight t is non-zero. A corner outside the
// input (zeros padding) is skipped.
template <typename scalar_t, typename acc_t>
int row_corners(Corner<scalar_t, acc_t>* corners, const scalar_t* plane_base, const ShiftGeometry& g,
                const ChannelTaps& ct, const AxisMaps* maps, int64_t c, int64_t d, int64_t h,
                bool both_taps) {
  const int64_t H = g.size[1], W = g.size[2];
  const int first = g.first_axis();
  int count = 0;
  const acc_t td = static_cast<acc_t>(ct.axis[0].t), th = static_cast<acc_t>(ct.axis[1].t);
  const int kd_end = (first == 0 && (both_taps || td != acc_t(0))) ? 2 : 1;
  const int kh_end = (first <= 1 && (both_taps || th != acc_t(0))) ? 2 : 1;
  for (int kd = 0; kd < kd_end; ++kd) {
    const int64_t id = maps[0].of(c)[d + 1 - kd];
    if (id < 0) continue;
    const acc_t wd = kd ? td : acc_t(1) - td, dd = kd ? acc_t(1) : acc_t(-1);
    for (int kh = 0; kh < kh_end; ++kh) {
      const int64_t ih = maps[1].of(c)[h + 1 - kh];
      if (ih < 0) continue;
      const acc_t wh = kh ? th : acc_t(1) - th, dh = kh ? acc_t(1) : acc_t(-1);
      corners[count++] = {plane_base + (id * H + ih) * W, wd * wh, {dd * wh, wd * dh}};
    }
  }
  return count;
}

// The shift-gradient products of grad_output row g with the K corner rows
// of its taps, in one pass over the row (kAxes: the D/H axes present, 0 to 2):
//   dw[p] += g[p] sum_k weight_k (r_k[tap 1] - r_k[tap 0])          (along W)
//   da[a][p] += g[p] sum_k d_weight_k[a] ((1 - t) r_k[tap 0] + t r_k[tap 1])
// (along D, H: the derivative of the corner weight times the W interpolation).
// The difference is taken per corner, for accuracy. Element-wise, so the
// interior loop vectorises; the caller sums the positions at the end of its
// chunk, in a fixed order.
template <int K, int kAxes, typename acc_t, typename scalar_t>
LO_ROW_LOOP void accumulate_derivatives(acc_t* __restrict__ dw, acc_t* __restrict__ dh, acc_t* __restrict__ dd,
                            const scalar_t* __restrict__ g, const Corner<scalar_t, acc_t>* corners,
                            int64_t n, int64_t f, acc_t t, const int64_t* map) {
  const acc_t u = acc_t(1) - t;
  const scalar_t* rows[K];
  acc_t weight[K], d_weight[2][K];
  for (int k = 0; k < K; ++k) {
    rows[k] = corners[k].row;
    weight[k] = corners[k].weight;
    d_weight[0][k] = corners[k].d_weight[0];
    d_weight[1][k] = corners[k].d_weight[1];
  }
  // Derivative axis 1 is H, axis 0 is D (present in 3D only).
  auto add = [&](int64_t p, const acc_t* v0, const acc_t* v1) {
    const acc_t gp = static_cast<acc_t>(g[p]);
    acc_t sw = 0, sh = 0, sd = 0;
    for (int k = 0; k < K; ++k) {
      sw += weight[k] * (v1[k] - v0[k]);
      const acc_t lerp = u * v0[k] + t * v1[k];
      if constexpr (kAxes >= 1) sh += d_weight[1][k] * lerp;
      if constexpr (kAxes >= 2) sd += d_weight[0][k] * lerp;
    }
    dw[p] += gp * sw;
    if constexpr (kAxes >= 1) dh[p] += gp * sh;
    if constexpr (kAxes >= 2) dd[p] += gp * sd;
  };
  const Span in = interior(f, n, true);
  for (int64_t p = in.lo; p < in.hi; ++p) {
    acc_t v0[K], v1[K];
    for (int k = 0; k < K; ++k) {
      v0[k] = static_cast<acc_t>(rows[k][p - f]);
      v1[k] = static_cast<acc_t>(rows[k][p - f - 1]);
    }
    add(p, v0, v1);
  }
  auto edge = [&](int64_t p) {
    const int64_t j0 = map[p + 1], j1 = map[p];
    acc_t v0[K], v1[K];
    for (int k = 0; k < K; ++k) {
      v0[k] = j0 < 0 ? acc_t(0) : static_cast<acc_t>(rows[k][j0]);
      v1[k] = j1 < 0 ? acc_t(0) : static_cast<acc_t>(rows[k][j1]);
    }
    add(p, v0, v1);
  };
  for (int64_t p = 0; p < in.lo; ++p) edge(p);
  for (int64_t p = in.hi; p < n; ++p) edge(p);
}

// out[j] = sum_k weights[k] * rows[k][j].
template <typename scalar_t, typename acc_t>
LO_ROW_LOOP void combine_rows(acc_t* __restrict__ out, const scalar_t* const* rows, const acc_t* weights,
                  int count, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = weights[0] * static_cast<acc_t>(rows[0][j]);
  for (int k = 1; k < count; ++k)
    for (int64_t j = 0; j < n; ++j) out[j] += weights[k] * static_cast<acc_t>(rows[k][j]);
}

// out[j] = sum_k coefficient(corner k) * corner_k.row[j].
template <typename scalar_t, typename acc_t, typename Coef>
LO_ROW_LOOP void combine_rows(acc_t* __restrict__ out, const Corner<scalar_t, acc_t>* corners, int count, int64_t n,
                  Coef coefficient) {
  const acc_t c0 = coefficient(corners[0]);
  const scalar_t* r0 = corners[0].row;
  for (int64_t j = 0; j < n; ++j) out[j] = c0 * static_cast<acc_t>(r0[j]);
  for (int k = 1; k < count; ++k) {
    const acc_t ck = coefficient(corners[k]);
    const scalar_t* rk = corners[k].row;
    for (int64_t j = 0; j < n; ++j) out[j] += ck * static_cast<acc_t>(rk[j]);
  }
}

// Active forward of one row from K corner rows in one pass:
// out[w] = sum_k weight_k ((1 - t) r_k[tap 0] + t r_k[tap 1]).
template <int K, typename scalar_t, typename acc_t>
LO_ROW_LOOP void lerp_corners(scalar_t* __restrict__ out, const Corner<scalar_t, acc_t>* corners, int64_t n,
                  int64_t f, acc_t t, const int64_t* map) {
  const acc_t u = acc_t(1) - t;
  const scalar_t* rows[K];
  acc_t weight[K];
  for (int k = 0; k < K; ++k) {
    rows[k] = corners[k].row - f;
    weight[k] = corners[k].weight;
  }
  const Span in = interior(f, n, true);
  for (int64_t w = in.lo; w < in.hi; ++w) {
    acc_t v = 0;
    for (int k = 0; k < K; ++k)
      v += weight[k] * (u * static_cast<acc_t>(rows[k][w]) + t * static_cast<acc_t>(rows[k][w - 1]));
    out[w] = static_cast<scalar_t>(v);
  }
  auto edge = [&](int64_t w) {
    const int64_t j0 = map[w + 1], j1 = map[w];
    acc_t v = 0;
    for (int k = 0; k < K; ++k) {
      if (j0 >= 0) v += weight[k] * u * static_cast<acc_t>(corners[k].row[j0]);
      if (j1 >= 0) v += weight[k] * t * static_cast<acc_t>(corners[k].row[j1]);
    }
    out[w] = static_cast<scalar_t>(v);
  };
  for (int64_t w = 0; w < in.lo; ++w) edge(w);
  for (int64_t w = in.hi; w < n; ++w) edge(w);
}

// Row r of the (batch, channels, D, H) rows of a contiguous tensor, as the
// forward and input-gradient row loops walk them: its H and D indices, its
// (batch, channel) plane and its channel.
struct RowPosition {
  int64_t h, d, plane, c;
};

inline RowPosition row_position(const ShiftGeometry& g, int64_t r) {
  const int64_t D = g.size[0], H = g.size[1], plane = r / (H * D);
  return {r % H, (r / H) % D, plane, plane % g.channels};
}

// The positions of rows begin, begin + 1, ... without a division per row (four
// integer divisions cost about as much as copying a 56-element row).
struct RowWalker {
  RowPosition p;
  int64_t D, H, C;
  RowWalker(const ShiftGeometry& g, int64_t begin)
      : p(row_position(g, begin)), D(g.size[0]), H(g.size[1]), C(g.channels) {}
  void next() {
    if (++p.h < H) return;
    p.h = 0;
    if (++p.d < D) return;
    p.d = 0;
    ++p.plane;
    if (++p.c == C) p.c = 0;
  }
};

// ---------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------

// Sparse forward, also the QuantizedCPU kernel (scalar_t = the integer
// representation, `zero` = the zero point).
template <typename scalar_t>
void forward_sparse(const scalar_t* x, scalar_t* y, const ShiftGeometry& g,
                    const std::vector<ChannelTaps>& taps, const AxisMaps* maps, scalar_t zero) {
  const int64_t D = g.size[0], H = g.size[1], W = g.size[2];
  const int64_t rows = g.batch * g.channels * D * H;
  at::parallel_for(0, rows, row_grain(W), [&](int64_t begin, int64_t end) {
    RowWalker walk(g, begin);
    for (int64_t r = begin; r < end; ++r, walk.next()) {
      const auto [h, d, plane, c] = walk.p;
      scalar_t* out = y + r * W;
      const ChannelTaps& ct = taps[c];
      if (!ct.finite) {
        fill_nan(out, W);
        continue;
      }
      const int64_t id = maps[0].of(c)[d + 1], ih = maps[1].of(c)[h + 1];
      if (id < 0 || ih < 0) {
        std::fill(out, out + W, zero);
        continue;
      }
      gather_row(out, x + ((plane * D + id) * H + ih) * W, W, ct.axis[2].f, maps[2].of(c), zero);
    }
  });
}

template <typename scalar_t>
void forward_active(const scalar_t* x, scalar_t* y, const ShiftGeometry& g,
                    const std::vector<ChannelTaps>& taps, const AxisMaps* maps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = g.size[0], H = g.size[1], W = g.size[2];
  const int64_t rows = g.batch * g.channels * D * H;
  at::parallel_for(0, rows, row_grain(W), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> combined(W);
    Corner<scalar_t, acc_t> corners[4];
    RowWalker walk(g, begin);
    for (int64_t r = begin; r < end; ++r, walk.next()) {
      const auto [h, d, plane, c] = walk.p;
      scalar_t* out = y + r * W;
      const ChannelTaps& ct = taps[c];
      if (!ct.finite) {
        fill_nan(out, W);
        continue;
      }
      const int count =
          row_corners(corners, x + plane * D * H * W, g, ct, maps, c, d, h, /*both_taps=*/false);
      const int64_t f = ct.axis[2].f;
      const acc_t t = static_cast<acc_t>(ct.axis[2].t);
      if (count == 0) {
        std::fill(out, out + W, scalar_t(0));
      } else if (count == 1 && corners[0].weight == acc_t(1)) {
        if (t == acc_t(0))
          gather_row(out, corners[0].row, W, f, maps[2].of(c), scalar_t(0));
        else
          lerp_row<acc_t>(out, corners[0].row, W, f, t, maps[2].of(c));
      } else if (t != acc_t(0) && count == 2) {
        lerp_corners<2>(out, corners, W, f, t, maps[2].of(c));
      } else if (t != acc_t(0) && count == 4) {
        lerp_corners<4>(out, corners, W, f, t, maps[2].of(c));
      } else {
        combine_rows(combined.data(), corners, count, W, [](const auto& k) { return k.weight; });
        if (t == acc_t(0))
          gather_row(out, combined.data(), W, f, maps[2].of(c), scalar_t(0));
        else
          lerp_row<acc_t>(out, combined.data(), W, f, t, maps[2].of(c));
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Input gradient: the exact adjoint of the forward. Each input row gathers
// the output rows whose D/H taps read it (per-axis preimages, fixed order),
// then applies the adjoint of the W taps. One writer per input row: no
// atomics, and the result does not depend on the number of threads.
// ---------------------------------------------------------------------------
// Scratch rows of one thread of the input gradient.
template <typename scalar_t>
struct InputBackwardScratch {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> gathered, acc;
  explicit InputBackwardScratch(int64_t W)
      : gathered(W), acc(std::is_same_v<scalar_t, acc_t> ? 0 : W) {}
};

// Input-gradient row r (over batch, channels, D, H) of gx.
template <typename scalar_t>
void input_backward_row(const scalar_t* go, scalar_t* gx, const ShiftGeometry& g,
                        const std::vector<ChannelTaps>& taps, const AxisMaps& map_w,
                        const AxisPreimages* pre, int64_t r, const RowPosition& position,
                        InputBackwardScratch<scalar_t>& scratch) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = g.size[0], H = g.size[1], W = g.size[2];
  std::vector<acc_t>& gathered = scratch.gathered;
  const auto [h, d, plane, c] = position;
  scalar_t* out = gx + r * W;
  const ChannelTaps& ct = taps[c];
  if (!ct.finite) {
    fill_nan(out, W);
    return;
  }
  const acc_t td = static_cast<acc_t>(ct.axis[0].t), th = static_cast<acc_t>(ct.axis[1].t);
  const scalar_t* plane_base = go + plane * D * H * W;
  // The first kMaxRows output rows are kept by reference; more (border,
  // reflect or symmetric padding with large shifts) are summed in `gathered`.
  constexpr int kMaxRows = 4;
  const scalar_t* rows[kMaxRows];
  acc_t weights[kMaxRows];
  int64_t count = 0;
  auto add = [&](const scalar_t* row, acc_t weight) {
    if (count < kMaxRows) {
      rows[count] = row;
      weights[count] = weight;
    } else {
      if (count == kMaxRows)
        combine_rows(gathered.data(), rows, weights, kMaxRows, W);
      for (int64_t j = 0; j < W; ++j) gathered[j] += weight * static_cast<acc_t>(row[j]);
    }
    ++count;
  };
  for (int kd = 0; kd < (td != acc_t(0) ? 2 : 1); ++kd) {
    const acc_t wd = kd ? td : acc_t(1) - td;
    for (const int64_t* od = pre[0].begin(c, kd, d); od != pre[0].end(c, kd, d); ++od) {
      for (int kh = 0; kh < (th != acc_t(0) ? 2 : 1); ++kh) {
        const acc_t wh = kh ? th : acc_t(1) - th;
        for (const int64_t* oh = pre[1].begin(c, kh, h); oh != pre[1].end(c, kh, h); ++oh)
          add(plane_base + (*od * H + *oh) * W, wd * wh);
      }
    }
  }
  const int64_t f = ct.axis[2].f;
  const acc_t t = static_cast<acc_t>(ct.axis[2].t);
  if (count == 0) {
    std::fill(out, out + W, scalar_t(0));
    return;
  }
  // float and double accumulate in the output row itself; half types in acc.
  acc_t* dst;
  if constexpr (std::is_same_v<scalar_t, acc_t>)
    dst = out;
  else
    dst = scratch.acc.data();
  const int64_t* map = map_w.of(c);
  if (count > kMaxRows) {
    adjoint_row(dst, gathered.data(), W, f, t, map);
  } else if (count == 1 && weights[0] == acc_t(1)) {
    adjoint_row(dst, rows[0], W, f, t, map);
  } else if (t != acc_t(0) && count == 2) {
    adjoint_corners<2>(dst, rows, weights, W, f, t, map);
  } else if (t != acc_t(0) && count == 4) {
    adjoint_corners<4>(dst, rows, weights, W, f, t, map);
  } else {
    combine_rows(gathered.data(), rows, weights, static_cast<int>(count), W);
    adjoint_row(dst, gathered.data(), W, f, t, map);
  }
  if constexpr (!std::is_same_v<scalar_t, acc_t>)
    for (int64_t j = 0; j < W; ++j) out[j] = static_cast<scalar_t>(dst[j]);
}

template <typename scalar_t>
void input_backward(const scalar_t* go, scalar_t* gx, const ShiftGeometry& g,
                    const std::vector<ChannelTaps>& taps, const AxisMaps& map_w,
                    const AxisPreimages* pre) {
  const int64_t rows = g.batch * g.channels * g.size[0] * g.size[1];
  at::parallel_for(0, rows, row_grain(g.size[2]), [&](int64_t begin, int64_t end) {
    InputBackwardScratch<scalar_t> scratch(g.size[2]);
    RowWalker walk(g, begin);
    for (int64_t r = begin; r < end; ++r, walk.next())
      input_backward_row(go, gx, g, taps, map_w, pre, r, walk.p, scratch);
  });
}

// ---------------------------------------------------------------------------
// Shift gradient: sum over batch and space of grad_output times the
// derivative of the multilinear interpolation at the real-valued shift
// (floor taps, both taps on every axis). The plane is cut into fixed chunks
// of rows (a function of the shape only); each chunk's sums go to its own
// slot and the slots are added in a fixed order afterwards, so the result is
// deterministic and independent of the number of threads.
// ---------------------------------------------------------------------------
// The fixed chunking of the shift gradient: `chunks` chunks of `chunk` rows
// per plane; partial holds 3 sums per (plane, chunk).
struct ShiftsChunking {
  int64_t rows_per_plane, chunk, chunks;
  explicit ShiftsChunking(const ShiftGeometry& g)
      : rows_per_plane(g.size[0] * g.size[1]),
        chunk(row_grain(g.size[2])),
        chunks((rows_per_plane + chunk - 1) / chunk) {}
};

// Per-position derivative products along D, H and W of one thread.
template <typename scalar_t>
struct ShiftsBackwardScratch {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> products;
  explicit ShiftsBackwardScratch(int64_t W) : products(3 * W) {}
};

// The three sums of chunk `unit` (plane * chunks + chunk), into sums[0..2].
template <typename scalar_t>
void shifts_backward_unit(const scalar_t* go, const scalar_t* x, double* sums, const ShiftGeometry& g,
                          const std::vector<ChannelTaps>& taps, const AxisMaps* maps,
                          const ShiftsChunking& k, int64_t unit, ShiftsBackwardScratch<scalar_t>& scratch) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = g.size[0], H = g.size[1], W = g.size[2];
  const int64_t plane = unit / k.chunks, c = plane % g.channels;
  const ChannelTaps& ct = taps[c];
  if (!ct.finite) {
    std::fill(sums, sums + 3, std::numeric_limits<double>::quiet_NaN());
    return;
  }
  const int64_t f = ct.axis[2].f;
  const acc_t t = static_cast<acc_t>(ct.axis[2].t);
  const int64_t* map_w = maps[2].of(c);
  std::vector<acc_t>& products = scratch.products;
  std::fill(products.begin(), products.end(), acc_t(0));
  acc_t* dd = products.data();
  acc_t* dh = dd + W;
  acc_t* dw = dh + W;
  Corner<scalar_t, acc_t> corners[4];
  const int axes = static_cast<int>(g.ndim) - 1;  // D/H axes present
  const int64_t row_end = std::min(k.rows_per_plane, (unit % k.chunks + 1) * k.chunk);
  const int64_t pr0 = (unit % k.chunks) * k.chunk;
  RowWalker walk(g, plane * k.rows_per_plane + pr0);
  for (int64_t pr = pr0; pr < row_end; ++pr, walk.next()) {
    const int64_t h = walk.p.h, d = walk.p.d;
    const scalar_t* grow = go + (plane * k.rows_per_plane + pr) * W;
    const int count =
        row_corners(corners, x + plane * D * H * W, g, ct, maps, c, d, h, /*both_taps=*/true);
    // count is 2^(axes with both corners inside the input): 0, 1, 2 or 4.
    auto run = [&](auto corner_count, auto axis_count) {
      accumulate_derivatives<decltype(corner_count)::value, decltype(axis_count)::value>(
          dw, dh, dd, grow, corners, W, f, t, map_w);
    };
    using I0 = std::integral_constant<int, 0>;
    using I1 = std::integral_constant<int, 1>;
    using I2 = std::integral_constant<int, 2>;
    using I4 = std::integral_constant<int, 4>;
    if (count == 0) continue;
    if (axes == 0)
      run(I1(), I0());
    else if (axes == 1)
      count == 2 ? run(I2(), I1()) : run(I1(), I1());
    else
      count == 4 ? run(I4(), I2()) : (count == 2 ? run(I2(), I2()) : run(I1(), I2()));
  }
  double total[3] = {0, 0, 0};
  for (int a = 0; a < 3; ++a)
    for (int64_t w = 0; w < W; ++w) total[a] += static_cast<double>(products[a * W + w]);
  const int first = g.first_axis();
  sums[0] = first >= 1 ? 0.0 : total[0];
  sums[1] = first == 2 ? 0.0 : total[1];
  sums[2] = total[2];
}

// out[c * 3 + a] = sum over n, then chunks, of the partial sums, in a fixed order.
void reduce_shift_partials(const std::vector<double>& partial, double* out, const ShiftGeometry& g,
                           int64_t chunks) {
  std::fill(out, out + g.channels * 3, 0.0);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t k = 0; k < chunks; ++k)
        for (int a = 0; a < 3; ++a)
          out[c * 3 + a] += partial[((n * g.channels + c) * chunks + k) * 3 + a];
}

template <typename scalar_t>
void shifts_backward(const scalar_t* go, const scalar_t* x, double* out, const ShiftGeometry& g,
                     const std::vector<ChannelTaps>& taps, const AxisMaps* maps) {
  const ShiftsChunking k(g);
  const int64_t planes = g.batch * g.channels;
  std::vector<double> partial(planes * k.chunks * 3, 0.0);
  at::parallel_for(0, planes * k.chunks, 1, [&](int64_t begin, int64_t end) {
    ShiftsBackwardScratch<scalar_t> scratch(g.size[2]);
    for (int64_t unit = begin; unit < end; ++unit)
      shifts_backward_unit(go, x, partial.data() + unit * 3, g, taps, maps, k, unit, scratch);
  });
  reduce_shift_partials(partial, out, g, k.chunks);
}

// ---------------------------------------------------------------------------
// Active fused backward in adjoint form. Both gradients read the same
// grad_output neighbourhood: for input j, with G = sum_k weight_k g_k the
// grad_output rows whose D/H taps read j's row, P0[j] = G at the output whose
// W tap 0 reads j and P1[j] = G at the one whose tap 1 does (their sums where
// the padding map sends several outputs to j),
//   grad_input[j] = (1 - t) P0[j] + t P1[j]
//   shift gradient along W = sum_j x[j] (P1[j] - P0[j])
// and along H (D) the same interpolation of the rows combined with the
// derivatives of the corner weights, times x[j]. One pass over each input row
// gives both; the shift gradient sums per position, then per chunk of rows,
// in a fixed order (equal to shift_shifts_backward up to float rounding).
// ---------------------------------------------------------------------------

// The interior of adjoint_with_derivatives: inputs j in [j0, j1), both of
// whose W taps read interior outputs. A separate function so that it gets the
// AVX2 clone (the lambdas of the caller would not inline into a clone).
template <int K, int kAxes, typename acc_t, typename row_t, typename scalar_t>
LO_ROW_LOOP void adjoint_interior(acc_t* __restrict__ dst, acc_t* __restrict__ dw, acc_t* __restrict__ dh,
                                  acc_t* __restrict__ dd, const scalar_t* __restrict__ x_row,
                                  const row_t* const* r, const acc_t (*weights)[4], int64_t j0, int64_t j1,
                                  acc_t t) {
  const acc_t u = acc_t(1) - t;
  acc_t wg[K], wh[K], wd[K];
  const row_t* __restrict__ rr[K];
  for (int k = 0; k < K; ++k) {
    wg[k] = weights[0][k];
    wh[k] = weights[1][k];
    wd[k] = weights[2][k];
    rr[k] = r[k];
  }
  for (int64_t j = j0; j < j1; ++j) {
    acc_t g0 = 0, g1 = 0, h0 = 0, h1 = 0, d0 = 0, d1 = 0;
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
      const acc_t v0 = static_cast<acc_t>(rr[k][j]), v1 = static_cast<acc_t>(rr[k][j + 1]);
      g0 += wg[k] * v0;
      g1 += wg[k] * v1;
      if constexpr (kAxes >= 1) {
        h0 += wh[k] * v0;
        h1 += wh[k] * v1;
      }
      if constexpr (kAxes >= 2) {
        d0 += wd[k] * v0;
        d1 += wd[k] * v1;
      }
    }
    const acc_t xv = static_cast<acc_t>(x_row[j]);
    dst[j] = u * g0 + t * g1;
    dw[j] += xv * (g1 - g0);
    if constexpr (kAxes >= 1) dh[j] += xv * (u * h0 + t * h1);
    if constexpr (kAxes >= 2) dd[j] += xv * (u * d0 + t * d1);
  }
}

// Not LO_ROW_LOOP: its AVX2 clone measured twice slower than the baseline
// build here (GCC 12), and so did copying `weights` into local arrays.
// Input row j's gradient into dst (overwritten) and its derivative products
// into dw, dh, dd (accumulated), from K grad_output rows with weights
// weights[0] (interpolation), weights[1] (H derivative), weights[2] (D).
template <int K, int kAxes, typename acc_t, typename row_t, typename scalar_t>
void adjoint_with_derivatives(acc_t* __restrict__ dst, acc_t* __restrict__ dw, acc_t* __restrict__ dh,
                              acc_t* __restrict__ dd, const scalar_t* __restrict__ x_row,
                              const row_t* const* rows, const acc_t (*weights)[4], int64_t n, int64_t f,
                              acc_t t, const int64_t* map) {
  const acc_t u = acc_t(1) - t;
  // Output p's rows combined with the three weight sets.
  auto combined = [&](int64_t p, acc_t* v) {
    v[0] = v[1] = v[2] = 0;
    for (int k = 0; k < K; ++k) {
      const acc_t r = static_cast<acc_t>(rows[k][p]);
      v[0] += weights[0][k] * r;
      if constexpr (kAxes >= 1) v[1] += weights[1][k] * r;
      if constexpr (kAxes >= 2) v[2] += weights[2][k] * r;
    }
  };
  // Output p (combined values v) reaches input j through its W tap `tap`.
  auto scatter = [&](int64_t j, int tap, const acc_t* v) {
    const acc_t xv = static_cast<acc_t>(x_row[j]), c = tap ? t : u;
    dst[j] += c * v[0];
    dw[j] += tap ? xv * v[0] : -(xv * v[0]);
    if constexpr (kAxes >= 1) dh[j] += xv * (c * v[1]);
    if constexpr (kAxes >= 2) dd[j] += xv * (c * v[2]);
  };
  std::fill(dst, dst + n, acc_t(0));
  const Span in = interior(f, n, true);
  if (in.hi > in.lo) {
    // Both outputs j + f and j + f + 1 are interior for j in [in.lo - f, in.hi - f - 1).
    const row_t* r[K];
    for (int k = 0; k < K; ++k) r[k] = rows[k] + f;
    adjoint_interior<K, kAxes>(dst, dw, dh, dd, x_row, r, weights, in.lo - f, in.hi - f - 1, t);
    acc_t v[3];
    combined(in.hi - 1, v);
    scatter(in.hi - f - 1, 0, v);
    combined(in.lo, v);
    scatter(in.lo - f - 1, 1, v);
  }
  auto edge = [&](int64_t p) {
    acc_t v[3];
    combined(p, v);
    const int64_t j0 = map[p + 1], j1 = map[p];
    if (j0 >= 0) scatter(j0, 0, v);
    if (j1 >= 0) scatter(j1, 1, v);
  };
  for (int64_t p = 0; p < in.lo; ++p) edge(p);
  for (int64_t p = in.hi; p < n; ++p) edge(p);
}

template <typename scalar_t>
struct ActiveFusedScratch {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> gathered, dst, products;
  explicit ActiveFusedScratch(int64_t W) : gathered(3 * W), dst(W), products(3 * W) {}
};

// Chunk `unit` (plane * chunks + chunk) of the active fused backward: the
// input gradient of its rows and its three shift-gradient sums.
template <typename scalar_t>
void active_fused_unit(const scalar_t* go, const scalar_t* x, scalar_t* gx, double* sums,
                       const ShiftGeometry& g, const std::vector<ChannelTaps>& taps, const AxisMaps& map_w,
                       const AxisPreimages* pre, const ShiftsChunking& k, int64_t unit,
                       ActiveFusedScratch<scalar_t>& scratch) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = g.size[0], H = g.size[1], W = g.size[2];
  const int64_t plane = unit / k.chunks, c = plane % g.channels;
  const int64_t row_begin = plane * k.rows_per_plane + (unit % k.chunks) * k.chunk;
  const int64_t row_end = std::min((plane + 1) * k.rows_per_plane, row_begin + k.chunk);
  const ChannelTaps& ct = taps[c];
  if (!ct.finite) {
    fill_nan(gx + row_begin * W, (row_end - row_begin) * W);
    std::fill(sums, sums + 3, std::numeric_limits<double>::quiet_NaN());
    return;
  }
  const int first = g.first_axis();
  const int axes = static_cast<int>(g.ndim) - 1;  // D/H axes present
  const acc_t td = static_cast<acc_t>(ct.axis[0].t), th = static_cast<acc_t>(ct.axis[1].t);
  const int64_t f = ct.axis[2].f;
  const acc_t t = static_cast<acc_t>(ct.axis[2].t);
  const int64_t* map = map_w.of(c);
  const scalar_t* plane_base = go + plane * D * H * W;
  std::vector<acc_t>& products = scratch.products;
  std::fill(products.begin(), products.end(), acc_t(0));
  acc_t* dd = products.data();
  acc_t* dh = dd + W;
  acc_t* dw = dh + W;
  RowWalker walk(g, row_begin);
  for (int64_t r = row_begin; r < row_end; ++r, walk.next()) {
    const int64_t h = walk.p.h, d = walk.p.d;
    scalar_t* out = gx + r * W;
    acc_t* dst;
    if constexpr (std::is_same_v<scalar_t, acc_t>)
      dst = out;
    else
      dst = scratch.dst.data();
    // The grad_output rows whose D/H taps (both taps on every present axis:
    // the derivatives need tap 1 even where its weight t is 0) read row (d, h).
    constexpr int kMaxRows = 4;
    const scalar_t* rows[kMaxRows];
    acc_t weights[3][4];
    int count = 0;
    acc_t* gathered = scratch.gathered.data();
    auto add = [&](const scalar_t* row, acc_t wg, acc_t wh, acc_t wd) {
      if (count < kMaxRows) {
        rows[count] = row;
        weights[0][count] = wg;
        weights[1][count] = wh;
        weights[2][count] = wd;
      } else {
        if (count == kMaxRows) {
          std::fill(gathered, gathered + 3 * W, acc_t(0));
          for (int i = 0; i < kMaxRows; ++i)
            for (int a = 0; a < 3; ++a)
              for (int64_t j = 0; j < W; ++j)
                gathered[a * W + j] += weights[a][i] * static_cast<acc_t>(rows[i][j]);
        }
        const acc_t wa[3] = {wg, wh, wd};
        for (int a = 0; a < 3; ++a)
          for (int64_t j = 0; j < W; ++j) gathered[a * W + j] += wa[a] * static_cast<acc_t>(row[j]);
      }
      ++count;
    };
    for (int kd = 0; kd < (first == 0 ? 2 : 1); ++kd) {
      const acc_t wd = kd ? td : acc_t(1) - td, sd = kd ? acc_t(1) : acc_t(-1);
      for (const int64_t* od = pre[0].begin(c, kd, d); od != pre[0].end(c, kd, d); ++od) {
        for (int kh = 0; kh < (first <= 1 ? 2 : 1); ++kh) {
          const acc_t wh = kh ? th : acc_t(1) - th, sh = kh ? acc_t(1) : acc_t(-1);
          for (const int64_t* oh = pre[1].begin(c, kh, h); oh != pre[1].end(c, kh, h); ++oh)
            add(plane_base + (*od * H + *oh) * W, wd * wh, wd * sh, sd * wh);
        }
      }
    }
    auto run = [&](auto corner_count, auto axis_count, const auto* const* source, const acc_t(*w)[4]) {
      adjoint_with_derivatives<decltype(corner_count)::value, decltype(axis_count)::value>(
          dst, dw, dh, dd, x + r * W, source, w, W, f, t, map);
    };
    auto dispatch = [&](auto axis_count) {
      using I1 = std::integral_constant<int, 1>;
      using I2 = std::integral_constant<int, 2>;
      using I3 = std::integral_constant<int, 3>;
      using I4 = std::integral_constant<int, 4>;
      if (count == 1) {
        run(I1(), axis_count, rows, weights);
      } else if (count == 2) {
        run(I2(), axis_count, rows, weights);
      } else if (count == 4) {
        run(I4(), axis_count, rows, weights);
      } else {
        // Three rows, or more than four: the three combinations, summed above.
        if (count == 3) {
          std::fill(gathered, gathered + 3 * W, acc_t(0));
          for (int i = 0; i < 3; ++i)
            for (int a = 0; a < 3; ++a)
              for (int64_t j = 0; j < W; ++j)
                gathered[a * W + j] += weights[a][i] * static_cast<acc_t>(rows[i][j]);
        }
        const acc_t* combined[3] = {gathered, gathered + W, gathered + 2 * W};
        static constexpr acc_t unit_weights[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
        run(I3(), axis_count, combined, unit_weights);
      }
    };
    if (count == 0)
      std::fill(dst, dst + W, acc_t(0));
    else if (axes == 0)
      dispatch(std::integral_constant<int, 0>());
    else if (axes == 1)
      dispatch(std::integral_constant<int, 1>());
    else
      dispatch(std::integral_constant<int, 2>());
    if constexpr (!std::is_same_v<scalar_t, acc_t>)
      for (int64_t j = 0; j < W; ++j) out[j] = static_cast<scalar_t>(dst[j]);
  }
  double total[3] = {0, 0, 0};
  for (int a = 0; a < 3; ++a)
    for (int64_t w = 0; w < W; ++w) total[a] += static_cast<double>(products[a * W + w]);
  sums[0] = first >= 1 ? 0.0 : total[0];
  sums[1] = first == 2 ? 0.0 : total[1];
  sums[2] = total[2];
}

template <typename scalar_t>
void active_fused_backward(const scalar_t* go, const scalar_t* x, scalar_t* gx, double* out,
                           const ShiftGeometry& g, const std::vector<ChannelTaps>& taps,
                           const AxisMaps& map_w, const AxisPreimages* pre) {
  const ShiftsChunking k(g);
  const int64_t units = g.batch * g.channels * k.chunks;
  std::vector<double> partial(units * 3, 0.0);
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    ActiveFusedScratch<scalar_t> scratch(g.size[2]);
    for (int64_t unit = begin; unit < end; ++unit)
      active_fused_unit(go, x, gx, partial.data() + unit * 3, g, taps, map_w, pre, k, unit, scratch);
  });
  reduce_shift_partials(partial, out, g, k.chunks);
}

// ---------------------------------------------------------------------------
// Sparse fused backward: both gradients in one parallel region over (n, c)
// planes; each task runs the input-gradient rows of its planes (rounded
// taps), then their shift-gradient chunks (floor taps): alternating plane by
// plane measured ~10% slower, the two loops competing for the caches. The
// rows and chunks run the code of the separate ops, and the partial sums are
// reduced in the same order, so both results are bit-identical to
// shift_input_backward and shift_shifts_backward, for any number of threads.
// ---------------------------------------------------------------------------
template <typename scalar_t>
void sparse_fused_backward(const scalar_t* go, const scalar_t* x, scalar_t* gx, double* out,
                    const ShiftGeometry& g, const std::vector<ChannelTaps>& gather_taps,
                    const AxisMaps& gather_map_w, const AxisPreimages* pre,
                    const std::vector<ChannelTaps>& floor_taps, const AxisMaps* floor_maps) {
  const ShiftsChunking k(g);
  const int64_t planes = g.batch * g.channels;
  const int64_t rows_per_plane = k.rows_per_plane;
  std::vector<double> partial(planes * k.chunks * 3, 0.0);
  const int64_t grain = std::max<int64_t>(1, row_grain(g.size[2]) / (2 * rows_per_plane));
  at::parallel_for(0, planes, grain, [&](int64_t begin, int64_t end) {
    InputBackwardScratch<scalar_t> input_scratch(g.size[2]);
    ShiftsBackwardScratch<scalar_t> shifts_scratch(g.size[2]);
    RowWalker walk(g, begin * rows_per_plane);
    for (int64_t r = begin * rows_per_plane; r < end * rows_per_plane; ++r, walk.next())
      input_backward_row(go, gx, g, gather_taps, gather_map_w, pre, r, walk.p, input_scratch);
    for (int64_t unit = begin * k.chunks; unit < end * k.chunks; ++unit)
      shifts_backward_unit(go, x, partial.data() + unit * 3, g, floor_taps, floor_maps, k, unit,
                           shifts_scratch);
  });
  reduce_shift_partials(partial, out, g, k.chunks);
}

// ---------------------------------------------------------------------------
// Operator entry points
// ---------------------------------------------------------------------------

at::Tensor shift_cpu(const at::Tensor& input, const at::Tensor& shifts,
                     c10::string_view padding_mode, c10::string_view mode) {
  check_floating(input, "input");
  const bool active = parse_shift_mode(std::string(mode));
  const ShiftGeometry g =
      make_shift_geometry(input, "input", shifts, std::string(padding_mode), active);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(input.sizes(), x.options());
  if (out.numel() == 0) return out;
  const auto taps = all_channel_taps(shifts, g, /*rounded=*/!active);
  const AxisMaps maps[3] = {axis_maps(taps, g, 0), axis_maps(taps, g, 1), axis_maps(taps, g, 2)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_cpu", [&] {
    if (active)
      forward_active(x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), g, taps, maps);
    else
      forward_sparse(x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), g, taps, maps,
                     scalar_t(0));
  });
  return out;
}

at::Tensor shift_input_backward_cpu(const at::Tensor& grad_output, const at::Tensor& shifts,
                                    c10::string_view padding_mode, c10::string_view mode) {
  check_floating(grad_output, "grad_output");
  const bool active = parse_shift_mode(std::string(mode));
  const ShiftGeometry g =
      make_shift_geometry(grad_output, "grad_output", shifts, std::string(padding_mode), active);
  const at::Tensor go = grad_output.contiguous();
  at::Tensor gx = at::empty(grad_output.sizes(), go.options());
  if (gx.numel() == 0) return gx;
  const auto taps = all_channel_taps(shifts, g, /*rounded=*/!active);
  const AxisPreimages pre[2] = {axis_preimages(taps, g, 0), axis_preimages(taps, g, 1)};
  const AxisMaps map_w = axis_maps(taps, g, 2);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "shift_input_backward_cpu", [&] {
    input_backward(go.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), g, taps, map_w, pre);
  });
  return gx;
}

at::Tensor shift_shifts_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& shifts, c10::string_view padding_mode) {
  const ShiftGeometry g = check_shift_backward_args(grad_output, input, shifts,
                                                    std::string(padding_mode), /*active=*/true);
  at::Tensor sums = at::zeros({g.channels, 3}, input.options().dtype(at::kDouble));
  if (input.numel() > 0) {
    const at::Tensor go = grad_output.contiguous(), x = input.contiguous();
    const auto taps = all_channel_taps(shifts, g, /*rounded=*/false);
    const AxisMaps maps[3] = {axis_maps(taps, g, 0), axis_maps(taps, g, 1), axis_maps(taps, g, 2)};
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_shifts_backward_cpu", [&] {
      shifts_backward(go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                      sums.mutable_data_ptr<double>(), g, taps, maps);
    });
  }
  return sums.narrow(1, g.first_axis(), g.ndim).to(shifts.scalar_type()).contiguous();
}

// Both gradients in one op: (shift_input_backward(grad_output, shifts, ...),
// shift_shifts_backward(grad_output, input, shifts, ...)): bit-identical in
// sparse mode, equal up to float rounding in active mode (adjoint form).
std::tuple<at::Tensor, at::Tensor> shift_backward_cpu(const at::Tensor& grad_output,
                                                      const at::Tensor& input, const at::Tensor& shifts,
                                                      c10::string_view padding_mode,
                                                      c10::string_view mode) {
  const bool active = parse_shift_mode(std::string(mode));
  const ShiftGeometry g =
      check_shift_backward_args(grad_output, input, shifts, std::string(padding_mode), active);
  const at::Tensor go = grad_output.contiguous(), x = input.contiguous();
  at::Tensor gx = at::empty(grad_output.sizes(), go.options());
  at::Tensor sums = at::zeros({g.channels, 3}, input.options().dtype(at::kDouble));
  if (x.numel() > 0) {
    // The input gradient uses the forward's taps (rounded in sparse mode),
    // the shift gradient the floor taps of the interpolation: in active mode
    // the same ones, so one pass in adjoint form gives both.
    const auto gather_taps = all_channel_taps(shifts, g, /*rounded=*/!active);
    const AxisPreimages pre[2] = {axis_preimages(gather_taps, g, 0), axis_preimages(gather_taps, g, 1)};
    const AxisMaps gather_map_w = axis_maps(gather_taps, g, 2);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_backward_cpu", [&] {
      const scalar_t* go_data = go.const_data_ptr<scalar_t>();
      const scalar_t* x_data = x.const_data_ptr<scalar_t>();
      scalar_t* gx_data = gx.mutable_data_ptr<scalar_t>();
      double* sums_data = sums.mutable_data_ptr<double>();
      if (active) {
        active_fused_backward(go_data, x_data, gx_data, sums_data, g, gather_taps, gather_map_w, pre);
      } else {
        const auto floor_taps = all_channel_taps(shifts, g, /*rounded=*/false);
        const AxisMaps floor_maps[3] = {axis_maps(floor_taps, g, 0), axis_maps(floor_taps, g, 1),
                                        axis_maps(floor_taps, g, 2)};
        sparse_fused_backward(go_data, x_data, gx_data, sums_data, g, gather_taps, gather_map_w, pre,
                              floor_taps, floor_maps);
      }
    });
  }
  return {gx, sums.narrow(1, g.first_axis(), g.ndim).to(shifts.scalar_type()).contiguous()};
}

// QuantizedCPU sparse shift: a pure integer gather of the representation;
// zeros padding fills the zero point; the output keeps the input's scale and
// zero point; the integer shift is the rounded float shift.
at::Tensor shift_quantized_cpu(const at::Tensor& input, const at::Tensor& shifts,
                               c10::string_view padding_mode, c10::string_view mode) {
  TORCH_CHECK_VALUE(!parse_shift_mode(std::string(mode)),
                    "mode must be 'sparse' for a quantized input; the active shift interpolates "
                    "and has no integer kernel");
  TORCH_CHECK_VALUE(input.qscheme() == at::kPerTensorAffine,
                    "input must be quantized per tensor (affine), got ", toString(input.qscheme()));
  check_device(shifts, "shifts", c10::DeviceType::CPU);
  const ShiftGeometry g =
      make_shift_geometry(input, "input", shifts, std::string(padding_mode), /*active=*/false);
  const auto taps = all_channel_taps(shifts, g, /*rounded=*/true);
  for (const auto& ct : taps)
    TORCH_CHECK_VALUE(ct.finite, "shifts must be finite for a quantized input (NaN has no "
                                 "integer representation)");
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::_empty_affine_quantized(input.sizes(), x.options(), input.q_scale(),
                                               input.q_zero_point());
  if (out.numel() == 0) return out;
  const AxisMaps maps[3] = {axis_maps(taps, g, 0), axis_maps(taps, g, 1), axis_maps(taps, g, 2)};
  AT_DISPATCH_QINT_TYPES(x.scalar_type(), "shift_quantized_cpu", [&] {
    using rep_t = underlying_t;
    forward_sparse(reinterpret_cast<const rep_t*>(x.const_data_ptr<scalar_t>()),
                   reinterpret_cast<rep_t*>(out.mutable_data_ptr<scalar_t>()), g, taps, maps,
                   static_cast<rep_t>(input.q_zero_point()));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(learnable_ops, m) {
  m.def("shift(Tensor input, Tensor shifts, str padding_mode='zeros', str mode='sparse') -> Tensor");
  m.def("shift_input_backward(Tensor grad_output, Tensor shifts, str padding_mode, str mode) -> Tensor");
  m.def("shift_shifts_backward(Tensor grad_output, Tensor input, Tensor shifts, str padding_mode) -> Tensor");
  m.def(
      "shift_backward(Tensor grad_output, Tensor input, Tensor shifts, str padding_mode, str mode) "
      "-> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) {
  m.impl("shift", &shift_cpu);
  m.impl("shift_input_backward", &shift_input_backward_cpu);
  m.impl("shift_shifts_backward", &shift_shifts_backward_cpu);
  m.impl("shift_backward", &shift_backward_cpu);
}

TORCH_LIBRARY_IMPL(learnable_ops, QuantizedCPU, m) { m.impl("shift", &shift_quantized_cpu); }

}  // namespace learnable_ops
