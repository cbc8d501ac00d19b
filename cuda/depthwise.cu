// depthwise_conv2d and the tap-list conv core on CUDA (the sparse DCLS path in
// cuda/dcls_sparse.cu runs on the same kernels).
//
// Design: a tiled shared-memory direct convolution.
// * Forward: a block computes a tile of one (n, c) plane (several small planes
//   per block when the plane is small); the input tile plus its halo and the
//   channel's taps are staged in shared memory as fp32 (fp64 for double).
//   Each thread owns one output column and kRows consecutive output rows, so a
//   warp reads consecutive shared-memory words (no bank conflicts). For dense
//   kernels with stride 1 along H the thread keeps a kRows-deep register window
//   of its input column and slides it down the kernel rows: one shared load
//   per kRows FMAs.
// * Input gradient: stride 1 is the same kernel on grad_output with the taps
//   flipped; other strides use the transposed form, a gather over the taps that
//   land on each input element (no atomics).
// * Weight gradient: every block correlates a tile of grad_output with the
//   matching input tile for up to kTapsPerBlock taps, summed over a chunk of
//   the batch in registers, and writes per-block partial sums; a second kernel
//   adds the partials of each (channel, tap) in a fixed order. Deterministic,
//   no atomics.
#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/env_switch.h"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/tap_conv.h"
#include "depthwise_mma.cuh"

namespace learnable_ops {
namespace {

// Output rows per thread in the forward kernel. 7: each kernel row's two
// shared loads (tap, next input row) serve 7 FMAs, and the ConvNeXt planes
// (56, 28, 14, 7 rows) split into whole row groups.
constexpr int kRows = 7;
constexpr int kThreads = 256;
constexpr int kTapsPerThread = 4;     // weight gradient: taps per thread
constexpr int kTapsPerBlock = kThreads * kTapsPerThread;
constexpr size_t kSmemLimit = 48 * 1024;

struct Geo {
  int64_t N, C, H, W, Ho, Wo;
  int kh, kw, sh, sw, pt, pl, T;
};

Geo make_geo(const TapConvGeometry& g, int64_t T) {
  TORCH_CHECK(g.kh <= 4096 && g.kw <= 4096 && g.pt <= 4096 && g.pl <= 4096 && T < (int64_t(1) << 30),
              "tap conv: kernel extent or padding too large for the CUDA kernels");
  return {g.N, g.C, g.H, g.W, g.Ho, g.Wo, int(g.kh), int(g.kw), int(g.sh), int(g.sw), int(g.pt), int(g.pl), int(T)};
}

int next_pow2(int64_t v) {
  int p = 1;
  while (p < v && p < (1 << 20)) p <<= 1;
  return p;
}

// ---------------------------------------------------------------------------
// Forward (and stride-1 input gradient).
// ---------------------------------------------------------------------------
struct FwdTile {
  int bx, by, bz;       // threads: columns, row groups, planes
  int th, tw, ih, iw;   // output tile and input tile (with halo)
  int tiles_h, tiles_w;
  size_t plane_bytes;   // shared memory per plane
};

size_t fwd_plane_bytes(int ih, int iw, const Geo& g, size_t acc_size, bool dense) {
  return (size_t(ih) * iw + g.T) * acc_size + (dense ? 0 : size_t(g.T) * sizeof(int));
}

// Planes per block; blockDim.z is at most 64.
int fwd_planes_per_block(const FwdTile& t, int64_t planes) {
  return int(std::max<int64_t>(1, std::min<int64_t>({int64_t(kThreads / (t.bx * t.by)), int64_t(64),
                                                     int64_t(kSmemLimit / t.plane_bytes), planes})));
}

// Row pitch (>= the tile width) of the forward's input tile. Thread (x, y, z)
// reads element z * (ih * pitch + T) + y * kRows * sh * pitch + x * sw (plus a
// term common to the block), so where a warp spans several row groups or
// planes (narrow planes) a pitch equal to the tile width puts several of its
// words in one bank (4 for 7x7 planes and a 17x17 kernel). Banks depend on
// the pitch mod 32: this takes the pitch in [iw, iw + kMaxFwdPad] whose warps'
// busiest banks hold the fewest words on average (the smallest such pitch),
// among the pitches whose tile fits; the planes per block follow the pitch.
// The bound keeps narrow tiles narrow: every padding column is loaded too.
constexpr int kMaxFwdPad = 8;

void choose_fwd_pitch(FwdTile& t, const Geo& g, size_t acc_size, bool dense, int64_t planes) {
  constexpr int kWarp = 32, kBanks = 32;
  const int natural = t.iw;
  FwdTile best = t;
  int64_t best_words = -1, best_warps = 1;
  for (int pitch = natural; pitch <= natural + kMaxFwdPad; ++pitch) {
    FwdTile c = t;
    c.iw = pitch;
    c.plane_bytes = fwd_plane_bytes(c.ih, pitch, g, acc_size, dense);
    if (c.plane_bytes > kSmemLimit) break;  // grows with the pitch
    c.bz = fwd_planes_per_block(c, planes);
    const int64_t plane_elems = int64_t(c.ih) * pitch + g.T;
    const int threads = c.bx * c.by * c.bz;
    int64_t words = 0, warps = 0;
    for (int first = 0; first < threads; first += kWarp, ++warps) {
      int per_bank[kBanks] = {};
      for (int tid = first; tid < std::min(threads, first + kWarp); ++tid) {
        const int x = tid % c.bx, y = (tid / c.bx) % c.by, z = tid / (c.bx * c.by);
        ++per_bank[(z * plane_elems + int64_t(y) * kRows * g.sh * pitch + int64_t(x) * g.sw) % kBanks];
      }
      words += *std::max_element(per_bank, per_bank + kBanks);
    }
    if (best_words < 0 || words * best_warps < best_words * warps) {
      best = c;
      best_words = words;
      best_warps = warps;
    }
  }
  t = best;
}

FwdTile fwd_tile(const Geo& g, size_t acc_size, bool dense) {
  FwdTile t;
  t.bx = std::min(32, next_pow2(g.Wo));
  t.by = std::min<int>(next_pow2((g.Ho + kRows - 1) / kRows), kThreads / t.bx);
  for (;;) {
    t.th = t.by * kRows;
    t.tw = t.bx;
    t.ih = (t.th - 1) * g.sh + g.kh;
    t.iw = (t.tw - 1) * g.sw + g.kw;
    t.plane_bytes = fwd_plane_bytes(t.ih, t.iw, g, acc_size, dense);
    if (t.plane_bytes <= kSmemLimit || t.by == 1) break;
    t.by /= 2;
  }
  TORCH_CHECK(t.plane_bytes <= kSmemLimit, "depthwise conv: kernel ", g.kh, "x", g.kw, " with stride ", g.sh,
              " needs more shared memory than the CUDA kernel supports");
  // The same number of row tiles, evened out: no thread computes row groups
  // past the plane (37 rows: one tile of 6 row groups, not 8). The tile only shrinks.
  const int64_t row_groups = (g.Ho + kRows - 1) / kRows;
  const int64_t tiles_h = (row_groups + t.by - 1) / t.by;
  t.by = int((row_groups + tiles_h - 1) / tiles_h);
  t.th = t.by * kRows;
  t.ih = (t.th - 1) * g.sh + g.kh;
  t.plane_bytes = fwd_plane_bytes(t.ih, t.iw, g, acc_size, dense);
  const int64_t planes = g.N * g.C;
  t.bz = fwd_planes_per_block(t, planes);
  choose_fwd_pitch(t, g, acc_size, dense, planes);
  t.tiles_h = int((g.Ho + t.th - 1) / t.th);
  t.tiles_w = int((g.Wo + t.tw - 1) / t.tw);
  TORCH_CHECK(int64_t(t.tiles_h) * t.tiles_w <= 65535, "depthwise conv: output plane ", g.Ho, "x", g.Wo,
              " is too large for the CUDA tiling");
  return t;
}

template <typename scalar_t, typename acc_t, bool kDense, bool kUnitStrideH, bool kFlip>
__global__ void __launch_bounds__(kThreads)
    tap_forward_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ w,
                       const int64_t* __restrict__ off, int64_t off_cstride, const acc_t* __restrict__ bias,
                       scalar_t* __restrict__ y, Geo g, FwdTile t) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int plane_elems = t.ih * t.iw;
  acc_t* s_in = reinterpret_cast<acc_t*>(smem_raw) + size_t(threadIdx.z) * (plane_elems + g.T);
  acc_t* s_w = s_in + plane_elems;
  int* s_off = reinterpret_cast<int*>(reinterpret_cast<acc_t*>(smem_raw) + size_t(t.bz) * (plane_elems + g.T)) +
               size_t(threadIdx.z) * g.T;

