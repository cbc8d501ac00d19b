// Tensor-core forward of the dense depthwise convolution (half and bfloat16,
// stride 1, kernels up to 17x17), an alternative to tap_forward_kernel in
// cuda/depthwise.cu behind the switch LEARNABLE_OPS_DEPTHWISE_MMA=1 until it
// is measured against it.
//
// The idea: for one channel and one kernel row u, the outputs of a 16 x 8
// tile are a matrix product. With the tile's input rows staged in shared
// memory,
//
//   out[i, j] += sum_m A_u[i, m] * B_u[m, j],
//   A_u[i, m] = x[i + u, j0 + m]           (16 rows, 16 input columns per chunk)
//   B_u[m, j] = w[u, m - j] if 0 <= m - j < kw, else 0   (a banded Toeplitz matrix)
//
// so one mma.m16n8k16 (fp32 accumulators) adds 16 input columns' worth of one
// kernel row to 128 outputs. A column strip of 16 outputs needs input columns
// [j0, j0 + 16 + kw - 1), two chunks of 16 for kw <= 17: 53% of the products
// are the band's zeros for kw = 17, which the tensor cores' throughput (an
// order of magnitude above the FP32 units') more than pays for. B_u depends on
// the channel and u only: a block builds every (u, chunk, n8 tile) fragment of
// its channel once, in shared memory, and then runs several images of that
// channel.
//
// Block: 4 warps over an output tile of 64 x 64; warp w owns the 16-column
// strip j0 = 16 w and the tile's (up to) four 16-row m-tiles. The block stages
// the tile's input rows (64 + kh - 1) and the columns its strips read into
// shared memory (zero outside the image), one image at a time.
//
// The index maps below are shared with the CPU replay in
// tests/depthwise/depthwise_mma_emulation.cpp; the fragment layouts are the
// PTX ISA's for mma.m16n8k16 with 16-bit A and B and f32 C/D.
#pragma once

#include <cstdint>

#include "learnable_ops/macros.h"

