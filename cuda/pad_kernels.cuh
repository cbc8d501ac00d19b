// pad: the CUDA kernel bodies and their launch planning, written so that the
// host compiler can run them too: tests/pad/pad_cuda_emulation.cpp includes
// this header without nvcc and replays every block and thread in loops, which
// checks the index arithmetic, the shared-memory tables and their fallbacks on
// a machine without a GPU. Nothing here includes ATen.
//
// Three kernels serve every mode:
//
//   pad_forward_kernel       index modes (zeros, border, periodic, reflect,
//                            symmetric), forward: each output is a copy (or 0).
//   pad_poly_kernel          polynomial mode, forward and backward: each
//                            element copies one source or, in the ring, sums
//                            its weighted sources (lagrange.h); see its
//                            section below.
//   pad_gather_kernel        backward of the index modes: each input element
//                            sums the outputs that read it (the preimages of
//                            padding.h), so the result is the exact adjoint,
//                            summed in a fixed order by one writer:
//                            deterministic, no atomics. So does the
//                            polynomial backward, per element.
//
// The forward and gather kernels give each thread four consecutive columns of
// one row (one division per four elements, a vector store where the row is
// aligned) and walk the items grid-stride over a single wave of blocks. A
// block first builds, in shared memory, per-axis tables of what the elements
// need: the source index of every output index (forward), or the list of
// every input index (gather). The lists are tiny for the
// interior (one entry: the copy), so an element whose three axes each have a
// single source reads it directly. An axis whose table does not fit the
// budget is computed inline from the same shared maps, with a host-computed
// interior run as its fast path.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "learnable_ops/lagrange.h"
#include "learnable_ops/macros.h"
#include "learnable_ops/padding.h"

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LO_PAD_UNROLL _Pragma("unroll")
#define LO_PAD_NO_UNROLL _Pragma("unroll 1")
// A ring element's taps: four loads in flight rather than one at a time.
#define LO_PAD_UNROLL_TAPS _Pragma("unroll 4")
#else
#define LO_PAD_UNROLL_TAPS
#define LO_PAD_UNROLL
#define LO_PAD_NO_UNROLL
#endif