  const int64_t planes = g.N * g.C;
  const int64_t p = int64_t(blockIdx.x) * t.bz + threadIdx.z;
  const bool active = p < planes;
  const int tile_h = blockIdx.y / t.tiles_w, tile_w = blockIdx.y % t.tiles_w;
  const int64_t oh0 = int64_t(tile_h) * t.th, ow0 = int64_t(tile_w) * t.tw;
  const int64_t c = p % g.C;
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int nthreads = blockDim.x * blockDim.y;

  if (active) {
    const scalar_t* xp = x + p * g.H * g.W;
    const int64_t iy0 = oh0 * g.sh - g.pt, ix0 = ow0 * g.sw - g.pl;
    // Tile element e = r * t.iw + col is input (iy0 + r, ix0 + col), at offset
    // src in the plane; it lies inside the input for r in [r_lo, r_hi) and col in
    // [c_lo, c_hi). (r, col, src) are stepped without a division or a
    // multiplication per element: narrow planes give each plane few threads
    // and many (mostly halo) elements.
    const auto in_tile = [](int64_t v, int extent) { return int(v < 0 ? 0 : (v > extent ? extent : v)); };
    const int r_lo = in_tile(-iy0, t.ih), r_hi = in_tile(g.H - iy0, t.ih);
    const int c_lo = in_tile(-ix0, t.iw), c_hi = in_tile(g.W - ix0, t.iw);
    const int step_r = nthreads / t.iw, step_c = nthreads - step_r * t.iw;
    int r = tid / t.iw, col = tid - r * t.iw;
    int64_t src = (iy0 + r) * g.W + ix0 + col;
    const int64_t src_step = int64_t(step_r) * g.W + step_c, src_wrap = g.W - t.iw;
    for (int e = tid; e < plane_elems; e += nthreads) {
      s_in[e] = (r >= r_lo && r < r_hi && col >= c_lo && col < c_hi) ? static_cast<acc_t>(xp[src]) : acc_t(0);
      r += step_r;
      col += step_c;
      src += src_step;
      if (col >= t.iw) {
        col -= t.iw;
        ++r;
        src += src_wrap;
      }
    }
    for (int k = tid; k < g.T; k += nthreads) {
      if (kDense) {
        s_w[k] = w[c * g.T + (kFlip ? g.T - 1 - k : k)];
      } else {
        s_w[k] = w[c * g.T + k];
        const int64_t* o = off + c * off_cstride + 2 * int64_t(k);
        s_off[k] = int(o[0]) * t.iw + int(o[1]);
      }
    }
  }
  __syncthreads();
  if (!active) return;

  const int j = threadIdx.x;
  const int i0 = threadIdx.y * kRows;
  const acc_t b0 = bias ? bias[c] : acc_t(0);
  acc_t acc[kRows];
#pragma unroll
  for (int q = 0; q < kRows; ++q) acc[q] = b0;