namespace learnable_ops {
namespace depthwise_mma {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kTileRows = 64, kTileCols = 64;
constexpr int kMTiles = kTileRows / 16;
constexpr int kMaxKernel = 17;
constexpr int kChunks = 2;                                      // 16-column k chunks per strip
constexpr int kStageCols = kTileCols - 16 + kChunks * 16;       // 80: the last strip's reach
constexpr int kStageRows = kTileRows + kMaxKernel - 1;          // 80
// Row pitch in elements: >= kStageCols, and 2 * kPitch bytes = 16 (mod 128), so
// that the 8 rows of a fragment's 32-bit loads fall in 32 distinct banks.
constexpr int kPitch = 136;
constexpr int kFragments = kMaxKernel * kChunks * 2 * 32;       // B fragments (uint2) of a channel

struct Geometry {
  int64_t N, C, H, W, Ho, Wo;
  int kh, kw, pt, pl;
  int tiles_w, tiles;   // 64 x 64 output tiles per plane: along W, in all
  int64_t n_chunk;      // images per block
  int n_chunks;         // blocks per (channel, tile) along the batch
};

// Fragment maps of mma.m16n8k16 (PTX ISA): lane l, group g = l / 4, t = l % 4.
LO_HD int frag_group(int lane) { return lane >> 2; }
LO_HD int frag_tig(int lane) { return lane & 3; }
// A register r (0..3) holds A[a_row][a_col] (low half) and A[a_row][a_col + 1].
LO_HD int a_row(int lane, int r) { return frag_group(lane) + 8 * (r & 1); }
LO_HD int a_col(int lane, int r) { return 2 * frag_tig(lane) + 8 * (r >> 1); }
// B register r (0..1) holds B[b_k][b_n] (low half) and B[b_k + 1][b_n].
LO_HD int b_k(int lane, int r) { return 2 * frag_tig(lane) + 8 * r; }
LO_HD int b_n(int lane) { return frag_group(lane); }
// C register r (0..3) holds C[c_row][c_col].
LO_HD int c_row(int lane, int r) { return frag_group(lane) + 8 * (r >> 1); }
LO_HD int c_col(int lane, int r) { return 2 * frag_tig(lane) + (r & 1); }

// Index of the B fragment (u, chunk kc, n8 tile nt) of `lane` in a block's table.
LO_HD int fragment_index(int u, int kc, int nt, int lane) { return ((u * kChunks + kc) * 2 + nt) * 32 + lane; }

// The kernel tap that B_u[k][n] of chunk kc and n8 tile nt holds: tap (u, v)
// with v = (16 kc + k) - (8 nt + n), or none (the band's zeros) outside [0, kw).
// Returns the tap's index in the (kh, kw) kernel, flipped (the input gradient's
// kernel) when `flip`, or -1.
LO_HD int band_tap(int u, int k, int n, int kc, int nt, int kh, int kw, bool flip) {
  const int v = 16 * kc + k - 8 * nt - n;
  if (v < 0 || v >= kw) return -1;
  const int t = u * kw + v;
  return flip ? kh * kw - 1 - t : t;
}

// The tile's extent inside the plane, and the staged region.
struct TileExtent {
  int64_t oh0, ow0;       // first output row and column
  int rows, cols;         // valid outputs (<= 64 each)
  int m_tiles;            // 16-row m-tiles with a valid row
  int stage_rows;         // input rows the valid outputs read
  int stage_cols;         // input columns the active strips read (a multiple of 16)
};

LO_HD TileExtent tile_extent(const Geometry& g, int tile) {
  TileExtent e;
  const int th = tile / g.tiles_w, tw = tile - th * g.tiles_w;
  e.oh0 = int64_t(th) * kTileRows;
  e.ow0 = int64_t(tw) * kTileCols;
  const int64_t rows = g.Ho - e.oh0, cols = g.Wo - e.ow0;
  e.rows = int(rows < kTileRows ? rows : kTileRows);
  e.cols = int(cols < kTileCols ? cols : kTileCols);
  e.m_tiles = (e.rows + 15) / 16;
  e.stage_rows = e.rows + g.kh - 1;
  // Strips j0 < cols read columns [j0, j0 + 32).
  e.stage_cols = ((e.cols + 15) / 16) * 16 + 16;
  return e;
}

// Staged element (r, q) is input (oh0 - pt + r, ow0 - pl + q) of the plane; the
// plane offset, or -1 outside the image (a zero).
LO_HD int64_t stage_source(const Geometry& g, const TileExtent& e, int r, int q) {
  const int64_t iy = e.oh0 - g.pt + r, ix = e.ow0 - g.pl + q;
  return (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) ? iy * g.W + ix : -1;
}

// Shared-memory offset of the first element of A register r, for m-tile mt,
// kernel row u, the strip at column j0 and chunk kc, in a stage of row pitch `pitch`.
LO_HD int a_offset(int lane, int r, int mt, int u, int j0, int kc, int pitch = kPitch) {
  return (16 * mt + a_row(lane, r) + u) * pitch + j0 + 16 * kc + a_col(lane, r);
}

// Small planes (at most 16x16 outputs: ConvNeXt's 14x14 and 7x7 stages, 12 of its
// 18 depthwise layers) fill one m-tile and one strip: there each warp runs its
// own images of the block's channel (images n_begin + warp, + 4, ...) in a
// stage of its own, synchronised by the warp alone. Rows: at most 16 + 16;
// columns: the strip's 32; the pitch keeps the bank property above.
constexpr int kSmallPitch = 72;
constexpr int kSmallRows = 16 + kMaxKernel - 1;
LO_HD bool is_small_plane(int64_t Ho, int64_t Wo) { return Ho <= 16 && Wo <= 16; }

// ---------------------------------------------------------------------------
// Weight gradient: dW[u, v] = sum over images and outputs (i, j) of
// g[i, j] * x[i + u - pt, j + v - pl]. Per block (one channel, one 64x64 tile
// of grad_output, a chunk of the batch) it is a GEMM with M = u (two m-tiles,
// kh <= 17), N = v (three n8 tiles, kw <= 17) and K running over the tile's
// input rows r and output columns j:
//
//   A[u, (r, j)] = g[r - u, j]   (zero outside the tile's rows)
//   B[(r, j), v] = x[r, j + v]   (the staged input rows, zero outside the image)
//
// The warps take the input rows r in turn (r = warp mod 4) and the 16-column
// chunks j0 of each; their accumulators are added in warp order through shared
// memory, and each block writes its partial sums (reduced over the blocks in a
// fixed order afterwards, as the direct kernel's).
constexpr int kGradTopRows = 31;                                // zero rows above the g tile (u <= 31)
constexpr int kGradPitch = 72;                                  // >= 64; 144 bytes = 16 (mod 128)
constexpr int kGradStageRows = kGradTopRows + kTileRows + kMaxKernel - 1;  // 111
constexpr int kInputPitch = kTileCols + 24;                     // 88: j < 64 plus v < 24
constexpr int kWgMTiles = 2, kWgNTiles = 3;
constexpr int kWgRowsOut = 16 * kWgMTiles, kWgColsOut = 8 * kWgNTiles;  // 32 x 24 accumulators per warp

// Staged grad_output element (rho, q): g row rho - kGradTopRows of the tile, or
// -1 (a zero) outside the tile's valid rows and columns; the plane offset.
LO_HD int64_t grad_stage_source(const Geometry& g, const TileExtent& e, int rho, int q) {
  const int i = rho - kGradTopRows;
  return (i >= 0 && i < e.rows && q < e.cols) ? (e.oh0 + i) * g.Wo + e.ow0 + q : -1;
}
// Rows and columns of the two stages: every row a valid (u, r) reads.
LO_HD int grad_stage_rows(const Geometry& g, const TileExtent& e) { return e.rows + g.kh - 1 + kGradTopRows; }
LO_HD int grad_stage_cols(const TileExtent& e) { return ((e.cols + 15) / 16) * 16; }
LO_HD int input_stage_cols(const TileExtent& e) { return grad_stage_cols(e) + 24; }

// Shared-memory offsets: A register r of m-tile mt at input row r_in and chunk
// j0 (the element and the next), and B element (k, n) of n8 tile nt.
LO_HD int wg_a_offset(int lane, int r, int mt, int r_in, int j0) {
  return (r_in - (16 * mt + a_row(lane, r)) + kGradTopRows) * kGradPitch + j0 + a_col(lane, r);
}
LO_HD int wg_b_offset(int k, int n, int nt, int r_in, int j0) { return r_in * kInputPitch + j0 + k + 8 * nt + n; }

}  // namespace depthwise_mma
}  // namespace learnable_ops

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace learnable_ops {
namespace depthwise_mma {

template <typename scalar_t>
struct Mma;

template <>
struct Mma<c10::BFloat16> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint2 b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
#endif
  }
};