namespace learnable_ops {
namespace pad_kernels {

// Columns per thread.
constexpr int kQuad = 4;

// One spatial axis of a pad (D, H or W), as in PadPlan.
template <typename I>
struct PadAxis {
  I in, out, before;
  int64_t order, step;  // polynomial mode only
};

// Where a thread sits in the launch: blockIdx / gridDim / threadIdx / blockDim
// and the block's dynamic shared memory on the GPU, loop counters in the
// emulation.
struct ThreadSlot {
  int64_t block, grid;
  int thread, threads;
  unsigned char* shared;
};

template <typename scalar_t>
struct alignas(kQuad * sizeof(scalar_t)) Quad {
  scalar_t v[kQuad];
};

// Stores the quad at row[col..col+3]; a vector store when the caller checked
// that every quad is aligned and complete (width % 4 == 0, aligned base).
template <typename scalar_t, typename I>
LO_HD void store_quad(scalar_t* row, I col, I width, const scalar_t (&v)[kQuad], bool vector_store) {
  if (vector_store) {
    Quad<scalar_t> q;
    LO_PAD_UNROLL
    for (int k = 0; k < kQuad; ++k) q.v[k] = v[k];
    *reinterpret_cast<Quad<scalar_t>*>(row + col) = q;
    return;
  }
  LO_PAD_UNROLL
  for (int k = 0; k < kQuad; ++k)
    if (col + k < width) row[col + k] = v[k];
}

// ---------------------------------------------------------------------------
// Forward, index modes.

template <typename scalar_t, typename I>
struct ForwardArgs {
  const scalar_t* x;
  scalar_t* y;
  PadAxis<I> axis[3];
  I quads;  // per output row: ceil(out W / 4)
  I items;  // rows * quads
  // Byte offset of each axis's source-index table in shared memory, or -1:
  // that axis computes pad_index inline.
  int32_t table_offset[3];
  bool vector_store;
};

template <PadMode M, typename I>
LO_HD I source_index(const PadAxis<I>& axis, I o) {
  return pad_index_t<I>(o - axis.before, axis.in, M);
}

template <PadMode M, typename scalar_t, typename I>
LO_HD void pad_forward_tables(const ThreadSlot& s, const ForwardArgs<scalar_t, I>& a) {
  for (int ax = 0; ax < 3; ++ax) {
    if (a.table_offset[ax] < 0) continue;
    I* table = reinterpret_cast<I*>(s.shared + a.table_offset[ax]);
    for (I o = I(s.thread); o < a.axis[ax].out; o += I(s.threads)) table[o] = source_index<M>(a.axis[ax], o);
  }
}

template <PadMode M, typename scalar_t, typename I>
LO_HD I forward_source(const ThreadSlot& s, const ForwardArgs<scalar_t, I>& a, int ax, I o) {
  return a.table_offset[ax] >= 0 ? reinterpret_cast<const I*>(s.shared + a.table_offset[ax])[o]
                                 : source_index<M>(a.axis[ax], o);
}

template <PadMode M, typename scalar_t, typename I>
LO_HD void pad_forward_items(const ThreadSlot& s, const ForwardArgs<scalar_t, I>& a) {
  const PadAxis<I>& D = a.axis[0];
  const PadAxis<I>& H = a.axis[1];
  const PadAxis<I>& W = a.axis[2];
  const I stride = I(s.grid) * I(s.threads);
  for (I item = I(s.block) * I(s.threads) + I(s.thread); item < a.items; item += stride) {
    const I row = item / a.quads;
    const I col = (item - row * a.quads) * kQuad;
    const I oh = row % H.out;
    const I t = row / H.out;
    const I od = t % D.out;
    const I b = t / D.out;
    const I id = forward_source<M>(s, a, 0, od);
    const I ih = forward_source<M>(s, a, 1, oh);
    scalar_t v[kQuad] = {scalar_t(0), scalar_t(0), scalar_t(0), scalar_t(0)};
    if (id >= 0 && ih >= 0) {
      const scalar_t* xrow = a.x + ((b * D.in + id) * H.in + ih) * W.in;
      LO_PAD_UNROLL
      for (int k = 0; k < kQuad; ++k) {
        const I ow = col + k;
        if (ow < W.out) {
          const I iw = forward_source<M>(s, a, 2, ow);
          if (iw >= 0) v[k] = xrow[iw];
        }
      }
    }
    store_quad(a.y + row * W.out, col, W.out, v, a.vector_store);
  }
}

// ---------------------------------------------------------------------------
// Gather: backward of the index modes.

template <typename scalar_t, typename I>
struct GatherArgs {
  const scalar_t* src;
  scalar_t* dst;
  PadAxis<I> axis[3];
  I target[3], source[3];  // extents of dst (input) and src (output) per axis
  I quads, items;
  // Shared-memory lists: count[j], then slots indices per target j.
  // count_offset < 0: the axis lists inline.
  int32_t count_offset[3], index_offset[3];
  I slots[3];
  // Inline axes: targets in [safe_lo, safe_hi) have the single source
  // j + safe_shift.
  I safe_lo[3], safe_hi[3], safe_shift[3];
  bool vector_store;
};

// Calls f(source_index) for the list of target j on one axis, in a fixed
// order.
template <PadMode M, typename I, typename F>
LO_HD void visit_list(const PadAxis<I>& axis, I j, F&& f) {
  static_assert(M != PadMode::Polynomial, "the polynomial backward runs pad_poly_kernel");
  for_each_preimage_t<I>(j, axis.in, axis.before, axis.out, M, f);
}

template <PadMode M, typename scalar_t, typename I>
LO_HD void pad_gather_tables(const ThreadSlot& s, const GatherArgs<scalar_t, I>& a) {
  for (int ax = 0; ax < 3; ++ax) {
    if (a.count_offset[ax] < 0) continue;
    I* count = reinterpret_cast<I*>(s.shared + a.count_offset[ax]);
    I* index = reinterpret_cast<I*>(s.shared + a.index_offset[ax]);
    const I slots = a.slots[ax];
    for (I j = I(s.thread); j < a.target[ax]; j += I(s.threads)) {
      I c = 0;
      visit_list<M>(a.axis[ax], j, [&](I o) {
        // The host sized slots as the longest list (same enumeration).
        if (c < slots) index[j * slots + c] = o;
        ++c;
      });
      count[j] = c;
    }
  }
}

template <PadMode M, typename scalar_t, typename I>
struct GatherView {
  const ThreadSlot& s;
  const GatherArgs<scalar_t, I>& a;

  // True when target j has exactly one source on axis ax: sets it.
  LO_HD bool single(int ax, I j, I& o) const {
    if (a.count_offset[ax] >= 0) {
      const I* count = reinterpret_cast<const I*>(s.shared + a.count_offset[ax]);
      if (count[j] != 1) return false;
      o = reinterpret_cast<const I*>(s.shared + a.index_offset[ax])[j * a.slots[ax]];
      return true;
    }
    if (j >= a.safe_lo[ax] && j < a.safe_hi[ax]) {
      o = j + a.safe_shift[ax];
      return true;
    }
    return false;
  }