  if (kDense && kUnitStrideH) {
    for (int v = 0; v < g.kw; ++v) {
      // A circular window: at kernel row u, win[r % kRows] holds input row
      // i0 + r for r in [u, u + kRows); after row u, slot u % kRows takes row
      // i0 + u + kRows. Unrolled by kRows, every slot index is a constant, and
      // the tap and the next input row are walked by pointer. The FMAs are
      // those of a shifting window, in the same order.
      const acc_t* tap = s_w + v;                                     // tap (u, v)
      const acc_t* next = s_in + (i0 + kRows) * t.iw + j * g.sw + v;  // input row i0 + u + kRows
      acc_t win[kRows];
#pragma unroll
      for (int q = 0; q < kRows; ++q) win[q] = s_in[(i0 + q) * t.iw + j * g.sw + v];
      int u = 0;
      // Whole groups of kRows rows that all load a next row (u + kRows - 1 <= kh - 2).
      for (; u + kRows < g.kh; u += kRows) {
#pragma unroll
        for (int du = 0; du < kRows; ++du) {
          const acc_t wt = *tap;
          tap += g.kw;
#pragma unroll
          for (int q = 0; q < kRows; ++q) acc[q] += wt * win[(q + du) % kRows];
          win[du] = *next;
          next += t.iw;
        }
      }
      // The last 1..kRows rows; the very last loads nothing.
      const int rest = g.kh - u;
#pragma unroll
      for (int du = 0; du < kRows; ++du) {
        if (du < rest) {
          const acc_t wt = *tap;
          tap += g.kw;
#pragma unroll
          for (int q = 0; q < kRows; ++q) acc[q] += wt * win[(q + du) % kRows];
          if (du + 1 < rest) {
            win[du] = *next;
            next += t.iw;
          }
        }
      }
    }
  } else {
    const int row_step = g.sh * t.iw;
    for (int k = 0; k < g.T; ++k) {
      const int so = kDense ? (k / g.kw) * t.iw + (k % g.kw) : s_off[k];
      const acc_t wt = s_w[k];
      const acc_t* base = s_in + so + j * g.sw + i0 * row_step;
#pragma unroll
      for (int q = 0; q < kRows; ++q) acc[q] += wt * base[q * row_step];
    }
  }

  const int64_t oj = ow0 + j;
  if (oj >= g.Wo) return;
  scalar_t* yp = y + p * g.Ho * g.Wo;
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
    const int64_t oi = oh0 + i0 + q;
    if (oi < g.Ho) yp[oi * g.Wo + oj] = static_cast<scalar_t>(acc[q]);
  }
}

// The tensor-core kernels (cuda/depthwise_mma.cuh: the forward, which also runs
// the stride-1 input gradient, and the weight gradient): half and bfloat16,
// dense kernels up to 17x17, stride 1, compute capability 8.0+. By default they
// run on output planes of more than 64 pixels: on an H100 (torch 2.11, bf16,
// 17x17, ConvNeXt-T's stages) they took 0.36/0.61/0.50x the direct kernels'
// forward time at 56x56/28x28/14x14 and 0.48/0.69/0.76x the fwd+bwd, but
// 1.13x/1.25x at 7x7, where the direct kernels stay. The environment switch
// LEARNABLE_OPS_DEPTHWISE_MMA (read at every call) overrides: 0 never, 1 for
// every plane (the tests use it to reach the small-plane kernel).
bool mma_applies(const at::Tensor& x, const Geo& g, bool dense) {
  const std::optional<bool> forced = env_override("LEARNABLE_OPS_DEPTHWISE_MMA");
  if (!forced.value_or(g.Ho * g.Wo > 64)) return false;
  if (!dense || g.sh != 1 || g.sw != 1 || g.kh > depthwise_mma::kMaxKernel || g.kw > depthwise_mma::kMaxKernel)
    return false;
  if (x.scalar_type() != at::kHalf && x.scalar_type() != at::kBFloat16) return false;
  // Channels are the grid's y; tiles times batch chunks (at most N) its x.
  const int64_t tiles = ((g.Ho + depthwise_mma::kTileRows - 1) / depthwise_mma::kTileRows) *
                        ((g.Wo + depthwise_mma::kTileCols - 1) / depthwise_mma::kTileCols);
  if (g.C > 65535 || tiles * std::max<int64_t>(g.N, 1) > int64_t(INT32_MAX)) return false;
  int device = 0, major = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 8;
}

// The tensor-core kernels' geometry: 64x64 tiles, and blocks of one channel and
// one tile that run a chunk of the batch (sharing the channel's fragment table,
// or accumulating the weight gradient): about `target_blocks` blocks in all
// where the batch allows.
depthwise_mma::Geometry mma_geometry(const Geo& g, int64_t target_blocks) {
  namespace dm = depthwise_mma;
  dm::Geometry m{g.N, g.C, g.H, g.W, g.Ho, g.Wo, g.kh, g.kw, g.pt, g.pl, 0, 0, 1, 1};
  const int64_t tiles_w = (g.Wo + dm::kTileCols - 1) / dm::kTileCols;
  const int64_t tiles = ((g.Ho + dm::kTileRows - 1) / dm::kTileRows) * tiles_w;  // bounded by mma_applies
  m.tiles_w = int(tiles_w);
  m.tiles = int(tiles);
  const int64_t per_image = tiles * g.C;
  const int64_t want_chunks =
      std::max<int64_t>(1, std::min<int64_t>(g.N, (target_blocks + per_image - 1) / per_image));
  m.n_chunk = (g.N + want_chunks - 1) / want_chunks;
  m.n_chunks = int((g.N + m.n_chunk - 1) / m.n_chunk);
  return m;
}