template <>
struct Mma<c10::Half> {
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint2 b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
#endif
  }
};

// The B fragments of channel c, every (kernel row, chunk, n8 tile) and lane, into
// s_b (fragment_index order), by the whole block; the caller synchronises.
template <typename scalar_t, bool kFlip>
__device__ __forceinline__ void build_fragments(const float* __restrict__ w, int64_t c, const Geometry& g,
                                                uint2* s_b) {
  const int T = g.kh * g.kw;
  for (int idx = threadIdx.x; idx < g.kh * kChunks * 2 * 32; idx += kThreads) {
    const int lane = idx & 31, nt = (idx >> 5) & 1, kc = (idx >> 6) & 1, u = idx >> 7;
    uint32_t regs[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float v[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int t = band_tap(u, b_k(lane, r) + h, b_n(lane), kc, nt, g.kh, g.kw, kFlip);
        v[h] = t < 0 ? 0.f : w[c * T + t];
      }
      regs[r] = Mma<scalar_t>::pack(v[0], v[1]);
    }
    s_b[idx] = make_uint2(regs[0], regs[1]);
  }
}

// grid: x = tile * n_chunks + batch chunk, y = channel. w: (C, kh * kw) fp32;
// bias: (C,) fp32 or null.
template <typename scalar_t, bool kFlip>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                   scalar_t* __restrict__ y, Geometry g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(16) scalar_t s_x[kStageRows * kPitch];
  __shared__ uint2 s_b[kFragments];
  const int64_t c = blockIdx.y;
  const int tile = int(blockIdx.x) / g.n_chunks, chunk = int(blockIdx.x) - tile * g.n_chunks;
  const TileExtent e = tile_extent(g, tile);
  build_fragments<scalar_t, kFlip>(w, c, g, s_b);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int j0 = 16 * warp;
  const bool strip_active = j0 < e.cols;
  const float b0 = bias ? bias[c] : 0.f;
  const int64_t n_begin = int64_t(chunk) * g.n_chunk;
  const int64_t n_end = n_begin + g.n_chunk < g.N ? n_begin + g.n_chunk : g.N;
  const int stage_elems = e.stage_rows * e.stage_cols;
  for (int64_t n = n_begin; n < n_end; ++n) {
    __syncthreads();  // the previous image's reads are done (and the fragments written)
    const scalar_t* xp = x + (n * g.C + c) * g.H * g.W;
    for (int s = threadIdx.x; s < stage_elems; s += kThreads) {
      const int r = s / e.stage_cols, q = s - r * e.stage_cols;
      const int64_t src = stage_source(g, e, r, q);
      s_x[r * kPitch + q] = src < 0 ? scalar_t(0.f) : xp[src];
    }
    __syncthreads();
    if (!strip_active) continue;
    float acc[kMTiles][2][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.f;
    for (int u = 0; u < g.kh; ++u) {
      uint2 b[kChunks][2];
#pragma unroll
      for (int kc = 0; kc < kChunks; ++kc)
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) b[kc][nt] = s_b[fragment_index(u, kc, nt, lane)];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        if (mt < e.m_tiles) {
#pragma unroll
          for (int kc = 0; kc < kChunks; ++kc) {
            uint32_t a[4];
#pragma unroll
            for (int r = 0; r < 4; ++r)
              a[r] = *reinterpret_cast<const uint32_t*>(s_x + a_offset(lane, r, mt, u, j0, kc));
            Mma<scalar_t>::run(acc[mt][0], a, b[kc][0]);
            Mma<scalar_t>::run(acc[mt][1], a, b[kc][1]);
          }
        }
      }
    }
    scalar_t* yp = y + (n * g.C + c) * g.Ho * g.Wo;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      if (mt >= e.m_tiles) continue;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int row = 16 * mt + c_row(lane, r), col = j0 + 8 * nt + c_col(lane, r);
          if (row < e.rows && col < e.cols)
            yp[(e.oh0 + row) * g.Wo + e.ow0 + col] = static_cast<scalar_t>(acc[mt][nt][r] + b0);
        }
    }
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // launched only on devices of compute capability 8.0 and newer
#endif
}

