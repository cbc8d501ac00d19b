// DiffConv2d's layout kernels: the polynomial pad of an NCHW image written
// straight into a channels_last (NHWC) padded buffer, and its adjoint, the fold
// of a channels_last padded gradient into an NCHW image gradient. With padding
// 0 they are plain NCHW <-> NHWC transposes.
//
// Why: cuDNN runs dense convolutions in NHWC. Fed NCHW tensors it transposes
// the input, grad_output (twice) and the results itself, which took 0.3 of the
// 0.78 ms of a 16x64x128x128 fp32 3x3 convolution's forward and backward on an
// H100. The padded path (cpp/diffconv.cpp) hands cuDNN channels_last tensors
// instead, and these kernels do the pad (or the fold) in the same pass as the
// transpose they replace.
//
// A block covers R (1, 2 or 4) consecutive rows of the destination, kTile
// channels by kTile columns: it reads the rows and columns it needs with
// consecutive threads on the NCHW side's contiguous axis (W), keeps the tiles in
// shared memory, and writes with consecutive threads on the NHWC side's
// contiguous axis (C). Each axis's sources (pad) or preimages (fold) with their
// Lagrange weights come from lagrange.h, as in the pad op, listed once per
// block: interior rows and columns list one entry, the copy.
//
// Each thread issues the loads of all the block's rows before it stores any
// (R * kPer in flight). With one row per block (4 loads per thread between
// barriers) an H100 ran the pad of 16x64x128x128 fp32 in 115 us against 55 us
// for cuDNN's own transposes, and running 8 rows per block one row per phase
// did not help: bytes in flight, not the per-block lists, looked the limit.
// Blocks of kRowsWide rows (16 loads in flight per thread) took it to 93 us
// (session 9), and are the default launch (LEARNABLE_OPS_DIFFCONV_LAYOUT_ROWS=1
// takes one row).
//
// The same kernels, with either side in either layout, also serve as plain
// transposes (padding 0) and as an NCHW-to-NCHW fold.
//
// The bodies are host-compilable, in three phases separated by barriers
// (lists, gather, store): tests/diffconv/diffconv_layout_emulation.cpp replays
// every thread of every block on the CPU.
#pragma once

#include <cstdint>

#include "learnable_ops/lagrange.h"
#include "learnable_ops/macros.h"

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LO_LAYOUT_UNROLL _Pragma("unroll")
#define LO_LAYOUT_NO_UNROLL _Pragma("unroll 1")
#else
#define LO_LAYOUT_UNROLL
#define LO_LAYOUT_NO_UNROLL
#endif

