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

// Sum of term(w) over [lo, hi) in a fixed lane order (so the compiler can
// vectorise it without reassociating, and the result is reproducible).
template <typename acc_t, typename Term>
inline acc_t lane_sum(int64_t lo, int64_t hi, Term term) {
  constexpr int kLanes = 8;
  acc_t lanes[kLanes] = {};
  int64_t w = lo;
  for (; w + kLanes <= hi; w += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += term(w + k);
  acc_t total = 0;
  for (; w < hi; ++w) total += term(w);
  for (int k = 0; k < kLanes; ++k) total += lanes[k];
  return total;
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
void gather_row(out_t* out, const src_t* src, int64_t n, int64_t f, const int64_t* map, out_t zero) {
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
void lerp_row(out_t* out, const src_t* src, int64_t n, int64_t f, acc_t t, const int64_t* map) {
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
void adjoint_row(acc_t* acc, const src_t* src, int64_t n, int64_t f, acc_t t, const int64_t* map) {
  std::fill(acc, acc + n, acc_t(0));
  const bool two = t != acc_t(0);
  const acc_t u = acc_t(1) - t;
  const Span in = interior(f, n, two);
  acc_t* a0 = acc - f;
  if (two) {
    for (int64_t w = in.lo; w < in.hi; ++w) a0[w] += u * static_cast<acc_t>(src[w]);
    acc_t* a1 = a0 - 1;
    for (int64_t w = in.lo; w < in.hi; ++w) a1[w] += t * static_cast<acc_t>(src[w]);
  } else {
    for (int64_t w = in.lo; w < in.hi; ++w) a0[w] += static_cast<acc_t>(src[w]);
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

// sum_w g[w] * (v[tap 1 of w] - v[tap 0 of w]): the derivative along s.
template <typename acc_t, typename g_t, typename v_t>
acc_t dot_diff(const g_t* g, const v_t* v, int64_t n, int64_t f, const int64_t* map) {
  const Span in = interior(f, n, true);
  auto edge = [&](int64_t w) {
    const int64_t j0 = map[w + 1], j1 = map[w];
    acc_t d = 0;
    if (j1 >= 0) d += static_cast<acc_t>(v[j1]);
    if (j0 >= 0) d -= static_cast<acc_t>(v[j0]);
    return static_cast<acc_t>(g[w]) * d;
  };
  const v_t* s = v - f;
  acc_t total = lane_sum<acc_t>(in.lo, in.hi, [&](int64_t w) {
    return static_cast<acc_t>(g[w]) * (static_cast<acc_t>(s[w - 1]) - static_cast<acc_t>(s[w]));
  });
  for (int64_t w = 0; w < in.lo; ++w) total += edge(w);
  for (int64_t w = in.hi; w < n; ++w) total += edge(w);
  return total;
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
// input (zeros padding) is skipped, or reads `zero_row` when one is given.
template <typename scalar_t, typename acc_t>
int row_corners(Corner<scalar_t, acc_t>* corners, const scalar_t* plane_base, const ShiftGeometry& g,
                const ChannelTaps& ct, const AxisMaps* maps, int64_t c, int64_t d, int64_t h,
                bool both_taps, const scalar_t* zero_row = nullptr) {
  const int64_t H = g.size[1], W = g.size[2];
  const int first = g.first_axis();
  int count = 0;
  const acc_t td = static_cast<acc_t>(ct.axis[0].t), th = static_cast<acc_t>(ct.axis[1].t);
  const int kd_end = (first == 0 && (both_taps || td != acc_t(0))) ? 2 : 1;
  const int kh_end = (first <= 1 && (both_taps || th != acc_t(0))) ? 2 : 1;
  for (int kd = 0; kd < kd_end; ++kd) {
    const int64_t id = maps[0].of(c)[d + 1 - kd];
    if (id < 0 && !zero_row) continue;
    const acc_t wd = kd ? td : acc_t(1) - td, dd = kd ? acc_t(1) : acc_t(-1);
    for (int kh = 0; kh < kh_end; ++kh) {
      const int64_t ih = maps[1].of(c)[h + 1 - kh];
      if (ih < 0 && !zero_row) continue;
      const acc_t wh = kh ? th : acc_t(1) - th, dh = kh ? acc_t(1) : acc_t(-1);
      const scalar_t* row = (id < 0 || ih < 0) ? zero_row : plane_base + (id * H + ih) * W;
      corners[count++] = {row, wd * wh, {dd * wh, wd * dh}};
    }
  }
  return count;
}

// out[j] = sum_k coefficient(corner k) * corner_k.row[j].
template <typename scalar_t, typename acc_t, typename Coef>
void combine_rows(acc_t* out, const Corner<scalar_t, acc_t>* corners, int count, int64_t n,
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
    for (int64_t r = begin; r < end; ++r) {
      const int64_t h = r % H, d = (r / H) % D, plane = r / (H * D), c = plane % g.channels;
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
    for (int64_t r = begin; r < end; ++r) {
      const int64_t h = r % H, d = (r / H) % D, plane = r / (H * D), c = plane % g.channels;
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
template <typename scalar_t>
void input_backward(const scalar_t* go, scalar_t* gx, const ShiftGeometry& g,
                    const std::vector<ChannelTaps>& taps, const AxisMaps& map_w,
                    const AxisPreimages* pre) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = g.size[0], H = g.size[1], W = g.size[2];
  const int64_t rows = g.batch * g.channels * D * H;
  at::parallel_for(0, rows, row_grain(W), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gathered(W), acc(W);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t h = r % H, d = (r / H) % D, plane = r / (H * D), c = plane % g.channels;
      scalar_t* out = gx + r * W;
      const ChannelTaps& ct = taps[c];
      if (!ct.finite) {
        fill_nan(out, W);
        continue;
      }
      const acc_t td = static_cast<acc_t>(ct.axis[0].t), th = static_cast<acc_t>(ct.axis[1].t);
      const scalar_t* plane_base = go + plane * D * H * W;
      const scalar_t* single = nullptr;
      acc_t single_weight = 0;
      int64_t count = 0;
      auto add = [&](const scalar_t* row, acc_t weight) {
        if (count == 0) {
          single = row;
          single_weight = weight;
        } else {
          if (count == 1)
            for (int64_t j = 0; j < W; ++j) gathered[j] = single_weight * static_cast<acc_t>(single[j]);
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
        continue;
      }
      if (count == 1 && single_weight == acc_t(1)) {
        adjoint_row(acc.data(), single, W, f, t, map_w.of(c));
      } else {
        if (count == 1)
          for (int64_t j = 0; j < W; ++j) gathered[j] = single_weight * static_cast<acc_t>(single[j]);
        adjoint_row(acc.data(), gathered.data(), W, f, t, map_w.of(c));
      }
      for (int64_t j = 0; j < W; ++j) out[j] = static_cast<scalar_t>(acc[j]);
    }
  });
}

// Shift-gradient sums of one output row over kCorners D/H corner rows (2 in
// 2D, 4 in 3D; zeros-padded corners read a zero row), in one pass:
//   sums[2] += sum_w g[w] sum_k weight_k (r_k[tap 1] - r_k[tap 0])          (W)
//   sums[a] += sum_w g[w] sum_k d_weight_k[a] ((1-t) r_k[tap 0] + t r_k[tap 1])  (D, H)
template <int kCorners, typename acc_t, typename scalar_t>
void row_shift_grads(const scalar_t* grow, const Corner<scalar_t, acc_t>* corners, int64_t n,
                     int64_t f, acc_t t, const int64_t* map, double* sums) {
  constexpr int kLanes = 8;
  constexpr int kSums = kCorners == 4 ? 3 : 2;  // W, H (, D)
  const acc_t u = acc_t(1) - t;
  acc_t cw[kCorners], ch[kCorners], cd[kCorners];
  for (int k = 0; k < kCorners; ++k) {
    cw[k] = corners[k].weight;
    ch[k] = corners[k].d_weight[1];
    cd[k] = corners[k].d_weight[0];
  }
  // Position w's terms, given the tap values of every corner.
  auto terms = [&](acc_t gw, const acc_t* v0, const acc_t* v1, acc_t* out) {
    acc_t dw = 0, dh = 0, dd = 0;
    for (int k = 0; k < kCorners; ++k) {
      const acc_t lerp = u * v0[k] + t * v1[k];
      dw += cw[k] * (v1[k] - v0[k]);
      dh += ch[k] * lerp;
      if constexpr (kSums == 3) dd += cd[k] * lerp;
    }
    out[0] = gw * dw;
    out[1] = gw * dh;
    if constexpr (kSums == 3) out[2] = gw * dd;
  };
  const Span in = interior(f, n, true);
  // Lane-major accumulators: lane l of every sum is updated by position w + l,
  // so the compiler vectorises across lanes, in a fixed order.
  acc_t lanes[kSums][kLanes] = {};
  int64_t w = in.lo;
  for (; w + kLanes <= in.hi; w += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      acc_t v0[kCorners], v1[kCorners], out[kSums];
      for (int k = 0; k < kCorners; ++k) {
        v0[k] = static_cast<acc_t>(corners[k].row[w + l - f]);
        v1[k] = static_cast<acc_t>(corners[k].row[w + l - f - 1]);
      }
      terms(static_cast<acc_t>(grow[w + l]), v0, v1, out);
      for (int a = 0; a < kSums; ++a) lanes[a][l] += out[a];
    }
  }
  acc_t total[kSums] = {};
  auto scalar = [&](int64_t p, bool interior_position) {
    acc_t v0[kCorners], v1[kCorners], out[kSums];
    const int64_t j0 = interior_position ? p - f : map[p + 1];
    const int64_t j1 = interior_position ? p - f - 1 : map[p];
    for (int k = 0; k < kCorners; ++k) {
      v0[k] = j0 < 0 ? acc_t(0) : static_cast<acc_t>(corners[k].row[j0]);
      v1[k] = j1 < 0 ? acc_t(0) : static_cast<acc_t>(corners[k].row[j1]);
    }
    terms(static_cast<acc_t>(grow[p]), v0, v1, out);
    for (int a = 0; a < kSums; ++a) total[a] += out[a];
  };
  for (; w < in.hi; ++w) scalar(w, true);
  for (int64_t p = 0; p < in.lo; ++p) scalar(p, false);
  for (int64_t p = in.hi; p < n; ++p) scalar(p, false);
  for (int a = 0; a < kSums; ++a)
    for (int l = 0; l < kLanes; ++l) total[a] += lanes[a][l];
  sums[2] += total[0];
  sums[1] += total[1];
  if constexpr (kSums == 3) sums[0] += total[2];
}

// ---------------------------------------------------------------------------
// Shift gradient: sum over batch and space of grad_output times the
// derivative of the multilinear interpolation at the real-valued shift
// (floor taps, both taps on every axis). The plane is cut into fixed chunks
// of rows (a function of the shape only); each chunk's sums go to its own
// slot and the slots are added in a fixed order afterwards, so the result is
// deterministic and independent of the number of threads.
// ---------------------------------------------------------------------------
template <typename scalar_t>
void shifts_backward(const scalar_t* go, const scalar_t* x, double* out, const ShiftGeometry& g,
                     const std::vector<ChannelTaps>& taps, const AxisMaps* maps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t D = g.size[0], H = g.size[1], W = g.size[2];
  const int64_t rows_per_plane = D * H;
  const int64_t chunk = row_grain(W);
  const int64_t chunks = (rows_per_plane + chunk - 1) / chunk;
  const int64_t planes = g.batch * g.channels;
  const int first = g.first_axis();
  std::vector<double> partial(planes * chunks * 3, 0.0);
  at::parallel_for(0, planes * chunks, 1, [&](int64_t begin, int64_t end) {
    const std::vector<scalar_t> zero_row(W, scalar_t(0));
    Corner<scalar_t, acc_t> corners[4];
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t plane = unit / chunks, c = plane % g.channels;
      const ChannelTaps& ct = taps[c];
      double* sums = partial.data() + unit * 3;
      if (!ct.finite) {
        std::fill(sums, sums + 3, std::numeric_limits<double>::quiet_NaN());
        continue;
      }
      const int64_t f = ct.axis[2].f;
      const acc_t t = static_cast<acc_t>(ct.axis[2].t);
      const int64_t* map_w = maps[2].of(c);
      const int64_t row_end = std::min(rows_per_plane, (unit % chunks + 1) * chunk);
      for (int64_t pr = (unit % chunks) * chunk; pr < row_end; ++pr) {
        const int64_t h = pr % H, d = pr / H;
        const scalar_t* grow = go + (plane * rows_per_plane + pr) * W;
        if (first == 2) {  // 1D: the single row is the input row itself
          sums[2] += dot_diff<acc_t>(grow, x + plane * W, W, f, map_w);
          continue;
        }
        row_corners(corners, x + plane * D * H * W, g, ct, maps, c, d, h, /*both_taps=*/true,
                    zero_row.data());
        if (first == 1)
          row_shift_grads<2>(grow, corners, W, f, t, map_w, sums);
        else
          row_shift_grads<4>(grow, corners, W, f, t, map_w, sums);
      }
    }
  });
  // out[c * 3 + a] = sum over n, then chunks, in a fixed order.
  std::fill(out, out + g.channels * 3, 0.0);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t k = 0; k < chunks; ++k)
        for (int a = 0; a < 3; ++a)
          out[c * 3 + a] += partial[((n * g.channels + c) * chunks + k) * 3 + a];
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
  check_floating(grad_output, "grad_output");
  check_floating(input, "input");
  check_same_dtype(grad_output, "grad_output", input, "input");
  TORCH_CHECK_VALUE(grad_output.sizes() == input.sizes(), "grad_output must have the shape of input ",
                    input.sizes(), ", got ", grad_output.sizes());
  const ShiftGeometry g =
      make_shift_geometry(input, "input", shifts, std::string(padding_mode), /*active=*/true);
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
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) {
  m.impl("shift", &shift_cpu);
  m.impl("shift_input_backward", &shift_input_backward_cpu);
  m.impl("shift_shifts_backward", &shift_shifts_backward_cpu);
}

TORCH_LIBRARY_IMPL(learnable_ops, QuantizedCPU, m) { m.impl("shift", &shift_quantized_cpu); }

}  // namespace learnable_ops