void launch_mma_forward(const at::Tensor& x, const at::Tensor& weights, const at::Tensor& bias_acc, at::Tensor& out,
                        const Geo& g, bool flip) {
  namespace dm = depthwise_mma;
  // Small planes: each block's 4 warps share the batch chunk (at least 4 images each where the batch allows).
  const bool small = dm::is_small_plane(g.Ho, g.Wo);
  dm::Geometry m = mma_geometry(g, small ? 2048 : 4096);
  if (small && m.n_chunk < dm::kWarps) {
    m.n_chunk = std::min<int64_t>(g.N, dm::kWarps);
    m.n_chunks = int((g.N + m.n_chunk - 1) / m.n_chunk);
  }
  const dim3 grid(unsigned(small ? m.n_chunks : m.tiles * m.n_chunks), unsigned(g.C));
  const float* bp = bias_acc.defined() ? bias_acc.const_data_ptr<float>() : nullptr;
  auto go = [&](auto kernel, auto* xp, auto* yp) {
    kernel<<<grid, dm::kThreads, 0, current_stream()>>>(xp, weights.const_data_ptr<float>(), bp, yp, m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  auto launch = [&](auto* xp, auto* yp) {
    using scalar_t = std::remove_const_t<std::remove_pointer_t<decltype(xp)>>;
    if (small) {
      if (flip) go(dm::forward_small_kernel<scalar_t, true>, xp, yp);
      else go(dm::forward_small_kernel<scalar_t, false>, xp, yp);
    } else {
      if (flip) go(dm::forward_kernel<scalar_t, true>, xp, yp);
      else go(dm::forward_kernel<scalar_t, false>, xp, yp);
    }
  };
  if (x.scalar_type() == at::kHalf)
    launch(x.const_data_ptr<at::Half>(), out.mutable_data_ptr<at::Half>());
  else
    launch(x.const_data_ptr<at::BFloat16>(), out.mutable_data_ptr<at::BFloat16>());
}

// The tensor-core weight gradient: partial (C, tiles * n_chunks, kh * kw) fp32.
template <typename scalar_t>
void launch_mma_weight_grad(const at::Tensor& grad_out, const at::Tensor& x, at::Tensor& partial,
                            const depthwise_mma::Geometry& m) {
  if constexpr (std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>) {
    const dim3 grid(unsigned(m.tiles * m.n_chunks), unsigned(m.C));
    depthwise_mma::weight_grad_kernel<scalar_t><<<grid, depthwise_mma::kThreads, 0, current_stream()>>>(
        grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), partial.mutable_data_ptr<float>(), m);
  } else {
    TORCH_CHECK(false, "depthwise conv: the tensor-core weight gradient takes half or bfloat16");
  }
}

void launch_forward(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& weights,
                    const at::Tensor& bias_acc, at::Tensor& out, const Geo& g, bool dense, bool flip) {
  if (mma_applies(x, g, dense)) {
    launch_mma_forward(x, weights, bias_acc, out, g, flip);
    return;
  }
  const bool unit_h = g.sh == 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tap_conv_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const FwdTile t = fwd_tile(g, sizeof(acc_t), dense);
    const dim3 block(t.bx, t.by, t.bz);
    const int64_t groups = (g.N * g.C + t.bz - 1) / t.bz;
    TORCH_CHECK(groups <= int64_t(INT32_MAX), "depthwise conv: too many planes for one launch");
    const dim3 grid(unsigned(groups), unsigned(t.tiles_h * t.tiles_w));
    const size_t smem = t.plane_bytes * t.bz;
    const acc_t* bp = bias_acc.defined() ? bias_acc.const_data_ptr<acc_t>() : nullptr;
    const int64_t* op = dense ? nullptr : offsets.const_data_ptr<int64_t>();
    const int64_t ocs = dense ? 0 : (offsets.size(0) == 1 ? 0 : offsets.size(1) * 2);
    auto go = [&](auto kernel) {
      kernel<<<grid, block, smem, current_stream()>>>(x.const_data_ptr<scalar_t>(), weights.const_data_ptr<acc_t>(),
                                                      op, ocs, bp, out.mutable_data_ptr<scalar_t>(), g, t);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (!dense) {
      go(tap_forward_kernel<scalar_t, acc_t, false, false, false>);
    } else if (unit_h) {
      if (flip) go(tap_forward_kernel<scalar_t, acc_t, true, true, true>);
      else go(tap_forward_kernel<scalar_t, acc_t, true, true, false>);
    } else {
      if (flip) go(tap_forward_kernel<scalar_t, acc_t, true, false, true>);
      else go(tap_forward_kernel<scalar_t, acc_t, true, false, false>);
    }
  });
}

// ---------------------------------------------------------------------------
// Input gradient, transposed form (any stride and padding): one thread per
// input element gathers the taps that read it.
// ---------------------------------------------------------------------------
template <typename scalar_t, typename acc_t, bool kDense>
__global__ void __launch_bounds__(kThreads)
    tap_backward_input_kernel(const scalar_t* __restrict__ go, const acc_t* __restrict__ w,
                              const int64_t* __restrict__ off, int64_t off_cstride, scalar_t* __restrict__ gx,
                              Geo g) {
  const int64_t total = g.N * g.C * g.H * g.W;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ix = e % g.W, iy = (e / g.W) % g.H, p = e / (g.W * g.H);
    const int64_t c = p % g.C;
    const scalar_t* gp = go + p * g.Ho * g.Wo;
    acc_t acc = 0;
    for (int k = 0; k < g.T; ++k) {
      int64_t u, v;
      if (kDense) {
        u = k / g.kw;
        v = k % g.kw;
      } else {
        u = off[c * off_cstride + 2 * k];
        v = off[c * off_cstride + 2 * k + 1];
      }
      const int64_t ny = iy + g.pt - u, nx = ix + g.pl - v;
      if (ny < 0 || nx < 0 || ny % g.sh != 0 || nx % g.sw != 0) continue;
      const int64_t oi = ny / g.sh, oj = nx / g.sw;
      if (oi >= g.Ho || oj >= g.Wo) continue;
      acc += w[c * g.T + k] * static_cast<acc_t>(gp[oi * g.Wo + oj]);
    }
    gx[e] = static_cast<scalar_t>(acc);
  }
}