  template <typename F>
  LO_HD void visit(int ax, I j, F&& f) const {
    if (a.count_offset[ax] >= 0) {
      const I n = reinterpret_cast<const I*>(s.shared + a.count_offset[ax])[j];
      const I* index = reinterpret_cast<const I*>(s.shared + a.index_offset[ax]) + j * a.slots[ax];
      for (I c = 0; c < n; ++c) f(index[c]);
      return;
    }
    visit_list<M>(a.axis[ax], j, f);
  }
};

template <PadMode M, typename acc_t, typename scalar_t, typename I>
LO_HD void pad_gather_items(const ThreadSlot& s, const GatherArgs<scalar_t, I>& a) {
  const GatherView<M, scalar_t, I> view{s, a};
  const I stride = I(s.grid) * I(s.threads);
  const I source_plane = a.source[0] * a.source[1] * a.source[2];
  for (I item = I(s.block) * I(s.threads) + I(s.thread); item < a.items; item += stride) {
    const I row = item / a.quads;
    const I col = (item - row * a.quads) * kQuad;
    const I jh = row % a.target[1];
    const I t = row / a.target[1];
    const I jd = t % a.target[0];
    const I b = t / a.target[0];
    const scalar_t* base = a.src + b * source_plane;
    acc_t acc[kQuad] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
    I od = 0, oh = 0;
    if (view.single(0, jd, od) && view.single(1, jh, oh)) {
      // The common case: one source row (the copy, away from D/H edges).
      const scalar_t* srow = base + (od * a.source[1] + oh) * a.source[2];
      LO_PAD_UNROLL
      for (int k = 0; k < kQuad; ++k) {
        const I jw = col + k;
        if (jw >= a.target[2]) continue;
        I ow = 0;
        if (view.single(2, jw, ow)) {
          acc[k] = acc_t(srow[ow]);
        } else {
          view.visit(2, jw, [&](I o) { acc[k] += acc_t(srow[o]); });
        }
      }
    } else {
      view.visit(0, jd, [&](I o_d) {
        view.visit(1, jh, [&](I o_h) {
          const scalar_t* srow = base + (o_d * a.source[1] + o_h) * a.source[2];
          for (int k = 0; k < kQuad; ++k) {
            const I jw = col + k;
            if (jw >= a.target[2]) continue;
            view.visit(2, jw, [&](I o) { acc[k] += acc_t(srow[o]); });
          }
        });
      });
    }
    scalar_t v[kQuad];
    LO_PAD_UNROLL
    for (int k = 0; k < kQuad; ++k) v[k] = static_cast<scalar_t>(acc[k]);
    store_quad(a.dst + row * a.target[2], col, a.target[2], v, a.vector_store);
  }
}

// ---------------------------------------------------------------------------
// Polynomial mode, forward and backward.
//
// Almost every target element (an output in the forward pass, an input in
// the backward pass) copies one source element: in the forward pass its
// padded coordinate is inside the input on all three axes, in the backward
// pass no extrapolation tap reads it. Only the ring sums weighted sources:
// the order + 1 taps of each extrapolated axis (forward), the extrapolated
// outputs that read the input (backward, the exact adjoint). Each thread takes
// elements of the flat target index, consecutive threads consecutive elements
// (coalesced loads and stores for any width and alignment), several per
// thread at a block's stride so that their loads are in flight together. An
// element finds its (b, d, h, w) by three divisions by launch constants,
// checks each axis's copy run with one compare, and copies; a ring element
// sums its sources in acc_t with weights from a per-axis shared table indexed
// by (node, distance), laid out so that neighbouring columns read
// neighbouring words. Every element's value depends only on its own index and
// is summed in a fixed order, so the result is the same for any launch.

// Division by a divisor fixed for the launch. 32-bit indices take a
// multiply-high, an add and a shift (the round-up method of Granlund and
// Montgomery, as in ATen's IntDivider: exact for 0 <= n < 2^31 and
// 1 <= d < 2^31); 64-bit indices divide.
template <typename I>
struct Divider {
  I divisor;
  Divider() = default;
  explicit Divider(I d) : divisor(d) {}
  LO_HD I div(I n) const { return n / divisor; }
};

template <>
struct Divider<int32_t> {
  uint32_t magic, shift;
  Divider() = default;
  explicit Divider(int32_t d) : magic(0), shift(0) {
    while ((uint64_t(1) << shift) < uint64_t(d)) ++shift;
    magic = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - uint64_t(d))) / uint64_t(d) + 1);
  }
  LO_HD int32_t div(int32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t high = __umulhi(uint32_t(n), magic);
#else
    const uint32_t high = uint32_t((uint64_t(uint32_t(n)) * magic) >> 32);
#endif
    return int32_t((high + uint32_t(n)) >> shift);
  }
};

template <typename scalar_t, typename acc_t, typename I>
struct PolyArgs {
  const scalar_t* src;
  scalar_t* dst;
  PadAxis<I> axis[3];
  I target[3], source[3];  // extents of dst and src per axis
  // Targets copy_lo + r of an axis, 0 <= r < copy_len, have the single source
  // copy_source + r, with weight 1.
  I copy_lo[3], copy_len[3], copy_source[3];
  I total;  // dst elements
  Divider<I> target_w, target_h, target_d;
  // Tabled kernel: the weight of node i at distance m (in grid steps,
  // 0 <= m <= reach; m = 0 is the copy: 1 for node 0) is entry
  // i * (reach + 1) + m of an acc_t table at byte weight_offset of shared
  // memory. The inline kernel (some table over the budget) computes them.
  I reach[3];
  int32_t weight_offset[3];
};

// Elements per thread and pass, whose loads are in flight together (16 to 32
// bytes per thread): the ring code's registers allow about 4 blocks of 256
// threads per SM, too few to cover the memory latency with one load each.
template <typename scalar_t>
constexpr int poly_unroll() {
  return sizeof(scalar_t) >= 8 ? 4 : 8;
}