namespace learnable_ops {
namespace diffconv_layout {

constexpr int kTile = 32;      // channels and columns per block (blockDim.x)
constexpr int kTileRows = 8;   // blockDim.y
// Destination rows per block when several are loaded together: 4, or 2 for
// double accumulators (the static shared memory stays under 48 KiB).
template <typename acc_t>
constexpr int kRowsWide = sizeof(acc_t) > 4 ? 2 : 4;
constexpr int kMaxTaps = 32;   // longest list of one axis (host-checked: fits)

// One axis: n image samples, padded = n + 2 * before, extrapolated with
// `order` on nodes `step` apart (as the pad op's polynomial mode).
// copy_only: the image part alone, a plain (transposing) copy: the pad leaves
// the ring unwritten (for learnable_ops/diffconv_fold.h's in-place pad), the
// adjoint reads only the image part (of a gradient folded in place before).
struct Axis {
  int64_t n, padded, before, order, step;
  bool copy_only = false;
};

// kAdjoint false: the pad, from the image (N, C, h.n, w.n) to the padded
// tensor (N, C, h.padded, w.padded); true: its adjoint (the fold), back. Each
// side is NCHW or NHWC (channels_last) contiguous, as the launch says.
template <typename scalar_t>
struct Args {
  const scalar_t* src;
  scalar_t* dst;
  int64_t N, C;
  Axis h, w;
  // Tiles of a destination row: along C, and along its columns; groups of R
  // destination rows per image.
  int64_t c_tiles, w_tiles, row_groups;
};

template <typename acc_t, int R>
struct Shared {
  // The list of the block's destination row q at [q].
  int row_count[R];
  int64_t row_index[R][kMaxTaps];
  acc_t row_weight[R][kMaxTaps];
  int col_count[kTile];
  // Entry k of column t at [k][t]: a warp reading entry k of its 32 columns hits 32 banks.
  int64_t col_index[kMaxTaps][kTile];
  acc_t col_weight[kMaxTaps][kTile];
  // [channel][column], one word of padding per row: a warp walks either index
  // without bank conflicts.
  acc_t tile[R][kTile][kTile + 1];
};

// Calls f(index, weight) for the list of destination index j on one axis: its
// sources (pad) or its preimages (adjoint), in a fixed order.
template <bool kAdjoint, typename F>
LO_HD void visit(const Axis& a, int64_t j, F&& f) {
  if (a.copy_only) {
    const int64_t i = kAdjoint ? j + a.before : j - a.before;
    if (kAdjoint || (i >= 0 && i < a.n)) f(i, 1.0);
  } else if (kAdjoint)
    for_each_polynomial_preimage(j, a.n, a.before, a.padded, a.order, a.step, true, f);
  else
    for_each_polynomial_source(j - a.before, a.n, a.order, a.step, f);
}

// Longest list of an axis: order + 1 at most for the pad; for the adjoint the
// copy plus, for nodes of both edges, every extrapolated sample they feed. The
// host launches only when both axes fit kMaxTaps.
template <bool kAdjoint>
int64_t longest_list(const Axis& a) {
  int64_t longest = 0;
  for (int64_t j = 0; j < (kAdjoint ? a.n : a.padded); ++j) {
    int64_t c = 0;
    visit<kAdjoint>(a, j, [&](int64_t, double) { ++c; });
    if (c > longest) longest = c;
  }
  return longest;
}

// Offset of element (n, c, i, k) of an (N, C, rows, cols) tensor, NCHW or NHWC.
template <bool kChannelsLast>
LO_HD int64_t offset(int64_t n, int64_t c, int64_t i, int64_t k, int64_t C, int64_t rows, int64_t cols) {
  return kChannelsLast ? ((n * rows + i) * cols + k) * C + c : ((n * C + c) * rows + i) * cols + k;
}

// Where a block sits: its first destination row (n, r0), how many rows it
// has (at most R), and its tiles.
struct BlockPos {
  int64_t n, r0, c0, w0;
  int rows;
};

// A thread of a launch: its block's position and its (tx, ty) in the block.
struct Slot {
  BlockPos b;
  int tx, ty;
};

// The position of block `block`, once per thread, in 32-bit divisions: the host
// keeps a launch under 2^31 blocks. Each phase recomputing it in int64 (three
// 64-bit divisions, a software routine on the GPU) cost more instructions per
// thread than its R * kPer elements.
template <bool kAdjoint, int R, typename scalar_t>
LO_HD Slot make_slot(const Args<scalar_t>& a, int64_t block, int tx, int ty) {
  const int64_t rows = kAdjoint ? a.h.n : a.h.padded;
  const uint32_t w_tiles = uint32_t(a.w_tiles), c_tiles = uint32_t(a.c_tiles), groups = uint32_t(a.row_groups);
  uint32_t t = uint32_t(block);
  const uint32_t wt = t % w_tiles;
  t /= w_tiles;
  const uint32_t ct = t % c_tiles;
  t /= c_tiles;
  const int64_t r0 = int64_t(t % groups) * R;
  const int64_t left = rows - r0;
  return {{int64_t(t / groups), r0, int64_t(ct) * kTile, int64_t(wt) * kTile, int(left < R ? left : R)}, tx, ty};
}

// Phase 1: the lists of the block's rows (threads (q, 1)) and its column lists
// (threads (t, 0)).
template <bool kAdjoint, typename scalar_t, typename acc_t, int R>
LO_HD void lists(const Slot& s, const Args<scalar_t>& a, Shared<acc_t, R>& sh) {
  const BlockPos& b = s.b;
  if (s.ty == 1 && s.tx < b.rows) {
    const int q = s.tx;
    int c = 0;
    visit<kAdjoint>(a.h, b.r0 + q, [&](int64_t i, double wgt) {
      sh.row_index[q][c] = i;
      sh.row_weight[q][c] = acc_t(wgt);
      ++c;
    });
    sh.row_count[q] = c;
  }
  if (s.ty == 0) {
    const int64_t j = b.w0 + s.tx;
    int c = 0;
    if (j < (kAdjoint ? a.w.n : a.w.padded))
      visit<kAdjoint>(a.w, j, [&](int64_t i, double wgt) {
        sh.col_index[c][s.tx] = i;
        sh.col_weight[c][s.tx] = acc_t(wgt);
        ++c;
      });
    sh.col_count[s.tx] = c;
  }
}

// Phase 2: the tiles, read with consecutive threads along the source's
// contiguous axis: columns (NCHW) or channels (NHWC). Each thread holds kPer
// values of each of the block's rows. Where every list is the copy (the
// interior) the loads of all the rows are issued together, before any is used;
// the others sum their lists (general_row).
constexpr int kPer = kTile / kTileRows;

// List entries whose loads general_row issues together (times kPer elements).
// Four (a K = 3 ring column's three in one round trip) measured slower than one
// on an H100 (session 12, run 10, 16x64x128x128 fp32 fwd+bwd with the one-pass
// kernels): dense K = 3 / 5 at 1.18x / 1.03x F.conv2d's time against 1.13x /
// 0.97x. The padded path now takes the split pass (cpp/diffconv.cpp,
// pad_layout_split), whose copies never reach general_row.
constexpr int kEntries = 1;

// Row q's sums for a thread's kPer elements of a source of (rows, cols) planes:
// element i, where live, is channel c[i] at tile column t[i]. The loads of
// kEntries (row, column) entries of all kPer elements are issued together,
// before any is summed. Summed one element at a time, each entry a round trip
// to memory, a block with a ring column or row took several times as long as
// an interior one, and the interior blocks waited behind it (session 9, H100:
// the K = 3 pad of 16x64x128x128 fp32 ran 98 us against 55 us for the same
// launch without padding). Each element's sum keeps the lists' order: the
// columns of a row, then the rows.
template <bool kSrcChannelsLast, typename scalar_t, typename acc_t, int R>
LO_HD void general_row(const Args<scalar_t>& a, const Shared<acc_t, R>& sh, const BlockPos& b, int64_t rows,
                       int64_t cols, int q, const int (&c)[kPer], const int (&t)[kPer], const bool (&live)[kPer],
                       acc_t (&acc)[kPer]) {
  int longest = 0;
  LO_LAYOUT_UNROLL
  for (int i = 0; i < kPer; ++i) {
    acc[i] = acc_t(0);
    if (live[i] && sh.col_count[t[i]] > longest) longest = sh.col_count[t[i]];
  }
  for (int r = 0; r < sh.row_count[q]; ++r) {
    const int64_t row = sh.row_index[q][r];
    acc_t line[kPer];
    LO_LAYOUT_UNROLL
    for (int i = 0; i < kPer; ++i) line[i] = acc_t(0);
    for (int k0 = 0; k0 < longest; k0 += kEntries) {
      scalar_t v[kEntries][kPer];
      LO_LAYOUT_UNROLL
      for (int kk = 0; kk < kEntries; ++kk) {
        const int k = k0 + kk;
        LO_LAYOUT_UNROLL
        for (int i = 0; i < kPer; ++i)
          v[kk][i] = live[i] && k < sh.col_count[t[i]]
                         ? a.src[offset<kSrcChannelsLast>(b.n, c[i], row, sh.col_index[k][t[i]], a.C, rows, cols)]
                         : scalar_t(0);
      }
      LO_LAYOUT_UNROLL
      for (int kk = 0; kk < kEntries; ++kk) {
        const int k = k0 + kk;
        LO_LAYOUT_UNROLL
        for (int i = 0; i < kPer; ++i)
          if (live[i] && k < sh.col_count[t[i]]) line[i] += sh.col_weight[k][t[i]] * acc_t(v[kk][i]);
      }
    }
    LO_LAYOUT_UNROLL
    for (int i = 0; i < kPer; ++i) acc[i] += sh.row_weight[q][r] * line[i];
  }
}

template <bool kAdjoint, bool kSrcChannelsLast, typename scalar_t, typename acc_t, int R>
LO_HD void gather(const Slot& s, const Args<scalar_t>& a, Shared<acc_t, R>& sh) {
  const BlockPos& b = s.b;
  const int64_t rows = kAdjoint ? a.h.padded : a.h.n, cols = kAdjoint ? a.w.padded : a.w.n;
  // Element i of a thread: channel c[i] at tile column t[i], staged at
  // tile[q][c[i] - c0][t[i]]; `lines_copy` when every column list of the thread
  // is the copy, so that rows whose list is the copy too load together into v.
  scalar_t v[R][kPer];
  int c[kPer];  // channels (the host keeps C under 2^31)
  int t[kPer];
  bool live[kPer];
  bool lines_copy = true;
  if (kSrcChannelsLast) {
    // Thread channel tx; tile columns ty + kTileRows * i.
    const int64_t channel = b.c0 + s.tx;
    if (channel >= a.C) return;
    LO_LAYOUT_UNROLL
    for (int i = 0; i < kPer; ++i) {
      c[i] = int(channel);
      t[i] = s.ty + kTileRows * i;
      live[i] = sh.col_count[t[i]] > 0;
      lines_copy = lines_copy && sh.col_count[t[i]] == 1;
    }
    LO_LAYOUT_UNROLL
    for (int q = 0; q < R; ++q) {
      if (q < b.rows && lines_copy && sh.row_count[q] == 1) {
        const scalar_t* line = a.src + offset<true>(b.n, channel, sh.row_index[q][0], 0, a.C, rows, cols);
        LO_LAYOUT_UNROLL
        for (int i = 0; i < kPer; ++i) v[q][i] = line[sh.col_index[0][t[i]] * a.C];
      }
    }
  } else {
    // Thread column tx; channels c0 + ty + kTileRows * i.
    if (sh.col_count[s.tx] == 0) return;
    lines_copy = sh.col_count[s.tx] == 1;
    const int64_t plane = rows * cols;
    LO_LAYOUT_UNROLL
    for (int i = 0; i < kPer; ++i) {
      c[i] = int(b.c0) + s.ty + kTileRows * i;
      t[i] = s.tx;
      live[i] = c[i] < a.C;
    }
    LO_LAYOUT_UNROLL
    for (int q = 0; q < R; ++q) {
      if (q < b.rows && lines_copy && sh.row_count[q] == 1) {
        const scalar_t* first = a.src + offset<false>(b.n, c[0], sh.row_index[q][0], sh.col_index[0][s.tx],
                                                      a.C, rows, cols);
        LO_LAYOUT_UNROLL
        for (int i = 0; i < kPer; ++i) v[q][i] = live[i] ? first[kTileRows * i * plane] : scalar_t(0);
      }
    }
  }
  const int c0 = int(b.c0);
  LO_LAYOUT_UNROLL
  for (int q = 0; q < R; ++q) {
    if (q < b.rows && lines_copy && sh.row_count[q] == 1) {
      LO_LAYOUT_UNROLL
      for (int i = 0; i < kPer; ++i)
        if (live[i]) sh.tile[q][c[i] - c0][t[i]] = sh.row_weight[q][0] * sh.col_weight[0][t[i]] * acc_t(v[q][i]);
    }
  }
  acc_t acc[kPer];
  LO_LAYOUT_NO_UNROLL
  for (int q = 0; q < b.rows; ++q) {
    if (lines_copy && sh.row_count[q] == 1) continue;
    general_row<kSrcChannelsLast>(a, sh, b, rows, cols, q, c, t, live, acc);
    LO_LAYOUT_UNROLL
    for (int i = 0; i < kPer; ++i)
      if (live[i]) sh.tile[q][c[i] - c0][t[i]] = acc[i];
  }
}

// Phase 3: the tiles, row by row, written with consecutive threads along the
// destination's contiguous axis.
template <bool kAdjoint, bool kDstChannelsLast, typename scalar_t, typename acc_t, int R>
LO_HD void store(const Slot& s, const Args<scalar_t>& a, const Shared<acc_t, R>& sh) {
  const BlockPos& b = s.b;
  const int64_t rows = kAdjoint ? a.h.n : a.h.padded, cols = kAdjoint ? a.w.n : a.w.padded;
  for (int q = 0; q < b.rows; ++q) {
    const int64_t r = b.r0 + q;
    if (kDstChannelsLast) {
      const int64_t c = b.c0 + s.tx;
      if (c >= a.C) return;
      LO_LAYOUT_UNROLL
      for (int i = 0; i < kPer; ++i) {
        const int t = s.ty + kTileRows * i;
        const int64_t j = b.w0 + t;
        if (j < cols)
          a.dst[offset<true>(b.n, c, r, j, a.C, rows, cols)] = static_cast<scalar_t>(sh.tile[q][s.tx][t]);
      }
    } else {
      const int64_t j = b.w0 + s.tx;
      if (j >= cols) return;
      LO_LAYOUT_UNROLL
      for (int i = 0; i < kPer; ++i) {
        const int cc = s.ty + kTileRows * i;
        const int64_t c = b.c0 + cc;
        if (c < a.C) a.dst[offset<false>(b.n, c, r, j, a.C, rows, cols)] = static_cast<scalar_t>(sh.tile[q][cc][s.tx]);
      }
    }
  }
}

// Blocks of a launch: images times groups of R destination rows times channel
// tiles times column tiles.
template <bool kAdjoint, int R, typename scalar_t>
int64_t plan(Args<scalar_t>& a) {
  a.c_tiles = (a.C + kTile - 1) / kTile;
  a.w_tiles = ((kAdjoint ? a.w.n : a.w.padded) + kTile - 1) / kTile;
  a.row_groups = ((kAdjoint ? a.h.n : a.h.padded) + R - 1) / R;
  return a.N * a.row_groups * a.c_tiles * a.w_tiles;
}

}  // namespace diffconv_layout
}  // namespace learnable_ops