// ---------------------------------------------------------------------------
// Weight gradient: per-block partial sums, then a fixed-order reduction.
// ---------------------------------------------------------------------------
struct CorrTile {
  int th, tw, ih, iw, tiles_h, tiles_w, tap_chunks, batch_chunks, batch_per_chunk;
  size_t smem;
  // Dense kernels with stride 1 along W: groups of kGroupTaps taps adjacent
  // along a kernel row, (kh * ceil(kw / 4)) groups, each split over `slices`
  // threads (interleaved tile rows).
  bool grouped;
  int groups_per_row, groups, slices;
};

constexpr int kGroupTaps = 4;
constexpr int kRowSlack = 2 * kGroupTaps;  // shared words past the input tile a group's window may read

// Row pitch (>= iw) of the input tile for tap_correlation_grouped_kernel.
// Lane (slice, group) reads word (slice * sh + u) * pitch + v0 (+ a term
// common to the warp), v0 a multiple of kGroupTaps, so with pitch = iw many
// lanes of a warp hit the same bank (6 distinct words in one bank for a 17x17
// kernel on a 56-wide tile). Banks depend on pitch mod 32 only: this takes the
// pitch in [iw, iw + 32) with the fewest distinct words in the busiest bank,
// summed over the warps (the smallest such pitch).
int grouped_row_pitch(const CorrTile& t, int sh, int iw) {
  constexpr int kWarp = 32, kWarps = kThreads / kWarp, kBanks = 32;
  std::array<std::pair<int64_t, int64_t>, kWarp> cells[kWarps];  // (tile row, column) of each lane's word
  int count[kWarps] = {};
  for (int w = 0; w < kWarps; ++w) {
    for (int lane = 0; lane < kWarp; ++lane) {
      const int tid = w * kWarp + lane;
      if (tid >= t.groups * t.slices) break;
      const int grp = tid % t.groups, slice = tid / t.groups;
      cells[w][count[w]++] = {int64_t(slice) * sh + grp / t.groups_per_row,
                              int64_t(grp % t.groups_per_row) * kGroupTaps};
    }
    // Lanes that read one word are a broadcast, not a conflict.
    std::sort(cells[w].begin(), cells[w].begin() + count[w]);
    count[w] = int(std::unique(cells[w].begin(), cells[w].begin() + count[w]) - cells[w].begin());
  }
  int best_pitch = iw;
  int64_t best_cost = -1;
  for (int pitch = iw; pitch < iw + kBanks; ++pitch) {
    int64_t cost = 0;
    for (int w = 0; w < kWarps; ++w) {
      int words[kBanks] = {};
      for (int e = 0; e < count[w]; ++e) ++words[(cells[w][e].first * pitch + cells[w][e].second) % kBanks];
      cost += *std::max_element(words, words + kBanks);
    }
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best_pitch = pitch;
    }
  }
  return best_pitch;
}

CorrTile corr_tile(const Geo& g, size_t acc_size, bool dense) {
  CorrTile t;
  t.groups_per_row = (g.kw + kGroupTaps - 1) / kGroupTaps;
  t.groups = g.kh * t.groups_per_row;
  t.grouped = dense && g.sw == 1 && t.groups <= kThreads;
  t.slices = t.grouped ? kThreads / t.groups : 1;
  const size_t extra = t.grouped ? (size_t(kRowSlack) + size_t(t.slices) * t.groups * kGroupTaps) * acc_size : 0;
  t.tw = int(std::min<int64_t>(g.Wo, 64));
  t.th = int(std::min<int64_t>(g.Ho, std::max(1, 2048 / t.tw)));
  const int taps_in_block = std::min(g.T, kTapsPerBlock);
  for (;;) {
    t.ih = (t.th - 1) * g.sh + g.kh;
    t.iw = (t.tw - 1) * g.sw + g.kw;
    t.smem = (size_t(t.th) * t.tw + size_t(t.ih) * t.iw) * acc_size + (dense ? 0 : taps_in_block * sizeof(int)) + extra;
    if (t.smem <= kSmemLimit) break;
    if (t.th > 1) t.th = (t.th + 1) / 2;
    else if (t.tw > 1) t.tw = (t.tw + 1) / 2;
    else break;
  }
  TORCH_CHECK(t.smem <= kSmemLimit, "depthwise conv weight gradient: kernel ", g.kh, "x", g.kw,
              " needs more shared memory than the CUDA kernel supports");
  t.tiles_h = int((g.Ho + t.th - 1) / t.th);
  t.tiles_w = int((g.Wo + t.tw - 1) / t.tw);
  // The same number of tiles, evened out: the last tile no longer computes
  // rows and columns past the plane (56 rows were 36 + 36, now 28 + 28).
  // The tiles only shrink, so the shared memory still fits.
  t.th = int((g.Ho + t.tiles_h - 1) / t.tiles_h);
  t.tw = int((g.Wo + t.tiles_w - 1) / t.tiles_w);
  t.ih = (t.th - 1) * g.sh + g.kh;
  t.iw = (t.tw - 1) * g.sw + g.kw;
  t.smem = (size_t(t.th) * t.tw + size_t(t.ih) * t.iw) * acc_size + (dense ? 0 : taps_in_block * sizeof(int)) + extra;
  if (t.grouped) {
    // A wider row pitch only adds loaded columns that no tap sums.
    const int pitch = grouped_row_pitch(t, g.sh, t.iw);
    const size_t padded = t.smem + size_t(t.ih) * (pitch - t.iw) * acc_size;
    if (padded <= kSmemLimit) {
      t.iw = pitch;
      t.smem = padded;
    }
  }
  t.tap_chunks = (g.T + kTapsPerBlock - 1) / kTapsPerBlock;
  const int64_t base = g.C * t.tiles_h * t.tiles_w * t.tap_chunks;
  const int64_t want = 4 * int64_t(multiprocessor_count());
  t.batch_chunks = int(std::max<int64_t>(1, std::min<int64_t>(g.N, (want + base - 1) / base)));
  t.batch_per_chunk = int((g.N + t.batch_chunks - 1) / t.batch_chunks);
  t.batch_chunks = int((g.N + t.batch_per_chunk - 1) / t.batch_per_chunk);
  TORCH_CHECK(int64_t(t.tiles_h) * t.tiles_w * t.batch_chunks <= 65535 && t.tap_chunks <= 65535,
              "depthwise conv weight gradient: input too large for the CUDA tiling");
  return t;
}