template <typename I>
LO_HD bool inside(I p, I n) {
  using U = std::make_unsigned_t<I>;
  return static_cast<U>(p) < static_cast<U>(n);
}

template <typename scalar_t, typename acc_t, typename I>
LO_HD void pad_poly_tables(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a) {
  for (int ax = 0; ax < 3; ++ax) {
    acc_t* weight = reinterpret_cast<acc_t*>(s.shared + a.weight_offset[ax]);
    const I columns = a.reach[ax] + 1;
    const I entries = (I(a.axis[ax].order) + 1) * columns;
    for (I j = I(s.thread); j < entries; j += I(s.threads)) {
      const I i = j / columns;
      weight[j] = acc_t(extrapolation_weight(a.axis[ax].order, i, j - i * columns));
    }
  }
}

// extrapolation_weight(order, i, m) in acc_t, from the table or computed.
template <bool kTabled, int AX, typename scalar_t, typename acc_t, typename I>
LO_HD acc_t poly_weight(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a, I i, I m) {
  if constexpr (kTabled) {
    return reinterpret_cast<const acc_t*>(s.shared + a.weight_offset[AX])[i * (a.reach[AX] + 1) + m];
  } else {
    (void)s;
    return acc_t(extrapolation_weight(a.axis[AX].order, i, m));
  }
}

// Target element (b, d, h, w) of the flat index e.
template <typename scalar_t, typename acc_t, typename I>
LO_HD void locate_target(const PolyArgs<scalar_t, acc_t, I>& a, I e, I& b, I& d, I& h, I& w) {
  const I row = a.target_w.div(e);
  w = e - row * a.target[2];
  const I plane = a.target_h.div(row);
  h = row - plane * a.target[1];
  b = a.target_d.div(plane);
  d = plane - b * a.target[0];
}

// Forward: the inputs of output index o on one axis, first + i * delta for
// i < count, node i at distance m (m = 0: the copy, count 1).
template <typename I>
struct AxisSources {
  I first, delta, count, m;
  LO_HD I index(I i) const { return first + i * delta; }
};

template <int AX, typename scalar_t, typename acc_t, typename I>
LO_HD AxisSources<I> output_sources(const PolyArgs<scalar_t, acc_t, I>& a, I o) {
  const PadAxis<I>& axis = a.axis[AX];
  const I p = o - axis.before;
  if (inside(p, axis.in)) return {p, 0, 1, 0};
  const ExtrapolationNodes<I> nodes = extrapolation_nodes(p, axis.in, I(axis.step));
  return {nodes.first, nodes.delta, I(axis.order) + 1, nodes.m};
}

// A ring output: the W taps of the D x H tap sums, each accumulated in acc_t
// in tap order (the CPU kernel's order). The outer loops stay rolled (this
// runs for few elements; unrolled they would take registers from the copy
// loop); the innermost loop is unrolled by 4 so that a ring row's K taps,
// which are L2 hits, are not K round trips.
template <bool kTabled, typename scalar_t, typename acc_t, typename I>
LO_HD scalar_t poly_ring_output(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a, I e) {
  I b, od, oh, ow;
  locate_target(a, e, b, od, oh, ow);
  const I H = a.source[1], W = a.source[2];
  const AxisSources<I> sd = output_sources<0>(a, od), sh = output_sources<1>(a, oh), sw = output_sources<2>(a, ow);
  const scalar_t* batch_x = a.src + b * a.source[0] * H * W;
  acc_t value = acc_t(0);
  if (sd.count == 1 && sh.count == 1) {
    // The common ring element: a copied row, extrapolated along W only.
    const scalar_t* row_x = batch_x + (sd.first * H + sh.first) * W;
    LO_PAD_UNROLL_TAPS
    for (I kw = 0; kw < sw.count; ++kw)
      value += poly_weight<kTabled, 2>(s, a, kw, sw.m) * static_cast<acc_t>(row_x[sw.index(kw)]);
    return static_cast<scalar_t>(value);
  }
  LO_PAD_NO_UNROLL
  for (I kw = 0; kw < sw.count; ++kw) {
    acc_t column = acc_t(0);
    LO_PAD_NO_UNROLL
    for (I kd = 0; kd < sd.count; ++kd) {
      const acc_t wd = poly_weight<kTabled, 0>(s, a, kd, sd.m);
      const scalar_t* row_x = batch_x + sd.index(kd) * H * W + sw.index(kw);
      LO_PAD_UNROLL_TAPS
      for (I kh = 0; kh < sh.count; ++kh)
        column += wd * poly_weight<kTabled, 1>(s, a, kh, sh.m) * static_cast<acc_t>(row_x[sh.index(kh) * W]);
    }
    value += poly_weight<kTabled, 2>(s, a, kw, sw.m) * column;
  }
  return static_cast<scalar_t>(value);
}

