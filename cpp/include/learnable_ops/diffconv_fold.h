// DiffConv2d's fold in place: the adjoint of the polynomial pad, applied to a
// padded gradient (N, C, h + 2 pad_h, w + 2 pad_w), contiguous NCHW or
// channels_last, so that its image part becomes the input gradient. Only the node rows and columns of the
// image change: each gets the gradient of the extrapolated samples it fed.
//
// The pad extends rows first, then columns, so the fold runs columns first (the
// node columns of every padded row, ring rows included), then rows (the node rows
// of the image columns), as two passes. In each, an element reads only ring
// samples (never written in that pass) and itself, so the elements of a pass are
// independent: the CPU loops and the CUDA kernels (cuda/diffconv.cu) run the same
// element functions below. Each element sums its list in the order of the pad
// op's backward (lagrange.h's preimages, increasing output index, the copy
// included), in acc_t.
//
// Why: the band fold it replaces (cpp/diffconv.cpp, fold_rows) copied each edge's
// band out (a transposing copy for the columns), ran the pad op's backward on it
// and copied the result back: on an H100 (session 9, 16x64x128x128 fp32) that was
// 4 pad kernels and 8-9 copies, about 100 us (depthwise K = 3) to 170 us (dense
// K = 7) of a fwd+bwd, where this touches only the ring and the node lines.
#pragma once

#include <cstdint>

#include "learnable_ops/lagrange.h"
#include "learnable_ops/macros.h"