// Small planes (is_small_plane(Ho, Wo)): grid x = batch chunk, y = channel; one tile.
template <typename scalar_t, bool kFlip>
__global__ void __launch_bounds__(kThreads)
    forward_small_kernel(const scalar_t* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                         scalar_t* __restrict__ y, Geometry g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(16) scalar_t s_x[kWarps][kSmallRows * kSmallPitch];
  __shared__ uint2 s_b[kFragments];
  const int64_t c = blockIdx.y;
  const TileExtent e = tile_extent(g, 0);
  build_fragments<scalar_t, kFlip>(w, c, g, s_b);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  scalar_t* stage = s_x[warp];
  const float b0 = bias ? bias[c] : 0.f;
  const int64_t n_begin = int64_t(blockIdx.x) * g.n_chunk;
  const int64_t n_end = n_begin + g.n_chunk < g.N ? n_begin + g.n_chunk : g.N;
  const int stage_elems = e.stage_rows * e.stage_cols;
  for (int64_t n = n_begin + warp; n < n_end; n += kWarps) {
    const scalar_t* xp = x + (n * g.C + c) * g.H * g.W;
    __syncwarp();  // the warp's previous image's reads are done
    for (int s = lane; s < stage_elems; s += 32) {
      const int r = s / e.stage_cols, q = s - r * e.stage_cols;
      const int64_t src = stage_source(g, e, r, q);
      stage[r * kSmallPitch + q] = src < 0 ? scalar_t(0.f) : xp[src];
    }
    __syncwarp();
    float acc[2][4] = {};
    for (int u = 0; u < g.kh; ++u) {
#pragma unroll
      for (int kc = 0; kc < kChunks; ++kc) {
        uint32_t a[4];
#pragma unroll
        for (int r = 0; r < 4; ++r)
          a[r] = *reinterpret_cast<const uint32_t*>(stage + a_offset(lane, r, 0, u, 0, kc, kSmallPitch));
        Mma<scalar_t>::run(acc[0], a, s_b[fragment_index(u, kc, 0, lane)]);
        Mma<scalar_t>::run(acc[1], a, s_b[fragment_index(u, kc, 1, lane)]);
      }
    }
    scalar_t* yp = y + (n * g.C + c) * g.Ho * g.Wo;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = c_row(lane, r), col = 8 * nt + c_col(lane, r);
        if (row < e.rows && col < e.cols) yp[row * g.Wo + col] = static_cast<scalar_t>(acc[nt][r] + b0);
      }
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // launched only on devices of compute capability 8.0 and newer
#endif
}