// Backward: calls f(output_index, weight) for the outputs that read input j
// on axis AX, in increasing order (lagrange.h's preimage enumeration).
template <bool kTabled, int AX, typename scalar_t, typename acc_t, typename I, typename F>
LO_HD void visit_input_preimages(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a, I j, F&& f) {
  const PadAxis<I>& axis = a.axis[AX];
  for_each_preimage_node<I>(j, axis.in, axis.before, axis.out, I(axis.order), I(axis.step), true,
                            [&](I o, I i, I m) { f(o, poly_weight<kTabled, AX>(s, a, i, m)); });
}

// A ring input's gradient: the W preimages of the D x H preimage sums, in
// increasing output order.
template <bool kTabled, typename scalar_t, typename acc_t, typename I>
LO_HD scalar_t poly_ring_input(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a, I e) {
  I b, id, ih, iw;
  locate_target(a, e, b, id, ih, iw);
  const I H = a.source[1], W = a.source[2];
  const scalar_t* batch_g = a.src + b * a.source[0] * H * W;
  acc_t value = acc_t(0);
  visit_input_preimages<kTabled, 2>(s, a, iw, [&](I ow, acc_t ww) {
    acc_t column = acc_t(0);
    visit_input_preimages<kTabled, 0>(s, a, id, [&](I od, acc_t wd) {
      visit_input_preimages<kTabled, 1>(s, a, ih, [&](I oh, acc_t wh) {
        column += wd * wh * static_cast<acc_t>(batch_g[(od * H + oh) * W + ow]);
      });
    });
    value += ww * column;
  });
  return static_cast<scalar_t>(value);
}

template <bool kForward, bool kTabled, typename scalar_t, typename acc_t, typename I>
LO_HD void pad_poly_items(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a) {
  constexpr int kUnroll = poly_unroll<scalar_t>();
  const I threads = I(s.threads);
  const I pass = threads * kUnroll;
  for (I first = I(s.block) * pass + I(s.thread); first < a.total; first += I(s.grid) * pass) {
    scalar_t v[kUnroll];
    unsigned copies = 0, rings = 0;  // bit k: element k copies / sums its sources
    LO_PAD_UNROLL
    for (int k = 0; k < kUnroll; ++k) {
      const I e = first + I(k) * threads;
      I b, d, h, w;
      locate_target(a, e, b, d, h, w);
      const I rd = d - a.copy_lo[0], rh = h - a.copy_lo[1], rw = w - a.copy_lo[2];
      const bool copy = inside(rd, a.copy_len[0]) && inside(rh, a.copy_len[1]) && inside(rw, a.copy_len[2]);
      if (e < a.total) (copy ? copies : rings) |= 1u << k;
      const I at = ((b * a.source[0] + a.copy_source[0] + rd) * a.source[1] + a.copy_source[1] + rh) * a.source[2] +
                   a.copy_source[2] + rw;
      v[k] = copies >> k & 1u ? a.src[at] : scalar_t(0);
    }
    // The ring while the copies' loads are in flight. Not unrolled: one copy
    // of the ring code, whatever kUnroll.
    LO_PAD_NO_UNROLL
    for (int k = 0; rings >> k != 0u; ++k) {
      if (!(rings >> k & 1u)) continue;
      const I e = first + I(k) * threads;
      if constexpr (kForward) a.dst[e] = poly_ring_output<kTabled>(s, a, e);
      else a.dst[e] = poly_ring_input<kTabled>(s, a, e);
    }
    LO_PAD_UNROLL
    for (int k = 0; k < kUnroll; ++k)
      if (copies >> k & 1u) a.dst[first + I(k) * threads] = v[k];
  }
}

// Polynomial forward in two launches (pad_launch.cuh, behind the tuning switch
// LEARNABLE_OPS_PAD_POLY_SPLIT=1; not yet measured): the copy box alone, then
// the ring alone. The flat kernel above checks every element for the ring and
// branches for the few that are: ncu on an H100 (session 9, the K = 3 pad of
// 16x64x128x128 fp32, 100 us, 1.3 TB/s) found it issuing at 18 of 32 active
// lanes. Here the box kernel's warps do nothing but copy (every element of the
// box has its single source), and the ring kernel's every thread sums. Applies
// when every D target is a copy (2D and 1D pads; 3D pads whose D axis is not
// padded). Each ring element is poly_ring_output's, so the result is the flat
// kernel's bit for bit.
template <typename I>
struct PolySplit {
  I box_items;   // batch * tD * copy_len[1] * copy_len[2]
  Divider<I> box_w, box_h, box_d;  // by copy_len[2], copy_len[1], tD
  I ring_items;  // batch * tD * per_plane
  // Ring elements of one (b, d) plane: `top` in the rows above the box (every
  // column), `middle` in the box's rows (`side` columns each, left and right of
  // the box), then the rows below it.
  I per_plane, top, middle, side;
  Divider<I> ring_plane, ring_w, ring_side;  // by per_plane, tW, side (1 when side is 0)
};