// Stages one plane's grad_output tile (zero past the plane) and the matching
// input tile with its halo (zero outside the input) for the weight gradient.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_correlation_tiles(const scalar_t* __restrict__ gp,
                                                       const scalar_t* __restrict__ xp, acc_t* s_go, acc_t* s_x,
                                                       int64_t oh0, int64_t ow0, const Geo& g, const CorrTile& t) {
  for (int e = threadIdx.x; e < t.th * t.tw; e += blockDim.x) {
    const int r = e / t.tw, col = e - r * t.tw;
    const int64_t oi = oh0 + r, oj = ow0 + col;
    s_go[e] = (oi < g.Ho && oj < g.Wo) ? static_cast<acc_t>(gp[oi * g.Wo + oj]) : acc_t(0);
  }
  const int64_t iy0 = oh0 * g.sh - g.pt, ix0 = ow0 * g.sw - g.pl;
  for (int e = threadIdx.x; e < t.ih * t.iw; e += blockDim.x) {
    const int r = e / t.iw, col = e - r * t.iw;
    const int64_t iy = iy0 + r, ix = ix0 + col;
    s_x[e] = (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) ? static_cast<acc_t>(xp[iy * g.W + ix]) : acc_t(0);
  }
}

// grid: x = channel, y = tile * batch_chunks + batch chunk, z = tap chunk.
// partial[(c * parts + part) * T + k], part = y.
template <typename scalar_t, typename acc_t, bool kDense>
__global__ void __launch_bounds__(kThreads)
    tap_correlation_kernel(const scalar_t* __restrict__ go, const scalar_t* __restrict__ x,
                           const int64_t* __restrict__ off, int64_t off_cstride, acc_t* __restrict__ partial,
                           Geo g, CorrTile t) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* s_go = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* s_x = s_go + t.th * t.tw;
  int* s_off = reinterpret_cast<int*>(s_x + t.ih * t.iw);

  const int64_t c = blockIdx.x;
  const int part = blockIdx.y;
  const int tile = part / t.batch_chunks, chunk = part % t.batch_chunks;
  const int tile_h = tile / t.tiles_w, tile_w = tile % t.tiles_w;
  const int64_t oh0 = int64_t(tile_h) * t.th, ow0 = int64_t(tile_w) * t.tw;
  const int tap0 = blockIdx.z * kTapsPerBlock;
  const int ntaps = min(kTapsPerBlock, g.T - tap0);
  const int tid = threadIdx.x;

  if (!kDense) {
    for (int k = tid; k < ntaps; k += blockDim.x) {
      const int64_t* o = off + c * off_cstride + 2 * int64_t(tap0 + k);
      s_off[k] = int(o[0]) * t.iw + int(o[1]);
    }
  }
  int so[kTapsPerThread];
#pragma unroll
  for (int m = 0; m < kTapsPerThread; ++m) so[m] = -1;

  acc_t acc[kTapsPerThread];
#pragma unroll
  for (int m = 0; m < kTapsPerThread; ++m) acc[m] = 0;

  const int64_t n_begin = int64_t(chunk) * t.batch_per_chunk;
  const int64_t n_end = std::min<int64_t>(g.N, n_begin + t.batch_per_chunk);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int64_t p = n * g.C + c;
    __syncthreads();
    load_correlation_tiles(go + p * g.Ho * g.Wo, x + p * g.H * g.W, s_go, s_x, oh0, ow0, g, t);
    __syncthreads();
    if (n == n_begin) {
#pragma unroll
      for (int m = 0; m < kTapsPerThread; ++m) {
        const int k = tid + m * kThreads;
        if (k < ntaps) so[m] = kDense ? ((tap0 + k) / g.kw) * t.iw + (tap0 + k) % g.kw : s_off[k];
      }
    }
#pragma unroll
    for (int m = 0; m < kTapsPerThread; ++m) {
      if (so[m] < 0) continue;
      acc_t s = 0;
      for (int i = 0; i < t.th; ++i) {
        const acc_t* grow = s_go + i * t.tw;
        const acc_t* xrow = s_x + i * g.sh * t.iw + so[m];
        for (int jj = 0; jj < t.tw; ++jj) s += grow[jj] * xrow[jj * g.sw];
      }
      acc[m] += s;
    }
  }
  const int parts = gridDim.y;
#pragma unroll
  for (int m = 0; m < kTapsPerThread; ++m) {
    const int k = tid + m * kThreads;
    if (k < ntaps) partial[(c * parts + part) * int64_t(g.T) + tap0 + k] = acc[m];
  }
}