namespace learnable_ops {
namespace diffconv_fold {

// One axis: n image samples padded by `pad` on both sides, extrapolated with
// `order` on nodes `step` apart.
struct Axis {
  int64_t n, pad, order, step;
};

// The image indices that receive ring gradient: the nodes of the front edge,
// [0, (order + 1) * step), and of the back edge, the same count from the end;
// the whole axis when the two overlap. count() of them, the k-th by node().
LO_HD int64_t node_count(const Axis& a) {
  if (a.pad == 0) return 0;
  const int64_t nodes = (a.order + 1) * a.step;
  return 2 * nodes <= a.n ? 2 * nodes : a.n;
}

LO_HD int64_t node(const Axis& a, int64_t k) {
  const int64_t nodes = (a.order + 1) * a.step;
  return 2 * nodes <= a.n && k >= nodes ? a.n - 2 * nodes + k : k;
}

// The folded gradient of image index j of one padded line (samples `stride`
// apart, padded index 0 first).
template <typename scalar_t, typename acc_t>
LO_HD scalar_t folded(const scalar_t* line, int64_t stride, const Axis& a, int64_t j) {
  acc_t acc = acc_t(0);
  for_each_polynomial_preimage(j, a.n, a.pad, a.n + 2 * a.pad, a.order, a.step, true, [&](int64_t o, double w) {
    acc += acc_t(w) * static_cast<acc_t>(line[o * stride]);
  });
  return static_cast<scalar_t>(acc);
}

// The whole geometry of a padded tensor: `planes` lines of planes, each
// padded_h x padded_w, with `channels` values per pixel innermost. NCHW: planes
// = N * C and channels = 1; channels_last (NHWC): planes = N and channels = C,
// so that consecutive items (threads) are consecutive channels, contiguous.
struct Geometry {
  int64_t planes;
  Axis h, w;
  int64_t channels = 1;
  LO_HD int64_t padded_h() const { return h.n + 2 * h.pad; }
  LO_HD int64_t padded_w() const { return w.n + 2 * w.pad; }
  // Elements of the fold's two passes.
  LO_HD int64_t column_items() const { return planes * padded_h() * node_count(w) * channels; }
  LO_HD int64_t row_items() const { return planes * node_count(h) * w.n * channels; }
  // Elements of the in-place pad's two passes: the ring rows over the image
  // columns, then the ring columns over every padded row.
  LO_HD int64_t ring_row_items() const { return planes * 2 * h.pad * w.n * channels; }
  LO_HD int64_t ring_column_items() const { return planes * padded_h() * 2 * w.pad * channels; }
};

// Pass 1, item e: node column node(w, k) of padded row r of plane p, channel ch,
// with e = ((p * padded_h + r) * node_count(w) + k) * channels + ch.
template <typename scalar_t, typename acc_t>
LO_HD void fold_column_item(scalar_t* g, const Geometry& geo, int64_t e) {
  const int64_t C = geo.channels, count = node_count(geo.w);
  const int64_t ch = e % C, t = e / C;
  const int64_t row = t / count, k = t - row * count;
  scalar_t* line = g + row * geo.padded_w() * C + ch;
  const int64_t j = node(geo.w, k);
  line[(geo.w.pad + j) * C] = folded<scalar_t, acc_t>(line, C, geo.w, j);
}

// Pass 2, item e: node row node(h, k) at image column c of plane p, channel ch,
// with e = ((p * node_count(h) + k) * w + c) * channels + ch.
template <typename scalar_t, typename acc_t>
LO_HD void fold_row_item(scalar_t* g, const Geometry& geo, int64_t e) {
  const int64_t C = geo.channels;
  const int64_t ch = e % C, t0 = e / C;
  const int64_t c = t0 % geo.w.n, t = t0 / geo.w.n;
  const int64_t count = node_count(geo.h);
  const int64_t p = t / count, k = t - p * count;
  const int64_t pw = geo.padded_w(), stride = pw * C;
  scalar_t* column = g + (p * geo.padded_h() * pw + geo.w.pad + c) * C + ch;
  const int64_t i = node(geo.h, k);
  column[(geo.h.pad + i) * stride] = folded<scalar_t, acc_t>(column, stride, geo.h, i);
}

// The pad in place, the fold's transpose: the image already sits in the middle
// of the padded tensor, and the ring is written from it, rows first (over the
// image columns), then columns (over every padded row), as the pad op orders
// them. In each pass an element reads only samples that the pass does not
// write. The padded path's channels_last route (cpp/diffconv.cpp) runs it after
// a plain transposing copy of the image (cuda/diffconv_layout.cuh).

// Extrapolated sample o (padded index, in the ring) of one padded line.
template <typename scalar_t, typename acc_t>
LO_HD scalar_t extrapolated(const scalar_t* line, int64_t stride, const Axis& a, int64_t o) {
  acc_t acc = acc_t(0);
  for_each_polynomial_source(o - a.pad, a.n, a.order, a.step, [&](int64_t i, double w) {
    acc += acc_t(w) * static_cast<acc_t>(line[(a.pad + i) * stride]);
  });
  return static_cast<scalar_t>(acc);
}

// Ring index k in [0, 2 * pad) of an axis: its padded index.
LO_HD int64_t ring(const Axis& a, int64_t k) { return k < a.pad ? k : a.n + k; }

// Pass 1, item e: ring row ring(h, k) at image column c of plane p, channel ch,
// with e = ((p * 2 pad_h + k) * w + c) * channels + ch.
template <typename scalar_t, typename acc_t>
LO_HD void pad_row_item(scalar_t* g, const Geometry& geo, int64_t e) {
  const int64_t C = geo.channels;
  const int64_t ch = e % C, t0 = e / C;
  const int64_t c = t0 % geo.w.n, t = t0 / geo.w.n;
  const int64_t count = 2 * geo.h.pad;
  const int64_t p = t / count, k = t - p * count;
  const int64_t pw = geo.padded_w(), stride = pw * C;
  scalar_t* column = g + (p * geo.padded_h() * pw + geo.w.pad + c) * C + ch;
  const int64_t o = ring(geo.h, k);
  column[o * stride] = extrapolated<scalar_t, acc_t>(column, stride, geo.h, o);
}

// Pass 2, item e: ring column ring(w, k) of padded row r of plane p, channel ch,
// with e = ((p * padded_h + r) * 2 pad_w + k) * channels + ch.
template <typename scalar_t, typename acc_t>
LO_HD void pad_column_item(scalar_t* g, const Geometry& geo, int64_t e) {
  const int64_t C = geo.channels, count = 2 * geo.w.pad;
  const int64_t ch = e % C, t = e / C;
  const int64_t row = t / count, k = t - row * count;
  scalar_t* line = g + row * geo.padded_w() * C + ch;
  const int64_t o = ring(geo.w, k);
  line[o * C] = extrapolated<scalar_t, acc_t>(line, C, geo.w, o);
}

// The four passes by number, for the loops and kernels that run them: 0 fold
// columns, 1 fold rows (the fold: 0 then 1), 2 pad rows, 3 pad columns (the
// pad: 2 then 3).
template <int kPass>
LO_HD int64_t pass_items(const Geometry& geo) {
  if (kPass == 0) return geo.column_items();
  if (kPass == 1) return geo.row_items();
  if (kPass == 2) return geo.ring_row_items();
  return geo.ring_column_items();
}

template <int kPass, typename scalar_t, typename acc_t>
LO_HD void pass_item(scalar_t* g, const Geometry& geo, int64_t e) {
  if (kPass == 0) fold_column_item<scalar_t, acc_t>(g, geo, e);
  else if (kPass == 1) fold_row_item<scalar_t, acc_t>(g, geo, e);
  else if (kPass == 2) pad_row_item<scalar_t, acc_t>(g, geo, e);
  else pad_column_item<scalar_t, acc_t>(g, geo, e);
}

}  // namespace diffconv_fold
}  // namespace learnable_ops