template <typename scalar_t, typename acc_t, typename I>
bool poly_split_applies(const PolyArgs<scalar_t, acc_t, I>& a) {
  return a.copy_lo[0] == 0 && a.copy_len[0] == a.target[0];
}

template <typename scalar_t, typename acc_t, typename I>
PolySplit<I> plan_poly_split(const PolyArgs<scalar_t, acc_t, I>& a) {
  PolySplit<I> p{};
  const I tD = a.target[0], tH = a.target[1], tW = a.target[2];
  const I planes = a.total / std::max<I>(1, tH * tW);  // batch * tD
  p.box_items = planes * a.copy_len[1] * a.copy_len[2];
  p.box_w = Divider<I>(std::max<I>(1, a.copy_len[2]));
  p.box_h = Divider<I>(std::max<I>(1, a.copy_len[1]));
  p.box_d = Divider<I>(std::max<I>(1, tD));
  p.side = tW - a.copy_len[2];
  p.top = a.copy_lo[1] * tW;
  p.middle = a.copy_len[1] * p.side;
  p.per_plane = tH * tW - a.copy_len[1] * a.copy_len[2];
  p.ring_items = planes * p.per_plane;
  p.ring_plane = Divider<I>(std::max<I>(1, p.per_plane));
  p.ring_w = Divider<I>(std::max<I>(1, tW));
  p.ring_side = Divider<I>(std::max<I>(1, p.side));
  return p;
}

// The box: item i is element (plane, rh, rw) of the copy box, plane = b * tD + d;
// kUnroll items per thread with their loads in flight together.
template <typename scalar_t, typename acc_t, typename I>
LO_HD void pad_poly_box_items(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a, const PolySplit<I>& p) {
  constexpr int kUnroll = poly_unroll<scalar_t>();
  const I threads = I(s.threads), pass = threads * kUnroll;
  const I tD = a.target[0], tH = a.target[1], tW = a.target[2];
  const I sD = a.source[0], sH = a.source[1], sW = a.source[2];
  for (I first = I(s.block) * pass + I(s.thread); first < p.box_items; first += I(s.grid) * pass) {
    scalar_t v[kUnroll];
    I at[kUnroll];
    LO_PAD_UNROLL
    for (int k = 0; k < kUnroll; ++k) {
      const I i = first + I(k) * threads;
      const I row = p.box_w.div(i), rw = i - row * a.copy_len[2];
      const I plane = p.box_h.div(row), rh = row - plane * a.copy_len[1];
      const I b = p.box_d.div(plane), d = plane - b * tD;
      const bool live = i < p.box_items;
      at[k] = live ? (plane * tH + a.copy_lo[1] + rh) * tW + a.copy_lo[2] + rw : I(-1);
      v[k] = live ? a.src[((b * sD + a.copy_source[0] + d) * sH + a.copy_source[1] + rh) * sW + a.copy_source[2] + rw]
                  : scalar_t(0);
    }
    LO_PAD_UNROLL
    for (int k = 0; k < kUnroll; ++k)
      if (at[k] >= 0) a.dst[at[k]] = v[k];
  }
}

// The ring: item r is the r-th ring element of the planes, in row-major order
// within each plane.
template <bool kTabled, typename scalar_t, typename acc_t, typename I>
LO_HD void pad_poly_ring_items(const ThreadSlot& s, const PolyArgs<scalar_t, acc_t, I>& a, const PolySplit<I>& p) {
  const I tH = a.target[1], tW = a.target[2];
  for (I r = I(s.block) * I(s.threads) + I(s.thread); r < p.ring_items; r += I(s.grid) * I(s.threads)) {
    const I plane = p.ring_plane.div(r);
    I q = r - plane * p.per_plane, h, w;
    if (q < p.top) {
      h = p.ring_w.div(q);
      w = q - h * tW;
    } else if ((q -= p.top) < p.middle) {
      const I row = p.ring_side.div(q), c = q - row * p.side;
      h = a.copy_lo[1] + row;
      w = c < a.copy_lo[2] ? c : c + a.copy_len[2];
    } else {
      q -= p.middle;
      const I row = p.ring_w.div(q);
      h = a.copy_lo[1] + a.copy_len[1] + row;
      w = q - row * tW;
    }
    const I e = (plane * tH + h) * tW + w;
    a.dst[e] = poly_ring_output<kTabled>(s, a, e);
  }
}

#if defined(__CUDACC__) || defined(__HIPCC__)
__device__ inline ThreadSlot this_thread_slot() {
  extern __shared__ __align__(16) unsigned char pad_tables[];
  return ThreadSlot{int64_t(blockIdx.x), int64_t(gridDim.x), int(threadIdx.x), int(blockDim.x), pad_tables};
}

template <PadMode M, typename scalar_t, typename I>
__global__ void pad_forward_kernel(const ForwardArgs<scalar_t, I> a) {
  const ThreadSlot s = this_thread_slot();
  pad_forward_tables<M>(s, a);
  __syncthreads();
  pad_forward_items<M>(s, a);
}