// Dense, stride 1 along W: thread (slice, group) owns the kGroupTaps taps
// (u, v0 .. v0+3) of its group and the tile rows i = slice (mod slices). Along
// a row it slides a register window over the input: one new shared load and
// one grad_output load per kGroupTaps FMAs. The slices are added in a fixed
// order through shared memory before the block writes its partial sums.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    tap_correlation_grouped_kernel(const scalar_t* __restrict__ go, const scalar_t* __restrict__ x,
                                   acc_t* __restrict__ partial, Geo g, CorrTile t) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* s_go = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* s_x = s_go + t.th * t.tw;
  acc_t* s_red = s_x + t.ih * t.iw + kRowSlack;

  const int64_t c = blockIdx.x;
  const int part = blockIdx.y;
  const int tile = part / t.batch_chunks, chunk = part % t.batch_chunks;
  const int tile_h = tile / t.tiles_w, tile_w = tile % t.tiles_w;
  const int64_t oh0 = int64_t(tile_h) * t.th, ow0 = int64_t(tile_w) * t.tw;
  const int tid = threadIdx.x;
  const bool active = tid < t.groups * t.slices;
  const int grp = tid % t.groups, slice = tid / t.groups;
  const int u = grp / t.groups_per_row, v0 = (grp % t.groups_per_row) * kGroupTaps;

  acc_t acc[kGroupTaps];
#pragma unroll
  for (int m = 0; m < kGroupTaps; ++m) acc[m] = 0;

  if (tid < kRowSlack) s_x[t.ih * t.iw + tid] = acc_t(0);
  const int64_t n_begin = int64_t(chunk) * t.batch_per_chunk;
  const int64_t n_end = std::min<int64_t>(g.N, n_begin + t.batch_per_chunk);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int64_t p = n * g.C + c;
    __syncthreads();
    load_correlation_tiles(go + p * g.Ho * g.Wo, x + p * g.H * g.W, s_go, s_x, oh0, ow0, g, t);
    __syncthreads();
    if (!active) continue;
    for (int i = slice; i < t.th; i += t.slices) {
      const acc_t* grow = s_go + i * t.tw;
      // Taps past the kernel's last column read the next row (or the slack):
      // their sums are never written.
      const acc_t* xrow = s_x + (i * g.sh + u) * t.iw + v0;
      acc_t win[kGroupTaps];
#pragma unroll
      for (int m = 0; m < kGroupTaps; ++m) win[m] = xrow[m];
      for (int jj = 0; jj < t.tw; ++jj) {
        const acc_t gv = grow[jj];
#pragma unroll
        for (int m = 0; m < kGroupTaps; ++m) acc[m] += gv * win[m];
#pragma unroll
        for (int m = 0; m + 1 < kGroupTaps; ++m) win[m] = win[m + 1];
        win[kGroupTaps - 1] = xrow[jj + kGroupTaps];
      }
    }
  }
  if (active) {
#pragma unroll
    for (int m = 0; m < kGroupTaps; ++m) s_red[(slice * t.groups + grp) * kGroupTaps + m] = acc[m];
  }
  __syncthreads();
  const int parts = gridDim.y;
  for (int e = tid; e < t.groups * kGroupTaps; e += blockDim.x) {
    const int eg = e / kGroupTaps, m = e % kGroupTaps;
    const int eu = eg / t.groups_per_row, ev = (eg % t.groups_per_row) * kGroupTaps + m;
    if (ev >= g.kw) continue;
    acc_t sum = 0;
    for (int r = 0; r < t.slices; ++r) sum += s_red[(r * t.groups + eg) * kGroupTaps + m];
    partial[(c * parts + part) * int64_t(g.T) + eu * g.kw + ev] = sum;
  }
}

template <typename acc_t>
__global__ void reduce_partials_kernel(const acc_t* __restrict__ partial, acc_t* __restrict__ out, int64_t C,
                                       int parts, int T) {
  const int64_t total = C * T;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e / T, k = e % T;
    acc_t s = 0;
    for (int part = 0; part < parts; ++part) s += partial[(c * parts + part) * int64_t(T) + k];
    out[e] = s;
  }
}

// Bias gradient, first pass: block b sums slice (b % splits) of plane b / splits
// (the planes in (n, c) order) in a fixed-order tree, into partial[c, n, slice];
// reduce_partials_kernel (T = 1) then adds each channel's partials in order.
// One block per channel (the previous form) left most SMs idle and took
// 0.4 ms at 16x64x128x128 on an H100.
constexpr int64_t kBiasChunk = 4096;  // elements per block: 16 per thread

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    plane_sum_kernel(const scalar_t* __restrict__ go, acc_t* __restrict__ partial, int64_t N, int64_t C,
                     int64_t plane, int splits) {
  __shared__ acc_t s[kThreads];
  const int64_t b = blockIdx.x;
  const int64_t nc = b / splits, slice = b % splits;
  const int64_t n = nc / C, c = nc % C;
  const scalar_t* gp = go + nc * plane;
  const int64_t end = std::min(plane, (slice + 1) * kBiasChunk);
  acc_t acc = 0;
  for (int64_t e = slice * kBiasChunk + threadIdx.x; e < end; e += blockDim.x) acc += static_cast<acc_t>(gp[e]);
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) s[threadIdx.x] += s[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[(c * N + n) * splits + slice] = s[0];
}

void check_offsets(const at::Tensor& offsets, const at::Tensor& x, const TapConvGeometry& g) {
  if (g.dense) return;
  TORCH_CHECK(offsets.scalar_type() == at::kLong && offsets.dim() == 3 &&
                  (offsets.size(0) == g.C || offsets.size(0) == 1) && offsets.size(2) == 2 &&
                  offsets.is_contiguous() && offsets.device() == x.device(),
              "tap offsets must be a contiguous (C or 1, T, 2) int64 tensor on the input's device");
}

}  // namespace

at::Tensor tap_conv_forward_cuda(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& weights,
                                 const std::optional<at::Tensor>& bias, const TapConvGeometry& g) {
  check_offsets(offsets, x, g);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty({g.N, g.C, g.Ho, g.Wo}, xc.options());
  if (out.numel() == 0) return out;
  const Geo geo = make_geo(g, offsets.size(1));
  const at::Tensor w = weights.contiguous();
  at::Tensor b;
  if (bias.has_value()) b = bias->to(w.scalar_type()).contiguous();
  launch_forward(xc, offsets, w, b, out, geo, g.dense, false);
  return out;
}