// grid: x = tile * n_chunks + batch chunk (the part), y = channel.
// partial[(c * parts + part) * kh * kw + u * kw + v], parts = gridDim.x.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    weight_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x, float* __restrict__ partial,
                       Geometry g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(16) scalar_t s_g[kGradStageRows * kGradPitch];
  __shared__ __align__(16) scalar_t s_x[kStageRows * kInputPitch];
  __shared__ float s_red[kWarps][kWgRowsOut * kWgColsOut];
  const int64_t c = blockIdx.y;
  const int tile = int(blockIdx.x) / g.n_chunks, chunk = int(blockIdx.x) - tile * g.n_chunks;
  const TileExtent e = tile_extent(g, tile);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g_rows = grad_stage_rows(g, e), g_cols = grad_stage_cols(e), x_cols = input_stage_cols(e);
  float acc[kWgMTiles][kWgNTiles][4];
#pragma unroll
  for (int mt = 0; mt < kWgMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < kWgNTiles; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.f;
  const int64_t n_begin = int64_t(chunk) * g.n_chunk;
  const int64_t n_end = n_begin + g.n_chunk < g.N ? n_begin + g.n_chunk : g.N;
  for (int64_t n = n_begin; n < n_end; ++n) {
    __syncthreads();  // the previous image's reads are done
    const int64_t plane = n * g.C + c;
    const scalar_t* gp = grad + plane * g.Ho * g.Wo;
    const scalar_t* xp = x + plane * g.H * g.W;
    for (int s = threadIdx.x; s < g_rows * g_cols; s += kThreads) {
      const int rho = s / g_cols, q = s - rho * g_cols;
      const int64_t src = grad_stage_source(g, e, rho, q);
      s_g[rho * kGradPitch + q] = src < 0 ? scalar_t(0.f) : gp[src];
    }
    for (int s = threadIdx.x; s < e.stage_rows * x_cols; s += kThreads) {
      const int r = s / x_cols, q = s - r * x_cols;
      const int64_t src = stage_source(g, e, r, q);
      s_x[r * kInputPitch + q] = src < 0 ? scalar_t(0.f) : xp[src];
    }
    __syncthreads();
    for (int r_in = warp; r_in < e.stage_rows; r_in += kWarps) {
      for (int j0 = 0; j0 < e.cols; j0 += 16) {
        uint32_t a[kWgMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kWgMTiles; ++mt)
#pragma unroll
          for (int r = 0; r < 4; ++r)
            a[mt][r] = *reinterpret_cast<const uint32_t*>(s_g + wg_a_offset(lane, r, mt, r_in, j0));
#pragma unroll
        for (int nt = 0; nt < kWgNTiles; ++nt) {
          uint32_t b[2];
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int k = b_k(lane, r);
            const unsigned short lo = *reinterpret_cast<const unsigned short*>(s_x + wg_b_offset(k, b_n(lane), nt, r_in, j0));
            const unsigned short hi =
                *reinterpret_cast<const unsigned short*>(s_x + wg_b_offset(k + 1, b_n(lane), nt, r_in, j0));
            b[r] = uint32_t(lo) | (uint32_t(hi) << 16);
          }
#pragma unroll
          for (int mt = 0; mt < kWgMTiles; ++mt) Mma<scalar_t>::run(acc[mt][nt], a[mt], make_uint2(b[0], b[1]));
        }
      }
    }
  }
#pragma unroll
  for (int mt = 0; mt < kWgMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < kWgNTiles; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        s_red[warp][(16 * mt + c_row(lane, r)) * kWgColsOut + 8 * nt + c_col(lane, r)] = acc[mt][nt][r];
  __syncthreads();
  const int T = g.kh * g.kw;
  float* out = partial + (c * int64_t(gridDim.x) + blockIdx.x) * T;
  for (int idx = threadIdx.x; idx < T; idx += kThreads) {
    const int u = idx / g.kw, v = idx - u * g.kw, cell = u * kWgColsOut + v;
    float sum = s_red[0][cell];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) sum += s_red[w][cell];
    out[idx] = sum;
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // launched only on devices of compute capability 8.0 and newer
#endif
}

}  // namespace depthwise_mma
}  // namespace learnable_ops
#endif