template <bool kForward, bool kTabled, typename scalar_t, typename acc_t, typename I>
__global__ void pad_poly_kernel(const PolyArgs<scalar_t, acc_t, I> a) {
  const ThreadSlot s = this_thread_slot();
  if constexpr (kTabled) {
    pad_poly_tables(s, a);
    __syncthreads();
  }
  pad_poly_items<kForward, kTabled>(s, a);
}

template <typename scalar_t, typename acc_t, typename I>
__global__ void pad_poly_box_kernel(const PolyArgs<scalar_t, acc_t, I> a, const PolySplit<I> p) {
  pad_poly_box_items(this_thread_slot(), a, p);
}

template <bool kTabled, typename scalar_t, typename acc_t, typename I>
__global__ void pad_poly_ring_kernel(const PolyArgs<scalar_t, acc_t, I> a, const PolySplit<I> p) {
  const ThreadSlot s = this_thread_slot();
  if constexpr (kTabled) {
    pad_poly_tables(s, a);
    __syncthreads();
  }
  pad_poly_ring_items<kTabled>(s, a, p);
}

template <PadMode M, typename acc_t, typename scalar_t, typename I>
__global__ void pad_gather_kernel(const GatherArgs<scalar_t, I> a) {
  const ThreadSlot s = this_thread_slot();
  pad_gather_tables<M>(s, a);
  __syncthreads();
  pad_gather_items<M, acc_t>(s, a);
}
#endif

// ---------------------------------------------------------------------------
// Host-side planning, shared by pad.cu and the emulation test.

inline size_t align8(size_t bytes) { return (bytes + 7) & ~size_t(7); }

template <typename scalar_t>
bool quads_aligned(const scalar_t* row0, int64_t width) {
  return width % kQuad == 0 && reinterpret_cast<uintptr_t>(row0) % sizeof(Quad<scalar_t>) == 0;
}

// Fills the geometry and the tables (W first: it is read per element, H and D
// per quad). Returns the dynamic shared memory in bytes.
template <typename scalar_t, typename I>
size_t plan_forward(ForwardArgs<scalar_t, I>& a, const PadAxis<I> (&axes)[3], I rows, size_t budget) {
  size_t used = 0;
  for (int ax = 0; ax < 3; ++ax) a.axis[ax] = axes[ax];
  for (int ax = 2; ax >= 0; --ax) {
    const size_t need = align8(size_t(axes[ax].out) * sizeof(I));
    a.table_offset[ax] = -1;
    if (need <= budget - used) {
      a.table_offset[ax] = int32_t(used);
      used += need;
    }
  }
  a.quads = (axes[2].out + kQuad - 1) / kQuad;
  a.items = rows * a.quads;
  a.vector_store = quads_aligned(a.y, int64_t(axes[2].out));
  return used;
}

// Longest list of any target on one axis.
template <PadMode M, typename I>
int64_t longest_list(const PadAxis<I>& axis, I targets) {
  int64_t longest = 0;
  for (I j = 0; j < targets; ++j) {
    int64_t c = 0;
    visit_list<M>(axis, j, [&](I) { ++c; });
    longest = std::max(longest, c);
  }
  return longest;
}

// For an axis listed inline: the longest run of targets whose list is only the
// copy (weight 1). Not only the first run: a reflect axis starts with a
// single-preimage edge element (input 0), then the pad band, then the interior.
template <PadMode M, typename I>
void single_source_run(const PadAxis<I>& axis, I& lo, I& hi, I& shift) {
  const int64_t n = axis.in, out = axis.out, before = axis.before;
  lo = hi = shift = 0;
  if constexpr (M == PadMode::Polynomial) {
    // Inputs whose copy is kept and which no extrapolation tap reads. The
    // taps of an extended edge read the step * (order + 1) inputs next to it.
    const int64_t taps = axis.step * (axis.order + 1);
    int64_t first = std::max<int64_t>(0, -before), last = std::min<int64_t>(n, out - before);
    if (before > 0) first = std::max(first, taps);
    if (out - before - n > 0) last = std::min(last, n - taps);
    lo = I(first);
    hi = I(std::max(first, last));
    shift = I(before);
    return;
  } else {
    // Inputs read by a padded (non-copy) output are hit; the others in the
    // copied range have the copy as their single preimage.
    std::vector<char> hit(static_cast<size_t>(n), 0);
    const int64_t period = M == PadMode::Periodic    ? n
                           : M == PadMode::Reflect   ? std::max<int64_t>(1, 2 * n - 2)
                           : M == PadMode::Symmetric ? 2 * n
                                                     : 0;
    auto mark = [&](int64_t p_lo, int64_t p_hi) {  // padded coordinates [p_lo, p_hi)
      if (p_hi <= p_lo || M == PadMode::Zeros) return;
      if (M == PadMode::Border) {
        hit[pad_index(p_lo, n, M)] = 1;
        return;
      }
      if (p_hi - p_lo >= period) p_hi = p_lo + period;  // one period hits everything it can
      for (int64_t p = p_lo; p < p_hi; ++p) hit[pad_index(p, n, M)] = 1;
    };
    mark(-before, std::min<int64_t>(0, out - before));  // front band
    mark(std::max<int64_t>(n, -before), out - before);  // back band
    const int64_t first = std::max<int64_t>(0, -before), last = std::min<int64_t>(n, out - before);
    int64_t best_lo = 0, best_len = 0;
    for (int64_t j = first; j < last;) {
      if (hit[j]) {
        ++j;
        continue;
      }
      int64_t k = j;
      while (k < last && !hit[k]) ++k;
      if (k - j > best_len) best_lo = j, best_len = k - j;
      j = k;
    }
    lo = I(best_lo);
    hi = I(best_lo + best_len);
    shift = I(before);
  }
}