at::Tensor tap_conv_backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& offsets,
                                        const at::Tensor& weights, const TapConvGeometry& g) {
  check_offsets(offsets, grad_out, g);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const at::Tensor go = grad_out.contiguous();
  at::Tensor gx = at::empty({g.N, g.C, g.H, g.W}, go.options());
  if (gx.numel() == 0) return gx;
  if (go.numel() == 0) return gx.zero_();
  const at::Tensor w = weights.contiguous();
  if (adjoint_is_flipped_conv(g)) {
    // Dense kernels flip the weights while staging them in shared memory.
    const at::Tensor flipped = g.dense ? offsets : flip_offsets(offsets, g);
    launch_forward(go, flipped, w, at::Tensor(), gx, make_geo(flipped_geometry(g), offsets.size(1)), g.dense,
                   g.dense);
    return gx;
  }
  const Geo geo = make_geo(g, offsets.size(1));
  const int64_t ocs = g.dense ? 0 : (offsets.size(0) == 1 ? 0 : offsets.size(1) * 2);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "tap_conv_backward_input_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const unsigned blocks = grid_stride_blocks(gx.numel(), kThreads);
    const int64_t* op = g.dense ? nullptr : offsets.const_data_ptr<int64_t>();
    if (g.dense)
      tap_backward_input_kernel<scalar_t, acc_t, true><<<blocks, kThreads, 0, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), w.const_data_ptr<acc_t>(), op, ocs, gx.mutable_data_ptr<scalar_t>(), geo);
    else
      tap_backward_input_kernel<scalar_t, acc_t, false><<<blocks, kThreads, 0, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), w.const_data_ptr<acc_t>(), op, ocs, gx.mutable_data_ptr<scalar_t>(), geo);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gx;
}

std::tuple<at::Tensor, at::Tensor> tap_conv_correlation_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                             const at::Tensor& offsets, const TapConvGeometry& g,
                                                             bool bias) {
  check_offsets(offsets, x, g);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto acc_dtype = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t T = offsets.size(1);
  at::Tensor corr = at::zeros({g.C, T}, x.options().dtype(acc_dtype));
  at::Tensor gbias = at::zeros({g.C}, x.options().dtype(acc_dtype));
  if (g.N == 0 || g.Ho == 0 || g.Wo == 0 || g.C == 0 || T == 0) return {corr, gbias};
  const at::Tensor go = grad_out.contiguous(), xc = x.contiguous();
  const Geo geo = make_geo(g, T);
  const int64_t ocs = g.dense ? 0 : (offsets.size(0) == 1 ? 0 : T * 2);
  const bool mma = mma_applies(xc, geo, g.dense);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "tap_conv_correlation_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Only the chosen kernel's tiling is planned (each checks its own limits).
    const CorrTile t = mma ? CorrTile{} : corr_tile(geo, sizeof(acc_t), g.dense);
    const depthwise_mma::Geometry m = mma ? mma_geometry(geo, 1024) : depthwise_mma::Geometry{};
    const int parts = mma ? m.tiles * m.n_chunks : t.tiles_h * t.tiles_w * t.batch_chunks;
    at::Tensor partial = at::empty({g.C, parts, T}, x.options().dtype(acc_dtype));
    TORCH_CHECK(g.C <= int64_t(INT32_MAX), "too many channels");
    const dim3 grid(unsigned(g.C), unsigned(parts), unsigned(t.tap_chunks));
    const int64_t* op = g.dense ? nullptr : offsets.const_data_ptr<int64_t>();
    if (mma)
      launch_mma_weight_grad<scalar_t>(go, xc, partial, m);
    else if (t.grouped)
      tap_correlation_grouped_kernel<scalar_t, acc_t><<<grid, kThreads, t.smem, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), partial.mutable_data_ptr<acc_t>(), geo, t);
    else if (g.dense)
      tap_correlation_kernel<scalar_t, acc_t, true><<<grid, kThreads, t.smem, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), op, ocs, partial.mutable_data_ptr<acc_t>(),
          geo, t);
    else
      tap_correlation_kernel<scalar_t, acc_t, false><<<grid, kThreads, t.smem, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), op, ocs, partial.mutable_data_ptr<acc_t>(),
          geo, t);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    reduce_partials_kernel<acc_t><<<grid_stride_blocks(g.C * T, kThreads), kThreads, 0, current_stream()>>>(
        partial.const_data_ptr<acc_t>(), corr.mutable_data_ptr<acc_t>(), g.C, parts, int(T));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // The bias sum (session 9 profile, H100, 16x64x128x128 fp32: 23 us) only when asked.
    if (!bias) return;
    const int64_t plane = g.Ho * g.Wo;
    const int splits = int((plane + kBiasChunk - 1) / kBiasChunk);
    const int64_t sum_blocks = g.N * g.C * splits;
    TORCH_CHECK(sum_blocks <= int64_t(INT32_MAX) && g.N * splits <= int64_t(INT32_MAX),
                "depthwise weight gradient: too many planes for the bias reduction");
    at::Tensor bias_partial = at::empty({g.C, g.N * splits}, x.options().dtype(acc_dtype));
    plane_sum_kernel<scalar_t, acc_t><<<unsigned(sum_blocks), kThreads, 0, current_stream()>>>(
        go.const_data_ptr<scalar_t>(), bias_partial.mutable_data_ptr<acc_t>(), g.N, g.C, plane, splits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    reduce_partials_kernel<acc_t><<<grid_stride_blocks(g.C, kThreads), kThreads, 0, current_stream()>>>(
        bias_partial.const_data_ptr<acc_t>(), gbias.mutable_data_ptr<acc_t>(), g.C, int(g.N * splits), 1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {corr, gbias};
}

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) { TapConvOps<kCudaTapConv>::register_depthwise(m); }

}  // namespace learnable_ops