// Fills the polynomial geometry (targets: outputs in the forward pass,
// inputs in the backward pass), the copy runs and the weight tables. Returns
// the dynamic shared memory in bytes; 0 when the tables do not all fit the
// budget (pads far beyond the input): then the inline kernel runs, whose
// weights are the same values (the same double expression, rounded once).
template <typename scalar_t, typename acc_t, typename I>
size_t plan_poly(PolyArgs<scalar_t, acc_t, I>& a, const PadAxis<I> (&axes)[3], bool forward, I batch,
                 size_t budget) {
  size_t used = 0;
  for (int ax = 0; ax < 3; ++ax) {
    const PadAxis<I>& axis = axes[ax];
    a.axis[ax] = axis;
    a.target[ax] = forward ? axis.out : axis.in;
    a.source[ax] = forward ? axis.in : axis.out;
    I lo, hi, shift;
    if (forward) {  // outputs whose padded coordinate is inside the input
      lo = std::max<I>(0, axis.before);
      hi = std::max<I>(lo, std::min<I>(axis.out, axis.before + axis.in));
      shift = -axis.before;
    } else {
      single_source_run<PadMode::Polynomial>(axis, lo, hi, shift);
    }
    a.copy_lo[ax] = lo;
    a.copy_len[ax] = hi - lo;
    a.copy_source[ax] = lo + shift;
    // The farthest extrapolated coordinate lies `band` samples beyond an edge.
    const int64_t band = std::max<int64_t>({0, int64_t(axis.before), int64_t(axis.out) - axis.before - axis.in});
    a.reach[ax] = I((band + axis.step - 1) / axis.step);
    a.weight_offset[ax] = int32_t(used);
    used += align8(size_t(axis.order + 1) * (size_t(a.reach[ax]) + 1) * sizeof(acc_t));
  }
  if (used > budget) {
    for (int ax = 0; ax < 3; ++ax) a.weight_offset[ax] = -1;
    used = 0;
  }
  a.total = batch * a.target[0] * a.target[1] * a.target[2];
  a.target_w = Divider<I>(a.target[2]);
  a.target_h = Divider<I>(a.target[1]);
  a.target_d = Divider<I>(a.target[0]);
  return used;
}

// Whether the plan above placed the weight tables (the tabled kernel runs).
template <typename scalar_t, typename acc_t, typename I>
bool poly_tabled(const PolyArgs<scalar_t, acc_t, I>& a) {
  return a.weight_offset[0] >= 0;
}

// Fills the gather geometry (targets are inputs, sources outputs) and its
// tables, W first. Returns the dynamic shared memory in bytes.
template <PadMode M, typename scalar_t, typename I>
size_t plan_gather(GatherArgs<scalar_t, I>& a, const PadAxis<I> (&axes)[3], I batch, size_t budget) {
  for (int ax = 0; ax < 3; ++ax) {
    a.axis[ax] = axes[ax];
    a.target[ax] = axes[ax].in;
    a.source[ax] = axes[ax].out;
  }
  size_t used = 0;
  for (int ax = 2; ax >= 0; --ax) {
    const I n = a.target[ax];
    a.count_offset[ax] = a.index_offset[ax] = -1;
    a.slots[ax] = 0;
    a.safe_lo[ax] = a.safe_hi[ax] = a.safe_shift[ax] = 0;
    // At least a count and one slot per target, before enumerating anything.
    if (align8(size_t(n) * 2 * sizeof(I)) <= budget - used) {
      const int64_t slots = longest_list<M>(axes[ax], n);
      const size_t count_bytes = align8(size_t(n) * sizeof(I));
      const size_t index_bytes = align8(size_t(n) * size_t(slots) * sizeof(I));
      if (count_bytes + index_bytes <= budget - used) {
        a.slots[ax] = I(slots);
        a.count_offset[ax] = int32_t(used);
        a.index_offset[ax] = int32_t(used + count_bytes);
        used += count_bytes + index_bytes;
        continue;
      }
    }
    single_source_run<M>(axes[ax], a.safe_lo[ax], a.safe_hi[ax], a.safe_shift[ax]);
  }
  a.quads = (a.target[2] + kQuad - 1) / kQuad;
  a.items = batch * a.target[0] * a.target[1] * a.quads;
  a.vector_store = quads_aligned(a.dst, int64_t(a.target[2]));
  return used;
}

}  // namespace pad_kernels
}  // namespace learnable_ops
