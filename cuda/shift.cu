// shift: CUDA kernels of the Sparse/Active shift (forward, input gradient,
// shift gradient). Taps, padding maps and checks are the shared ones
// (shift_plan.h, padding.h), exactly as on the CPU.
//
// Grid: blockIdx.x is one (n, c) plane, blockIdx.y a chunk of it, so a block
// derives its channel's taps once (three threads do the double-precision
// rounding, then every thread builds its plan from them) and the
// shift-gradient reduction is a per-block partial sum (written to its own
// slot, then summed by at::sum in a fixed order): no atomics, deterministic.
//
// Speed: the kernels are memory-bound, so each thread handles U elements per
// pass and issues all their loads before any store (memory-level
// parallelism); (d, h, w) come from a flat in-plane index through fast
// division by invariants (IntDivider). An element whose taps (forward, shift
// gradient) or preimages (input gradient) all lie inside the plane reads at
// a constant offset from its own index per corner; only the others go
// through the padding map, in the same order, so both paths give the same
// value.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <tuple>
#include <type_traits>

#include "learnable_ops/checks.h"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/shift_plan.h"

namespace learnable_ops {
namespace {

constexpr int kMaxThreads = 256;
// Elements of a plane per block, at most: a block then runs a few passes, so
// that its setup is amortised, and a 56x56 plane is one block.
constexpr int64_t kMaxChunk = 8192;

// Elements per thread per pass: enough that a thread keeps about `bytes` of
// distinct input in flight (the other taps of a corner mostly hit the cache).
template <typename scalar_t, int bytes>
constexpr int unroll_for() {
  return int(sizeof(scalar_t)) >= bytes ? 1 : bytes / int(sizeof(scalar_t));
}
// kBits: axes with two taps per element (the last kBits axes); 0 = sparse.
template <typename scalar_t, int kBits>
constexpr int gather_unroll() {
  return unroll_for<scalar_t, kBits == 0 ? 16 : 8>();
}
template <typename scalar_t>
constexpr int reduce_unroll() {
  return unroll_for<scalar_t, 8>();
}

struct PlaneLaunch {
  dim3 grid;
  int threads;
  int64_t chunk;   // elements of a plane per block
  int64_t chunks;  // blocks per plane
};

PlaneLaunch plane_launch(const ShiftGeometry& g, int unroll, int64_t max_chunk = kMaxChunk) {
  const int64_t plane = g.plane(), planes = g.batch * g.channels;
  TORCH_CHECK(planes <= std::numeric_limits<int32_t>::max(), "shift: batch * channels = ", planes,
              " exceeds the CUDA grid");
  // gridDim.y is at most 65535.
  const int64_t want = std::min<int64_t>((plane + max_chunk - 1) / max_chunk, 65535);
  const int64_t chunk = (plane + want - 1) / want;
  PlaneLaunch l;
  l.chunk = chunk;
  l.chunks = (plane + chunk - 1) / chunk;
  // The block size (4 to 8 warps) that leaves the fewest idle slots in the
  // last pass; on a tie the larger (fewer passes).
  int64_t best_slots = std::numeric_limits<int64_t>::max();
  l.threads = kMaxThreads;
  for (int threads = 128; threads <= kMaxThreads; threads += 32) {
    const int64_t pass = int64_t(threads) * unroll;
    const int64_t slots = (chunk + pass - 1) / pass * pass;
    if (slots <= best_slots) {
      best_slots = slots;
      l.threads = threads;
    }
  }
  l.grid = dim3(static_cast<unsigned>(planes), static_cast<unsigned>(l.chunks));
  return l;
}

// 32-bit in-plane indexing when every plane index, tap coordinate and corner
// offset ((f0 + 1) H + f1 + 1) W + f2 + 1 fits: |f + 1| <= 2n + 1 per axis
// (equivalent_shift), so |offset| <= 8 * plane + 1.
bool needs_wide_index(const ShiftGeometry& g) {
  return g.plane() > std::numeric_limits<int32_t>::max() / 8 - 1;
}

// (d, h, w) of an in-plane index, by multiplication with precomputed magic
// numbers for the int32 path (IntDivider; dividends < 2^31).
template <typename index_t>
struct PlaneIndex {
  using uindex_t = std::make_unsigned_t<index_t>;
  at::cuda::detail::IntDivider<uindex_t> width, height;
  index_t size[3];
  __device__ __forceinline__ void unravel(index_t s, index_t* c) const {
    const auto w = width.divmod(static_cast<uindex_t>(s));
    const auto h = height.divmod(w.div);
    c[0] = static_cast<index_t>(h.div);
    c[1] = static_cast<index_t>(h.mod);
    c[2] = static_cast<index_t>(w.mod);
  }
};

template <typename index_t>
PlaneIndex<index_t> plane_index(const ShiftGeometry& g) {
  using uindex_t = std::make_unsigned_t<index_t>;
  PlaneIndex<index_t> p;
  p.width = at::cuda::detail::IntDivider<uindex_t>(static_cast<uindex_t>(g.size[2]));
  p.height = at::cuda::detail::IntDivider<uindex_t>(static_cast<uindex_t>(g.size[1]));
  for (int a = 0; a < 3; ++a) p.size[a] = static_cast<index_t>(g.size[a]);
  return p;
}

template <typename T>
__device__ __forceinline__ T quiet_nan() {
  return static_cast<T>(__longlong_as_double(0x7ff8000000000000ULL));
}

// Inputs j in [lo, hi) of an axis of length n have exactly one output o
// whose tap at shift fk (it reads pad_index(o - fk)) reads them, namely
// o = j + fk, inside [0, n). Others may have none, one or several (border,
// reflect and symmetric edges, periodic wrap) and take the general path.
// The outputs that read through the padding map are the m = |fk| at the
// front (fk > 0) or the back (fk < 0); the span leaves out what they read.
// Needs |fk| <= n for periodic (equivalent_shift gives |f| < n, so f + 1 is fine).
template <typename I>
LO_HD void single_preimage_span(I n, I fk, PadMode mode, I& lo, I& hi) {
  lo = fk < 0 ? -fk : 0;
  hi = fk > 0 ? n - fk : n;
  const I m = fk < 0 ? -fk : fk;
  switch (mode) {
    case PadMode::Border:  // they read input 0 or n - 1
      if (fk > 0 && lo < 1) lo = 1;
      if (fk < 0 && hi > n - 1) hi = n - 1;
      break;
    case PadMode::Reflect:  // they read [1, m] or [n - 1 - m, n - 2] (m <= n - 1)
      if (m > n - 1)
        hi = lo;
      else if (fk > 0)
        lo = m + 1;
      else if (fk < 0)
        hi = n - 1 - m;
      break;
    case PadMode::Symmetric:  // they read [0, m - 1] or [n - m, n - 1] (m <= n)
      if (m > n)
        hi = lo;
      else if (fk > 0)
        lo = m;
      else if (fk < 0)
        hi = n - m;
      break;
    default:  // zeros: nothing; periodic: [n - m, n) or [0, m), outside [lo, hi)
      break;
  }
  if (hi < lo) hi = lo;
}

// The shifts as the forward kernels read them: a float32 or float64 tensor in
// place, with its strides. A float converts to double exactly, so the taps
// are those of the host's conversion to float64, without that conversion's
// kernel (a second launch per call). The other kernels take contiguous
// float64 (shifts_as_double).
struct ShiftsRef {
  const void* data;
  int64_t stride[2];
  bool is_float;
};

__device__ __forceinline__ double shift_value(const double* __restrict__ shifts, const ShiftGeometry& g,
                                              int64_t c, int k) {
  return shifts[c * g.ndim + k];
}
__device__ __forceinline__ double shift_value(const ShiftsRef& shifts, const ShiftGeometry&, int64_t c, int k) {
  const int64_t i = c * shifts.stride[0] + k * shifts.stride[1];
  return shifts.is_float ? static_cast<double>(static_cast<const float*>(shifts.data)[i])
                         : static_cast<const double*>(shifts.data)[i];
}

// The taps of the block's channel along each axis. Three threads (one per
// axis) do the double-precision rounding and reduction (equivalent_shift) of
// a set; every thread then reads them.
struct BlockTaps {
  AxisTaps axis[3];
  bool finite;
};

// The channel's taps, floor (set 0) and rounded (set 1), computed by threads
// 0..5 into shared memory before the planes are staged (no barrier of its
// own: read them after the block's next __syncthreads).
struct PlaneTaps {
  AxisTaps axis[2][3];
  int finite[2][3];
  template <typename Shifts>
  __device__ void compute(const Shifts& shifts, const ShiftGeometry& g, bool floor, bool rounded) {
    const int t = threadIdx.x;
    if (t >= 6) return;
    const int set = t / 3, a = t % 3, k = a - g.first_axis();
    if ((set == 0 && !floor) || (set == 1 && !rounded)) return;
    AxisTaps taps{0, 0.0};
    bool ok = true;
    if (k >= 0)
      // Constant indices into g (a dynamic g.size[a] copies the parameter struct to the stack).
      ok = axis_taps(shift_value(shifts, g, int64_t(blockIdx.x) % g.channels, k),
                     a == 0 ? g.size[0] : (a == 1 ? g.size[1] : g.size[2]), g.padding, set == 1, &taps);
    axis[set][a] = taps;
    finite[set][a] = ok;
  }
  __device__ BlockTaps get(int set) const {
    BlockTaps b;
    for (int a = 0; a < 3; ++a) b.axis[a] = axis[set][a];
    b.finite = finite[set][0] && finite[set][1] && finite[set][2];
    return b;
  }
};

// One set of taps (rounded or floor), with its own barrier.
template <typename Shifts>
__device__ BlockTaps block_taps(const Shifts& shifts, const ShiftGeometry& g,
                                bool rounded) {
  __shared__ PlaneTaps taps;
  taps.compute(shifts, g, /*floor=*/!rounded, rounded);
  __syncthreads();
  return taps.get(rounded ? 1 : 0);
}

// An element reads up to 2^kBits corners, one tap per axis; slot k takes tap
// (k >> (2 - a)) & 1 on axis a (only the last kBits axes have a bit), so
// ascending slots are the order D tap, H tap, W tap of every path. A slot is
// used when each of its taps is below that axis's tap count. Slot k of
// element s of the plane reads s - offset[k] when the taps are interior
// (forward and shift gradient), and its input-gradient preimage is
// s + offset[k] when the preimages are single (input gradient).
template <typename index_t, int kBits>
struct TapPlan {
  static constexpr int kSlots = 1 << kBits;
  static constexpr int kFirstBit = 3 - kBits;  // axes before it have one tap
  index_t f[3];
  int taps[3];
  unsigned used;
  index_t offset[kSlots];
  // The constant-offset path holds when c[a] - lo[a] is in [0, span[a]) on every axis.
  index_t lo[3], span[3];

  static __device__ __forceinline__ int tap(int k, int a) {
    return a >= kFirstBit ? (k >> (2 - a)) & 1 : 0;
  }

  __device__ void init(const BlockTaps& b, const index_t* size, const int* tap_counts) {
    for (int a = 0; a < 3; ++a) {
      f[a] = static_cast<index_t>(b.axis[a].f);
      taps[a] = tap_counts[a];
    }
    used = 0;
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
      bool ok = true;
      for (int a = 0; a < 3; ++a) ok = ok && tap(k, a) < taps[a];
      if (ok) used |= 1u << k;
      offset[k] = ((f[0] + tap(k, 0)) * size[1] + f[1] + tap(k, 1)) * size[2] + f[2] + tap(k, 2);
    }
  }

  __device__ __forceinline__ bool is_used(int k) const { return (used >> k) & 1u; }

  // Spans where all taps i - f - k (k < taps) of an axis lie in [0, n).
  __device__ void set_interior_spans(const index_t* size) {
    for (int a = 0; a < 3; ++a) {
      lo[a] = f[a] + taps[a] - 1;
      span[a] = size[a] - taps[a] + 1;
    }
  }

  __device__ __forceinline__ bool fast(const index_t* c) const {
    using uindex_t = std::make_unsigned_t<index_t>;
    bool ok = true;
#pragma unroll
    for (int a = 0; a < 3; ++a)
      if (kBits == 0 || a >= kFirstBit)  // a one-tap axis without a bit has size 1 here
        ok = ok && static_cast<uindex_t>(c[a] - lo[a]) < static_cast<uindex_t>(span[a]);
    return ok;
  }

  // Indices (into the plane) that the used slots of the element at c read,
  // -1 for a zero of the padding; s is its in-plane index.
  __device__ __forceinline__ void gather_indices(index_t s, const index_t* c, const index_t* size,
                                                 PadMode mode, index_t* idx) const {
    if (fast(c)) {
#pragma unroll
      for (int k = 0; k < kSlots; ++k) idx[k] = s - offset[k];
      return;
    }
    index_t at[3][2];
#pragma unroll
    for (int a = 0; a < 3; ++a)
#pragma unroll
      for (int k = 0; k < 2; ++k)
        at[a][k] = (k == 0 || a >= kFirstBit) ? pad_index_t<index_t>(c[a] - f[a] - k, size[a], mode)
                                              : index_t(-1);
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
      const index_t id = at[0][tap(k, 0)], ih = at[1][tap(k, 1)], iw = at[2][tap(k, 2)];
      idx[k] = (id < 0 || ih < 0 || iw < 0) ? index_t(-1) : (id * size[1] + ih) * size[2] + iw;
    }
  }
};

// Weight of slot k: the product of the per-axis tap weights, D then H then W.
template <typename acc_t, typename index_t, int kBits>
__device__ __forceinline__ acc_t slot_weight(int k, const acc_t* t) {
  acc_t w = acc_t(1);
  for (int a = 0; a < 3; ++a) {
    const acc_t wa = TapPlan<index_t, kBits>::tap(k, a) ? t[a] : acc_t(1) - t[a];
    w = a == 0 ? wa : w * wa;
  }
  return w;
}

// Bounds of the block's chunk of its plane.
struct Chunk {
  int64_t plane_offset;
  int64_t begin, end;
  __device__ Chunk(const ShiftGeometry& g, int64_t chunk) {
    plane_offset = int64_t(blockIdx.x) * g.plane();
    begin = int64_t(blockIdx.y) * chunk;
    end = min(g.plane(), begin + chunk);
  }
};

// What the forward and the input gradient share: the block's chunk of the
// source and destination planes, its channel's taps (tap 1 on the axes whose
// fraction t is non-zero), the slot plan and the slot weights.
template <typename scalar_t, typename index_t, int kBits>
struct GatherBlock {
  using acc_t = at::opmath_type<scalar_t>;
  static constexpr int K = TapPlan<index_t, kBits>::kSlots;
  const scalar_t* src;
  scalar_t* dst;
  index_t begin, end;
  acc_t t[3];
  int taps[3];
  TapPlan<index_t, kBits> plan;
  acc_t weight[K];

  // False, after filling the chunk with NaN, when a shift of the channel is
  // not finite.
  template <typename Shifts>
  __device__ bool init(const scalar_t* source, scalar_t* destination, const Shifts& shifts,
                       const ShiftGeometry& g, const index_t* size, int64_t chunk) {
    const BlockTaps bt = block_taps(shifts, g, /*rounded=*/kBits == 0);
    const Chunk ch(g, chunk);
    src = source + ch.plane_offset;
    dst = destination + ch.plane_offset;
    begin = static_cast<index_t>(ch.begin);
    end = static_cast<index_t>(ch.end);
    if (!bt.finite) {
      for (index_t s = begin + threadIdx.x; s < end; s += blockDim.x) dst[s] = quiet_nan<scalar_t>();
      return false;
    }
    for (int a = 0; a < 3; ++a) {
      t[a] = static_cast<acc_t>(bt.axis[a].t);
      taps[a] = t[a] != acc_t(0) ? 2 : 1;
    }
    plan.init(bt, size, taps);
#pragma unroll
    for (int k = 0; k < K; ++k) weight[k] = slot_weight<acc_t, index_t, kBits>(k, t);
    return true;
  }

  // The weighted sum of the used slots' values, in slot order.
  __device__ __forceinline__ acc_t combine(const scalar_t* v) const {
    acc_t acc = 0;
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (plan.is_used(k)) acc += weight[k] * static_cast<acc_t>(v[k]);
    return acc;
  }
};

// Forward: kBits = 0 is the sparse gather (rounded taps, a copy of the value);
// kBits = ndim (or 3) the active interpolation, with taps on the axes whose
// fraction t is non-zero.
template <typename scalar_t, typename index_t, int kBits>
__global__ void shift_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                     ShiftsRef shifts, ShiftGeometry g,
                                     PlaneIndex<index_t> pi, int64_t chunk) {
  constexpr int U = gather_unroll<scalar_t, kBits>();
  constexpr int K = TapPlan<index_t, kBits>::kSlots;
  GatherBlock<scalar_t, index_t, kBits> b;
  if (!b.init(x, y, shifts, g, pi.size, chunk)) return;
  b.plan.set_interior_spans(pi.size);
  const scalar_t* xp = b.src;
  scalar_t* yp = b.dst;
  const index_t end = b.end;
  const index_t step = static_cast<index_t>(blockDim.x);
  for (index_t base = b.begin + threadIdx.x; base < end; base += U * step) {
    index_t idx[U][K];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const index_t s = base + u * step;
#pragma unroll
      for (int k = 0; k < K; ++k) idx[u][k] = -1;
      if (s < end) {
        index_t c[3];
        pi.unravel(s, c);
        b.plan.gather_indices(s, c, pi.size, g.padding, idx[u]);
      }
    }
    scalar_t v[U][K];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int k = 0; k < K; ++k)
        v[u][k] = (b.plan.is_used(k) && idx[u][k] >= 0) ? xp[idx[u][k]] : scalar_t(0);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const index_t s = base + u * step;
      if (s >= end) continue;
      if constexpr (kBits == 0)
        yp[s] = v[u][0];
      else
        yp[s] = static_cast<scalar_t>(b.combine(v[u]));
    }
  }
}

// The outputs o in [0, n) of an axis whose tap at shift fk (it reads
// pad_index(o - fk)) reads input j, ascending: the same sequence as
// for_each_preimage_t(j, n, fk, n, mode), enumerated without a callback so
// that the nested D/H/W loops of the general path stay small. Either the range
// [o1, end) (period 0), or the merge of the progressions o1 + i * period and
// o2 + i * period below end.
template <typename I>
struct PreimageCursor {
  I o1, o2, period, end;

  static __device__ PreimageCursor range(I lo, I hi, I before, I n) {
    const I a = lo + before, b = hi + before;
    return {a < 0 ? I(0) : a, n, I(0), b > n ? n : b};
  }
  static __device__ PreimageCursor lattice(I r1, I r2, I period, I before, I n) {
    return {floor_mod_t(before + r1, period), r2 < 0 ? n : floor_mod_t(before + r2, period), period, n};
  }
  // Cases as in for_each_preimage_t (padding.h).
  static __device__ PreimageCursor of(I j, I n, I before, PadMode mode) {
    switch (mode) {
      case PadMode::Border: {
        const I big = n + (before < 0 ? -before : before) + n + 1;
        return range(j == 0 ? -big : j, j == n - 1 ? n + big : j + 1, before, n);
      }
      case PadMode::Periodic:
        return lattice(j, -1, n, before, n);
      case PadMode::Reflect: {
        if (n == 1) {
          const I big = n + (before > 0 ? before : -before) + 1;
          return range(-big, big, before, n);
        }
        const I period = 2 * n - 2, mirror = period - j;
        return lattice(j, (mirror == j || mirror == period) ? I(-1) : mirror, period, before, n);
      }
      case PadMode::Symmetric:
        return lattice(j, 2 * n - 1 - j, 2 * n, before, n);
      default:  // zeros
        return range(j, j + 1, before, n);
    }
  }

  __device__ __forceinline__ bool next(I& o) {
    if (period == 0) {
      if (o1 >= end) return false;
      o = o1++;
      return true;
    }
    if (o1 >= end && o2 >= end) return false;
    if (o1 <= o2) {
      o = o1;
      if (o2 == o1) o2 += period;
      o1 += period;
    } else {
      o = o2;
      o2 += period;
    }
    return true;
  }
};

// Sets the plan's fast-path spans of the input gradient: per axis, the
// inputs with a single preimage for every tap.
template <typename index_t, int kBits>
__device__ void set_single_preimage_spans(TapPlan<index_t, kBits>& plan, const index_t* size,
                                          PadMode mode) {
  for (int a = 0; a < 3; ++a) {
    index_t lo, hi;
    single_preimage_span<index_t>(size[a], plan.f[a], mode, lo, hi);
    if (plan.taps[a] == 2) {
      index_t lo1, hi1;
      single_preimage_span<index_t>(size[a], plan.f[a] + 1, mode, lo1, hi1);
      lo = max(lo, lo1);
      hi = min(hi, hi1);
    }
    plan.lo[a] = lo;
    plan.span[a] = hi > lo ? hi - lo : index_t(0);
  }
}

// The input gradient of the element at c of a plane of grad_output gp, by
// enumerating the per-axis preimages of every tap: D tap, D preimages, H tap,
// H preimages, W tap, W preimages (the order of the constant-offset path).
template <typename scalar_t, typename acc_t, typename index_t, int kBits>
__device__ __forceinline__ acc_t adjoint_general(const scalar_t* __restrict__ gp,
                                                 const TapPlan<index_t, kBits>& plan, const acc_t* t,
                                                 const index_t* size, PadMode mode, const index_t* c) {
  acc_t acc = 0;
  for (int kd = 0; kd < plan.taps[0]; ++kd) {
    const acc_t wd = kd ? t[0] : acc_t(1) - t[0];
    auto cd = PreimageCursor<index_t>::of(c[0], size[0], plan.f[0] + kd, mode);
    for (index_t od; cd.next(od);) {
      for (int kh = 0; kh < plan.taps[1]; ++kh) {
        const acc_t wh = kh ? t[1] : acc_t(1) - t[1];
        auto ch = PreimageCursor<index_t>::of(c[1], size[1], plan.f[1] + kh, mode);
        for (index_t oh; ch.next(oh);) {
          const scalar_t* row = gp + (od * size[1] + oh) * size[2];
          for (int kw = 0; kw < plan.taps[2]; ++kw) {
            const acc_t weight = wd * wh * (kw ? t[2] : acc_t(1) - t[2]);
            auto cw = PreimageCursor<index_t>::of(c[2], size[2], plan.f[2] + kw, mode);
            for (index_t ow; cw.next(ow);) acc += weight * static_cast<acc_t>(row[ow]);
          }
        }
      }
    }
  }
  return acc;
}

// The input gradient of the pass's elements base + u * step, u in the bit
// set `general`, one at a time (one copy of the general path, not U).
template <typename scalar_t, typename acc_t, typename index_t, int kBits>
__device__ __forceinline__ void adjoint_general_elements(unsigned general, index_t base, index_t step,
                                                         const scalar_t* __restrict__ gp,
                                                         scalar_t* __restrict__ dst,
                                                         const TapPlan<index_t, kBits>& plan, const acc_t* t,
                                                         const PlaneIndex<index_t>& pi, PadMode mode) {
  while (general != 0) {
    const int u = __ffs(general) - 1;
    general &= general - 1;
    const index_t s = base + u * step;
    index_t c[3];
    pi.unravel(s, c);
    dst[s] = static_cast<scalar_t>(adjoint_general(gp, plan, t, pi.size, mode, c));
  }
}

// Exact adjoint: each input element gathers, in a fixed order, every output
// whose taps read it. Where every axis has a single preimage per tap
// (single_preimage_span) that is output s + offset[k] of slot k; elsewhere the
// per-axis preimages of the padding map are enumerated (same order, D tap,
// D preimages, H tap, ...).
template <typename scalar_t, typename index_t, int kBits>
__global__ void shift_input_backward_kernel(const scalar_t* __restrict__ go,
                                            scalar_t* __restrict__ gx,
                                            const double* __restrict__ shifts, ShiftGeometry g,
                                            PlaneIndex<index_t> pi, int64_t chunk) {
  constexpr int U = gather_unroll<scalar_t, kBits>();
  constexpr int K = TapPlan<index_t, kBits>::kSlots;
  GatherBlock<scalar_t, index_t, kBits> b;
  if (!b.init(go, gx, shifts, g, pi.size, chunk)) return;
  auto& plan = b.plan;
  const scalar_t* gp = b.src;
  scalar_t* xp = b.dst;
  const index_t end = b.end;
  set_single_preimage_spans(plan, pi.size, g.padding);
  static_assert(U <= 32, "the pass keeps one bit per element");
  const index_t step = static_cast<index_t>(blockDim.x);
  for (index_t base = b.begin + threadIdx.x; base < end; base += U * step) {
    unsigned fast = 0, general = 0;
    scalar_t v[U][K];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const index_t s = base + u * step;
      bool in_span = false;
      if (s < end) {
        index_t c[3];
        pi.unravel(s, c);
        in_span = plan.fast(c);
        if (in_span)
          fast |= 1u << u;
        else
          general |= 1u << u;
      }
#pragma unroll
      for (int k = 0; k < K; ++k)
        v[u][k] = (in_span && plan.is_used(k)) ? gp[s + plan.offset[k]] : scalar_t(0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if ((fast >> u) & 1u) xp[base + u * step] = static_cast<scalar_t>(b.combine(v[u]));
    }
    adjoint_general_elements(general, base, step, gp, xp, plan, b.t, pi, g.padding);
  }
}

// The shift-gradient plan of a block: floor taps, both taps on every
// present axis, interior spans; coef[k][a] is the derivative along axis a of
// the weight of slot k (the tap weight of axis a replaced by -1 for tap 0,
// +1 for tap 1).
template <typename acc_t, typename index_t, int kBits>
__device__ void derivative_plan(const BlockTaps& bt, const ShiftGeometry& g, const index_t* size,
                                TapPlan<index_t, kBits>& plan, acc_t (&coef)[1 << kBits][3]) {
  using Plan = TapPlan<index_t, kBits>;
  const int first = g.first_axis();
  acc_t t[3];
  int taps[3];
  for (int a = 0; a < 3; ++a) {
    t[a] = static_cast<acc_t>(bt.axis[a].t);
    taps[a] = a >= first ? 2 : 1;
  }
  plan.init(bt, size, taps);
  plan.set_interior_spans(size);
#pragma unroll
  for (int k = 0; k < Plan::kSlots; ++k)
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      acc_t w = acc_t(1);
      for (int b = 0; b < 3; ++b) {
        const int tb = Plan::tap(k, b);
        const acc_t wb = b == a ? (tb ? acc_t(1) : acc_t(-1)) : (tb ? t[b] : acc_t(1) - t[b]);
        w = b == 0 ? wb : w * wb;
      }
      coef[k][a] = w;
    }
}

// sums[a] += grad * value_k * coef[k][a] over the used slots of an element
// that read inside the input (idx >= 0), in slot order.
template <typename scalar_t, typename acc_t, typename index_t, int kBits>
__device__ __forceinline__ void add_slot_derivatives(const TapPlan<index_t, kBits>& plan,
                                                     const acc_t (&coef)[1 << kBits][3], scalar_t grad,
                                                     const index_t* idx, const scalar_t* v, acc_t* sums) {
  const acc_t gr = static_cast<acc_t>(grad);
#pragma unroll
  for (int k = 0; k < (1 << kBits); ++k) {
    if (!plan.is_used(k) || idx[k] < 0) continue;
    const acc_t value = gr * static_cast<acc_t>(v[k]);
#pragma unroll
    for (int a = 0; a < 3; ++a)
      if (a >= TapPlan<index_t, kBits>::kFirstBit) sums[a] += value * coef[k][a];
  }
}

// out[a] = the block's total of sums[a]: across the warp (butterfly), then
// the warps in order. Deterministic for a given block size.
template <typename acc_t>
__device__ void block_sum3(const acc_t* sums, acc_t* out) {
  __shared__ acc_t warp_sums[3][kMaxThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    acc_t v = sums[a];
    for (int delta = 16; delta > 0; delta /= 2) v += __shfl_xor_sync(0xffffffffu, v, delta);
    if (lane == 0) warp_sums[a][warp] = v;
  }
  __syncthreads();
  if (threadIdx.x < 3) {
    acc_t total = 0;
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += warp_sums[threadIdx.x][w];
    out[threadIdx.x] = total;
  }
}

// Shift gradient: per element, grad_output times the derivative of the
// multilinear interpolation along each present axis (floor taps, both taps
// on every present axis), reduced per block into
// partial[(plane * chunks + blockIdx.y) * 3 + axis]: per thread in element
// order, then across the warp (butterfly) and the warps (in order).
template <typename scalar_t, typename index_t, int kBits>
__global__ void shift_shifts_backward_kernel(const scalar_t* __restrict__ go,
                                             const scalar_t* __restrict__ x,
                                             const double* __restrict__ shifts, ShiftGeometry g,
                                             PlaneIndex<index_t> pi, int64_t chunk,
                                             at::opmath_type<scalar_t>* __restrict__ partial) {
  using acc_t = at::opmath_type<scalar_t>;
  using Plan = TapPlan<index_t, kBits>;
  static_assert(kBits >= 1, "every present axis has two taps");
  constexpr int U = reduce_unroll<scalar_t>();
  constexpr int K = Plan::kSlots;
  const BlockTaps bt = block_taps(shifts, g, /*rounded=*/false);
  const Chunk ch(g, chunk);
  acc_t* out = partial + (int64_t(blockIdx.x) * gridDim.y + blockIdx.y) * 3;
  if (!bt.finite) {
    if (threadIdx.x < 3) out[threadIdx.x] = quiet_nan<acc_t>();
    return;
  }
  const scalar_t* gp = go + ch.plane_offset;
  const scalar_t* xp = x + ch.plane_offset;
  const index_t begin = static_cast<index_t>(ch.begin), end = static_cast<index_t>(ch.end);
  Plan plan;
  acc_t coef[K][3];
  derivative_plan(bt, g, pi.size, plan, coef);
  acc_t sums[3] = {0, 0, 0};
  const index_t step = static_cast<index_t>(blockDim.x);
  for (index_t base = begin + threadIdx.x; base < end; base += U * step) {
    index_t idx[U][K];
    scalar_t grad[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const index_t s = base + u * step;
#pragma unroll
      for (int k = 0; k < K; ++k) idx[u][k] = -1;
      grad[u] = scalar_t(0);
      if (s < end) {
        grad[u] = gp[s];
        index_t c[3];
        pi.unravel(s, c);
        plan.gather_indices(s, c, pi.size, g.padding, idx[u]);
      }
    }
    scalar_t v[U][K];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int k = 0; k < K; ++k)
        v[u][k] = (plan.is_used(k) && idx[u][k] >= 0) ? xp[idx[u][k]] : scalar_t(0);
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (base + u * step < end) add_slot_derivatives(plan, coef, grad[u], idx[u], v[u], sums);
  }
  block_sum3(sums, out);
}

// Largest input plane the fused backward stages in shared memory; larger
// planes (or 64-bit indexing) take the two separate kernels.
constexpr int64_t kMaxStagedBytes = 40 * 1024;

bool fits_staged_plane(const ShiftGeometry& g, int64_t element_size) {
  return !needs_wide_index(g) && g.plane() * element_size <= kMaxStagedBytes;
}

// Copies one or two planes of n elements into shared memory: 16-byte loads
// when every source is 16-byte aligned (the destinations, offsets of the
// dynamic shared memory that are multiples of 16, always are), all of a
// thread's loads of a round issued before its stores; element by element
// otherwise.
template <typename scalar_t, int kPlanes>
__device__ __forceinline__ void stage_planes(scalar_t* __restrict__ d0, const scalar_t* __restrict__ s0,
                                             scalar_t* __restrict__ d1, const scalar_t* __restrict__ s1, int n) {
  constexpr int kVector = 16 / int(sizeof(scalar_t));
  constexpr int kRound = 4;
  int done = 0;
  const bool aligned = reinterpret_cast<uintptr_t>(s0) % 16 == 0 &&
                       (kPlanes < 2 || reinterpret_cast<uintptr_t>(s1) % 16 == 0);
  if (kVector > 1 && aligned) {
    const int vectors = n / kVector;
    const uint4* __restrict__ v0 = reinterpret_cast<const uint4*>(s0);
    const uint4* __restrict__ v1 = reinterpret_cast<const uint4*>(s1);
    for (int base = threadIdx.x; base < vectors; base += kRound * blockDim.x) {
      uint4 a[kRound], b[kRound];
#pragma unroll
      for (int u = 0; u < kRound; ++u) {
        const int i = base + u * blockDim.x;
        if (i < vectors) {
          a[u] = v0[i];
          if (kPlanes == 2) b[u] = v1[i];
        }
      }
#pragma unroll
      for (int u = 0; u < kRound; ++u) {
        const int i = base + u * blockDim.x;
        if (i < vectors) {
          reinterpret_cast<uint4*>(d0)[i] = a[u];
          if (kPlanes == 2) reinterpret_cast<uint4*>(d1)[i] = b[u];
        }
      }
    }
    done = vectors * kVector;
  }
  for (int i = done + threadIdx.x; i < n; i += blockDim.x) {
    d0[i] = s0[i];
    if (kPlanes == 2) d1[i] = s1[i];
  }
}

template <typename scalar_t, int kBitsGather>
constexpr int fused_unroll() {
  return gather_unroll<scalar_t, kBitsGather>() < 4 ? gather_unroll<scalar_t, kBitsGather>() : 4;
}

// Both gradients, one block per (n, c) plane. The block stages its input
// plane in shared memory, then each element s, in one pass over the plane:
//  - gathers its input gradient from grad_output exactly as
//    shift_input_backward_kernel (same taps, slots and order: bit-identical);
//  - adds grad_output[s] times the slot derivatives of its floor taps, read
//    from the staged plane, to the thread's sums (as
//    shift_shifts_backward_kernel, in another element order: equal to float
//    rounding).
// Interior elements read at constant offsets; the others (edges touching the
// padding) go through the padding map. The block's sums go to
// partial[plane * 3 + axis], summed over the batch in a fixed order on the
// host side: no atomics, deterministic.
// Three blocks of kMaxThreads per SM (80 registers): the two plans and the
// slot derivatives otherwise take 98-124 registers in 2D/3D, two blocks per
// SM. At 80, ptxas (sm_90) spills 44-72 bytes in the 2D fp32 kernels, up to
// 200 in 2D bf16 and more in 3D; 1D does not spill.
template <typename scalar_t, int kBitsGather, int kBitsReduce>
__global__ void __launch_bounds__(kMaxThreads, 3)
    shift_backward_kernel(const scalar_t* __restrict__ go, const scalar_t* __restrict__ x,
                          scalar_t* __restrict__ gx, const double* __restrict__ shifts, ShiftGeometry g,
                          PlaneIndex<int32_t> pi, at::opmath_type<scalar_t>* __restrict__ partial) {
  using index_t = int32_t;
  using acc_t = at::opmath_type<scalar_t>;
  using ReducePlan = TapPlan<index_t, kBitsReduce>;
  static_assert(kBitsReduce >= 1, "every present axis has two taps");
  constexpr int U = fused_unroll<scalar_t, kBitsGather>();
  constexpr int KG = TapPlan<index_t, kBitsGather>::kSlots;
  constexpr int KR = ReducePlan::kSlots;
  extern __shared__ __align__(16) unsigned char staged_bytes[];
  scalar_t* xs = reinterpret_cast<scalar_t*>(staged_bytes);
  acc_t* out = partial + int64_t(blockIdx.x) * 3;
  GatherBlock<scalar_t, index_t, kBitsGather> b;
  if (!b.init(go, gx, shifts, g, pi.size, g.plane())) {
    if (threadIdx.x < 3) out[threadIdx.x] = quiet_nan<acc_t>();
    return;
  }
  set_single_preimage_spans(b.plan, pi.size, g.padding);
  // block_taps reuses its shared slots: every thread has read the gather taps.
  __syncthreads();
  const BlockTaps floor_taps = block_taps(shifts, g, /*rounded=*/false);
  ReducePlan plan;
  acc_t coef[KR][3];
  derivative_plan(floor_taps, g, pi.size, plan, coef);
  const index_t n = b.end;
  stage_planes<scalar_t, 1>(xs, x + int64_t(blockIdx.x) * g.plane(), nullptr, nullptr, n);
  __syncthreads();
  const scalar_t* gp = b.src;
  scalar_t* gxp = b.dst;
  acc_t sums[3] = {0, 0, 0};
  static_assert(U <= 32, "the pass keeps one bit per element");
  const index_t step = static_cast<index_t>(blockDim.x);
  for (index_t base = threadIdx.x; base < n; base += U * step) {
    // Per element, whether its input gradient (fast) and its shift-gradient
    // taps (interior) take the constant offsets; the others go one at a time
    // after the pass, when the pass's registers are free.
    unsigned fast = 0, general = 0, interior = 0, edge = 0;
    scalar_t v[U][KG];
    scalar_t grad[U];
    // Every global load of the pass first (memory-level parallelism).
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const index_t s = base + u * step;
      bool in_span = false;
      grad[u] = scalar_t(0);
      if (s < n) {
        index_t c[3];
        pi.unravel(s, c);
        in_span = b.plan.fast(c);
        if (in_span)
          fast |= 1u << u;
        else
          general |= 1u << u;
        if (plan.fast(c))
          interior |= 1u << u;
        else
          edge |= 1u << u;
        grad[u] = gp[s];
      }
#pragma unroll
      for (int k = 0; k < KG; ++k)
        v[u][k] = (in_span && b.plan.is_used(k)) ? gp[s + b.plan.offset[k]] : scalar_t(0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const index_t s = base + u * step;
      if ((fast >> u) & 1u) gxp[s] = static_cast<scalar_t>(b.combine(v[u]));
      if ((interior >> u) & 1u) {
        index_t idx[KR];
        scalar_t staged[KR];
#pragma unroll
        for (int k = 0; k < KR; ++k) {
          idx[k] = s - plan.offset[k];
          staged[k] = plan.is_used(k) ? xs[idx[k]] : scalar_t(0);
        }
        add_slot_derivatives(plan, coef, grad[u], idx, staged, sums);
      }
    }
    adjoint_general_elements(general, base, step, gp, gxp, b.plan, b.t, pi, g.padding);
    while (edge != 0) {
      const int u = __ffs(edge) - 1;
      edge &= edge - 1;
      const index_t s = base + u * step;
      index_t c[3], idx[KR];
      scalar_t staged[KR];
      pi.unravel(s, c);
      plan.gather_indices(s, c, pi.size, g.padding, idx);
#pragma unroll
      for (int k = 0; k < KR; ++k) staged[k] = (plan.is_used(k) && idx[k] >= 0) ? xs[idx[k]] : scalar_t(0);
      add_slot_derivatives(plan, coef, gp[s], idx, staged, sums);
    }
  }
  block_sum3(sums, out);
}

// ---------------------------------------------------------------------------
// Plane kernels: 1D and 2D inputs (ndim <= 2) whose (n, c) plane fits in
// shared memory, one block per plane. The block stages its planes with
// 16-byte loads, reads every tap from shared memory through per-axis index
// tables (the padding map evaluated once per row and per column), and writes
// its output with 16-byte stores. 3D inputs, larger planes and 64-bit
// indexing take the kernels above.
//
// Forward: the same taps, slot weights and slot order as
// shift_forward_kernel (bit-identical). Backward (both gradients in one
// pass over the planes): the input gradient is the adjoint S_W^T (S_H^T g)
// taken one axis at a time, the H axis into a float plane T, then the W
// axis (the padding map is per axis, so the shift is separable); equal to
// the separate kernel's adjoint up to float rounding (another summation
// order). The shift gradient is shift_shifts_backward_kernel's per-element
// sum (floor taps, same slot order), reduced per block: no atomics,
// deterministic.

constexpr int kPlaneMaxThreads = 256;
constexpr int64_t kPlaneSmemBytes = 48 * 1024;

LO_HD constexpr int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

int64_t plane_table_bytes(const ShiftGeometry& g) { return 2 * (g.size[1] + g.size[2]) * int64_t(sizeof(int32_t)); }

int64_t plane_forward_smem(const ShiftGeometry& g, int64_t element_size) {
  return align16(g.plane() * element_size) + plane_table_bytes(g);
}

// Shared memory of the plane backward: the staged grad_output and input
// planes, the float plane T and the index tables. kSplit puts T where the
// input plane was (T is written after the last read of the input).
template <bool kSplit>
LO_HD constexpr int64_t plane_backward_t_offset(int64_t n, int64_t element_size) {
  return (kSplit ? 1 : 2) * align16(n * element_size);
}
template <bool kSplit>
LO_HD constexpr int64_t plane_backward_tables_offset(int64_t n, int64_t element_size, int64_t acc_size) {
  const int64_t plane = align16(n * element_size), t_plane = align16(n * acc_size);
  return kSplit ? plane + (plane > t_plane ? plane : t_plane) : 2 * plane + t_plane;
}

template <bool kSplit>
int64_t plane_backward_smem(const ShiftGeometry& g, int64_t element_size, int64_t acc_size) {
  return plane_backward_tables_offset<kSplit>(g.plane(), element_size, acc_size) + plane_table_bytes(g);
}

bool plane_kernel_applies(const ShiftGeometry& g, int64_t smem_bytes) {
  return g.ndim <= 2 && !needs_wide_index(g) && smem_bytes <= kPlaneSmemBytes;
}

int plane_threads(const ShiftGeometry& g, int vector) {
  const int64_t want = (g.plane() / vector + 31) / 32 * 32;
  return static_cast<int>(std::min<int64_t>(kPlaneMaxThreads, std::max<int64_t>(64, want)));
}

// Row (premultiplied by W) and column index tables of one set of taps:
// rows[k * H + h] = pad_index(h - f_H - k) * W, cols[k * W + w] =
// pad_index(w - f_W - k), -1 where the padding is a zero.
__device__ void build_plane_tables(const BlockTaps& bt, int H, int W, PadMode mode, int* rows, int* cols) {
  const int fh = static_cast<int>(bt.axis[1].f), fw = static_cast<int>(bt.axis[2].f);
  for (int i = threadIdx.x; i < 2 * H; i += blockDim.x) {
    const int k = i >= H, h = i - k * H;
    const int r = pad_index_t<int>(h - fh - k, H, mode);
    rows[i] = r < 0 ? -1 : r * W;
  }
  for (int i = threadIdx.x; i < 2 * W; i += blockDim.x) {
    const int k = i >= W, w = i - k * W;
    cols[i] = pad_index_t<int>(w - fw - k, W, mode);
  }
}

// 16 bytes of V = 16 / sizeof(scalar_t) values, built in registers (the
// element index j is a compile-time constant after unrolling).
template <typename scalar_t>
struct VecPack {
  uint32_t w[4] = {0, 0, 0, 0};
  __device__ __forceinline__ void set(int j, scalar_t v) {
    if constexpr (sizeof(scalar_t) == 4) {
      memcpy(&w[j], &v, 4);
    } else if constexpr (sizeof(scalar_t) == 2) {
      uint16_t b;
      memcpy(&b, &v, 2);
      w[j / 2] = (j % 2 == 0) ? ((w[j / 2] & 0xffff0000u) | b) : ((w[j / 2] & 0xffffu) | (uint32_t(b) << 16));
    } else {
      static_assert(sizeof(scalar_t) == 8, "2, 4 or 8 bytes");
      uint64_t b;
      memcpy(&b, &v, 8);
      w[2 * j] = static_cast<uint32_t>(b);
      w[2 * j + 1] = static_cast<uint32_t>(b >> 32);
    }
  }
  __device__ __forceinline__ uint4 get() const { return make_uint4(w[0], w[1], w[2], w[3]); }
  __device__ __forceinline__ void set_all(uint4 v) {
    w[0] = v.x;
    w[1] = v.y;
    w[2] = v.z;
    w[3] = v.w;
  }
};

// The 16 bytes from byte `at` on of a 16-byte-aligned shared buffer: one
// aligned 16-byte load, or two and a funnel shift when at % 16 != 0 (a row
// shift that is not a multiple of the vector), instead of one load per
// element (a 2-byte element's load costs a wavefront like a 16-byte one).
// Reads up to the aligned 16 bytes after the first: the caller keeps the 16
// bytes from `at` inside a buffer whose size is a multiple of 16.
__device__ __forceinline__ uint4 load_shared16(const unsigned char* base, int at) {
  const uint4* v = reinterpret_cast<const uint4*>(base + (at & ~15));
  const int m = at & 15;
  const uint4 a = v[0];
  if (m == 0) return a;
  const uint4 b = v[1];
  const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
  // Words from m / 4 on (selects on its two bits, no indexed registers),
  // then the bytes from m % 4 on.
  uint32_t t[5];
#pragma unroll
  for (int i = 0; i < 5; ++i) {
    const uint32_t two = (m & 8) ? w[i + 2] : w[i], three = (m & 8) ? w[i + 3] : w[i + 1];
    t[i] = (m & 4) ? three : two;
  }
  const unsigned bits = (m & 3) * 8;
  return make_uint4(__funnelshift_r(t[0], t[1], bits), __funnelshift_r(t[1], t[2], bits),
                    __funnelshift_r(t[2], t[3], bits), __funnelshift_r(t[3], t[4], bits));
}

// The V values from element (h, w) of a plane of width W on, continuing into
// the next rows.
template <typename scalar_t, typename F>
__device__ __forceinline__ uint4 pack_elements(int h, int w, int W, F& value) {
  constexpr int V = 16 / int(sizeof(scalar_t));
  VecPack<scalar_t> pack;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    pack.set(j, value(h, w));
    if (++w == W) {
      w = 0;
      ++h;
    }
  }
  return pack.get();
}

// The elements [done, n) one at a time.
template <typename scalar_t, typename F>
__device__ __forceinline__ void write_elements(scalar_t* __restrict__ dst, int done, int n, int W, F& value) {
  for (int s = done + threadIdx.x; s < n; s += blockDim.x) {
    const int h = s / W;
    dst[s] = value(h, s - h * W);
  }
}

// dst[s] = value(h, w) for the n elements of a plane of width W: V elements
// per thread and 16-byte stores when dst is 16-byte aligned, else one
// element at a time.
template <typename scalar_t, typename F>
__device__ __forceinline__ void write_plane(scalar_t* __restrict__ dst, int n, int W, F&& value) {
  constexpr int V = 16 / int(sizeof(scalar_t));
  int done = 0;
  if (V > 1 && reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    const int vectors = n / V;
    for (int i = threadIdx.x; i < vectors; i += blockDim.x) {
      const int h = (i * V) / W;
      reinterpret_cast<uint4*>(dst)[i] = pack_elements<scalar_t>(h, i * V - h * W, W, value);
    }
    done = vectors * V;
  }
  write_elements(dst, done, n, W, value);
}

// write_plane for the forward: a vector within one row (every vector when
// W % V == 0) is filled by row(h, w, pack) with the V values from (h, w) on,
// which reads the row's table entries once and interior columns at constant
// offsets; the others take value(h, w). (h, w) advance by the block's stride
// without a division.
template <typename scalar_t, typename R, typename F>
__device__ __forceinline__ void write_plane_rows(scalar_t* __restrict__ dst, int n, int W, R&& row, F&& value) {
  constexpr int V = 16 / int(sizeof(scalar_t));
  int done = 0;
  if (V > 1 && reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    const int vectors = n / V;
    const int stride = blockDim.x * V, dh = stride / W, dw = stride - dh * W;
    int h = (threadIdx.x * V) / W, w = threadIdx.x * V - h * W;
    for (int i = threadIdx.x; i < vectors; i += blockDim.x) {
      if (w + V <= W) {
        VecPack<scalar_t> pack;
        row(h, w, pack);
        reinterpret_cast<uint4*>(dst)[i] = pack.get();
      } else {
        reinterpret_cast<uint4*>(dst)[i] = pack_elements<scalar_t>(h, w, W, value);
      }
      w += dw;
      h += dh;
      if (w >= W) {
        w -= W;
        ++h;
      }
    }
    done = vectors * V;
  }
  write_elements(dst, done, n, W, value);
}

// write_plane for a value that takes a general form only within `near` of
// either end of a row (the fold of an axis adjoint). When every row is whole
// vectors (W % V == 0) and dst is 16-byte aligned, the vectors clear of both
// ends take interior(h, w) in one loop, the others edge(h, w) in a second,
// so that the threads of a warp take one path together; else every element
// takes edge (the same values: interior must equal edge away from the ends).
template <typename scalar_t, typename FI, typename FE>
__device__ __forceinline__ void write_plane_split(scalar_t* __restrict__ dst, int n, int W, int near,
                                                  FI&& interior, FE&& edge) {
  constexpr int V = 16 / int(sizeof(scalar_t));
  if (V == 1 || W % V != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0) {
    write_plane(dst, n, W, edge);
    return;
  }
  const int per_row = W / V, H = n / W;
  near = min(near, W);
  // Vectors [0, lead) touch [0, near); [tail, per_row) touch [W - near, W).
  const int lead = (near + V - 1) / V, tail = max(lead, (W - near) / V);
  const int mid = tail - lead, edges = per_row - mid;
  uint4* out = reinterpret_cast<uint4*>(dst);
  if (mid > 0) {
    const int dh = blockDim.x / mid, dv = blockDim.x - dh * mid;
    int h = threadIdx.x / mid, v = threadIdx.x - h * mid;
    for (int i = threadIdx.x; i < H * mid; i += blockDim.x) {
      const int w = (lead + v) * V;
      VecPack<scalar_t> pack;
#pragma unroll
      for (int j = 0; j < V; ++j) pack.set(j, interior(h, w + j));
      out[h * per_row + lead + v] = pack.get();
      v += dv;
      h += dh;
      if (v >= mid) {
        v -= mid;
        ++h;
      }
    }
  }
  for (int i = threadIdx.x; i < H * edges; i += blockDim.x) {
    const int h = i / edges, k = i - h * edges, vector = k < lead ? k : k + mid;
    const int w = vector * V;
    VecPack<scalar_t> pack;
#pragma unroll
    for (int j = 0; j < V; ++j) pack.set(j, edge(h, w + j));
    out[h * per_row + vector] = pack.get();
  }
}

template <typename scalar_t>
__device__ void fill_plane_nan(scalar_t* __restrict__ dst, int n) {
  for (int s = threadIdx.x; s < n; s += blockDim.x) dst[s] = quiet_nan<scalar_t>();
}

// Tap weights of one axis: w[0] = 1 - t, w[1] = t; two taps where t != 0.
template <typename acc_t>
struct AxisWeights {
  acc_t w[2];
  int taps;
  __device__ explicit AxisWeights(double t_double) {
    const acc_t t = static_cast<acc_t>(t_double);
    w[0] = acc_t(1) - t;
    w[1] = t;
    taps = t != acc_t(0) ? 2 : 1;
  }
};

template <typename scalar_t, bool kActive>
__global__ void __launch_bounds__(kPlaneMaxThreads)
    shift_plane_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, ShiftsRef shifts,
                               ShiftGeometry g) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char plane_smem[];
  const int H = static_cast<int>(g.size[1]), W = static_cast<int>(g.size[2]), n = H * W;
  scalar_t* xs = reinterpret_cast<scalar_t*>(plane_smem);
  int* rows = reinterpret_cast<int*>(plane_smem + align16(int64_t(n) * sizeof(scalar_t)));
  int* cols = rows + 2 * H;
  const int64_t offset = int64_t(blockIdx.x) * n;
  __shared__ PlaneTaps taps;
  taps.compute(shifts, g, /*floor=*/kActive, /*rounded=*/!kActive);
  stage_planes<scalar_t, 1>(xs, x + offset, nullptr, nullptr, n);
  __syncthreads();
  const BlockTaps bt = taps.get(kActive ? 0 : 1);
  if (!bt.finite) {
    fill_plane_nan(y + offset, n);
    return;
  }
  build_plane_tables(bt, H, W, g.padding, rows, cols);
  __syncthreads();
  constexpr int V = 16 / int(sizeof(scalar_t));
  // Tap 0 of the W axis reads column w - fw; a vector whose columns and
  // their tap-1 neighbours all lie inside the row reads them at constant
  // offsets (the values and the order of the table path).
  const int fw = static_cast<int>(bt.axis[2].f);
  if constexpr (!kActive) {
    auto value = [&](int h, int w) {
      const int r = rows[h], c = cols[w];
      return (r < 0 || c < 0) ? scalar_t(0) : xs[r + c];
    };
    write_plane_rows(
        y + offset, n, W,
        [&](int h, int w, VecPack<scalar_t>& pack) {
          const int r = rows[h], c0 = w - fw;
          if (r < 0) return;  // a zero row of the padding: the pack is zeros
          if (c0 >= 0 && c0 + V <= W) {
            // Inside the staged plane, whose buffer is padded to 16 bytes.
            pack.set_all(load_shared16(plane_smem, (r + c0) * int(sizeof(scalar_t))));
          } else {
#pragma unroll
            for (int j = 0; j < V; ++j) {
              const int c = cols[w + j];
              pack.set(j, c < 0 ? scalar_t(0) : xs[r + c]);
            }
          }
        },
        value);
  } else {
    const AxisWeights<acc_t> wh(bt.axis[1].t), ww(bt.axis[2].t);
    // Slot weights and order of GatherBlock: (H tap, W tap) = 00, 01, 10, 11.
    acc_t weight[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) weight[k] = wh.w[k >> 1] * ww.w[k & 1];
    auto value = [&](int h, int w) {
      acc_t acc = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int kh = k >> 1, kw = k & 1;
        if (kh >= wh.taps || kw >= ww.taps) continue;
        const int r = rows[kh * H + h], c = cols[kw * W + w];
        acc += weight[k] * ((r < 0 || c < 0) ? acc_t(0) : static_cast<acc_t>(xs[r + c]));
      }
      return static_cast<scalar_t>(acc);
    };
    write_plane_rows(
        y + offset, n, W,
        [&](int h, int w, VecPack<scalar_t>& pack) {
          const int r[2] = {rows[h], rows[H + h]}, c0 = w - fw;
          if (c0 >= 1 && c0 + V <= W) {
#pragma unroll
            for (int j = 0; j < V; ++j) {
              acc_t acc = 0;
#pragma unroll
              for (int k = 0; k < 4; ++k) {
                const int kh = k >> 1, kw = k & 1;
                if (kh >= wh.taps || kw >= ww.taps) continue;
                acc += weight[k] * (r[kh] < 0 ? acc_t(0) : static_cast<acc_t>(xs[r[kh] + c0 + j - kw]));
              }
              pack.set(j, static_cast<scalar_t>(acc));
            }
          } else {
#pragma unroll
            for (int j = 0; j < V; ++j) pack.set(j, value(h, w + j));
          }
        },
        value);
  }
}

// The adjoint of one axis (length n, tap k at shift f + k) at input j of a
// line read with stride. E(p) = sum_k w[k] line[p + f + k] (over outputs
// inside [0, n)) is the adjoint into padded coordinate p; the input gradient
// is E(j) plus E(p) of every padded coordinate p outside [0, n) that the
// forward pass read and the padding map sends to j: p in [-lo, -1] and
// [n, n + hi - 1]. Those land within `near` of either end (the filter only
// skips inputs that none can reach).
// Fold targets kept in shared memory per side of an axis (the
// LEARNABLE_OPS_SHIFT_FOLD_TABLE variant): pad_index(-1 - i) and pad_index(n + i)
// for i < kFoldSlots; positions further out are computed inline.
constexpr int kFoldSlots = 8;

struct AxisFold {
  int f, lo, hi, near;
  const int* lo_targets = nullptr;  // [kFoldSlots] or null
  const int* hi_targets = nullptr;
  __device__ AxisFold(int n, int f_, int taps, PadMode mode) : f(f_) {
    lo = max(0, f + taps - 1);
    hi = max(0, -f);
    if (mode == PadMode::Zeros) lo = hi = 0;
    near = max(lo, hi) + 1;
  }
  __device__ __forceinline__ int lo_target(int i, int n, PadMode mode) const {  // pad_index(-i), i >= 1
    return (lo_targets != nullptr && i <= kFoldSlots) ? lo_targets[i - 1] : pad_index_t<int>(-i, n, mode);
  }
  __device__ __forceinline__ int hi_target(int i, int n, PadMode mode) const {  // pad_index(n + i), i >= 0
    return (hi_targets != nullptr && i < kFoldSlots) ? hi_targets[i] : pad_index_t<int>(n + i, n, mode);
  }
};

// E(p) of axis_adjoint: the adjoint into padded coordinate p.
template <int kTaps, typename acc_t, typename V>
__device__ __forceinline__ acc_t axis_extended(const V* __restrict__ line, int stride, int p, int n,
                                               const AxisWeights<acc_t>& aw, const AxisFold& fold) {
  acc_t e = 0;
#pragma unroll
  for (int k = 0; k < kTaps; ++k) {
    const int o = p + fold.f + k;
    if (k < aw.taps && o >= 0 && o < n) e += aw.w[k] * static_cast<acc_t>(line[o * stride]);
  }
  return e;
}

template <int kTaps, typename acc_t, typename V>
__device__ __forceinline__ acc_t axis_adjoint(const V* __restrict__ line, int stride, int j, int n,
                                              const AxisWeights<acc_t>& aw, const AxisFold& fold, PadMode mode) {
  acc_t acc = axis_extended<kTaps>(line, stride, j, n, aw, fold);
  if (j < fold.near || j >= n - fold.near) {
    for (int i = 1; i <= fold.lo; ++i)
      if (fold.lo_target(i, n, mode) == j) acc += axis_extended<kTaps>(line, stride, -i, n, aw, fold);
    for (int i = 0; i < fold.hi; ++i)
      if (fold.hi_target(i, n, mode) == j) acc += axis_extended<kTaps>(line, stride, n + i, n, aw, fold);
  }
  return acc;
}

// Calls f(s, h, w) for the elements s = threadIdx.x + k * blockDim.x of a
// plane of n elements and width W, (h, w) advanced without a division.
template <typename F>
__device__ __forceinline__ void for_each_plane_element(int n, int W, F&& f) {
  const int step = blockDim.x, dh = step / W, dw = step - dh * W;
  int h = threadIdx.x / W, w = threadIdx.x - h * W;
  for (int s = threadIdx.x; s < n; s += step) {
    f(s, h, w);
    w += dw;
    h += dh;
    if (w >= W) {
      w -= W;
      ++h;
    }
  }
}

// Blocks of 256 threads per SM that the plane backward asks ptxas to fit.
// Default variant: 4 (64 registers) for float32, which its 38 KiB of shared
// memory (56x56) would allow 5 of, and 5 (48 registers) for the half types,
// as session 5 measured them (without a bound ptxas now takes 66-72
// registers, 3 blocks; at 48 the half types' sparse kernel spills). kSplit
// (25 KiB in float32): 5, where the half types do not spill.
template <typename scalar_t, bool kSplit>
constexpr int plane_backward_blocks_per_sm() {
  return sizeof(scalar_t) == 8 ? 4 : (kSplit || sizeof(scalar_t) == 2 ? 5 : 4);
}

// kFoldTable: the fold targets of both axes come from a shared table filled
// in the prologue instead of pad_index (an integer modulo) per near element
// and position: a variant chosen by LEARNABLE_OPS_SHIFT_FOLD_TABLE=1, not yet
// timed or tested on a GPU (session 5 ran without it).
// kSplit (LEARNABLE_OPS_SHIFT_BWD_SPLIT=1, not yet run on a GPU): pass 1 as
// two passes, the shift-gradient sums and then T into the input plane's
// shared memory (two planes instead of three: a 56x56 float32 block takes
// 25 KiB), the registers capped for 5 blocks per SM, and pass 2
// with the row ends (where the W fold applies) in a loop of their own, so
// the fold code runs in whole warps instead of beside every vector. The same
// values as the default variant.
template <typename scalar_t, bool kActive, bool kFoldTable, bool kSplit>
__global__ void __launch_bounds__(kPlaneMaxThreads, plane_backward_blocks_per_sm<scalar_t, kSplit>())
    shift_plane_backward_kernel(const scalar_t* __restrict__ go, const scalar_t* __restrict__ x,
                                scalar_t* __restrict__ gx, const double* __restrict__ shifts, ShiftGeometry g,
                                at::opmath_type<scalar_t>* __restrict__ partial) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char plane_smem[];
  const int H = static_cast<int>(g.size[1]), W = static_cast<int>(g.size[2]), n = H * W;
  const int64_t plane_bytes = align16(int64_t(n) * sizeof(scalar_t));
  scalar_t* gs = reinterpret_cast<scalar_t*>(plane_smem);
  scalar_t* xs = reinterpret_cast<scalar_t*>(plane_smem + plane_bytes);
  acc_t* ts = reinterpret_cast<acc_t*>(plane_smem + plane_backward_t_offset<kSplit>(n, sizeof(scalar_t)));
  int* rows = reinterpret_cast<int*>(plane_smem +
                                     plane_backward_tables_offset<kSplit>(n, sizeof(scalar_t), sizeof(acc_t)));
  int* cols = rows + 2 * H;
  const int64_t offset = int64_t(blockIdx.x) * n;
  acc_t* out = partial + int64_t(blockIdx.x) * 3;
  // Floor taps (the shift gradient, and the active adjoint); rounded taps
  // for the sparse adjoint.
  __shared__ PlaneTaps taps;
  taps.compute(shifts, g, /*floor=*/true, /*rounded=*/!kActive);
  stage_planes<scalar_t, 2>(gs, go + offset, xs, x + offset, n);
  __syncthreads();
  const BlockTaps ft = taps.get(0);
  if (!ft.finite) {
    fill_plane_nan(gx + offset, n);
    if (threadIdx.x < 3) out[threadIdx.x] = quiet_nan<acc_t>();
    return;
  }
  build_plane_tables(ft, H, W, g.padding, rows, cols);
  const BlockTaps gt = kActive ? ft : taps.get(1);
  const AxisWeights<acc_t> wh(gt.axis[1].t), ww(gt.axis[2].t);
  AxisFold fold_h(H, static_cast<int>(gt.axis[1].f), wh.taps, g.padding);
  AxisFold fold_w(W, static_cast<int>(gt.axis[2].f), ww.taps, g.padding);
  __shared__ int fold_targets[2][2][kFoldSlots];  // [H, W][low, high][i]
  if constexpr (kFoldTable) {
    if (threadIdx.x < 4 * kFoldSlots) {
      const int axis = threadIdx.x / (2 * kFoldSlots), side = (threadIdx.x / kFoldSlots) % 2,
                i = threadIdx.x % kFoldSlots, len = axis == 0 ? H : W;
      fold_targets[axis][side][i] = pad_index_t<int>(side == 0 ? -1 - i : len + i, len, g.padding);
    }
    fold_h.lo_targets = fold_targets[0][0];
    fold_h.hi_targets = fold_targets[0][1];
    fold_w.lo_targets = fold_targets[1][0];
    fold_w.hi_targets = fold_targets[1][1];
  }
  constexpr int kTaps = kActive ? 2 : 1;
  // Derivative coefficients of derivative_plan: slot (kh, kw), axis H: (+-1) w_W(kw);
  // axis W: w_H(kh) (+-1). Both floor taps on a present axis; H is absent in 1D.
  const acc_t th = static_cast<acc_t>(ft.axis[1].t), tw = static_cast<acc_t>(ft.axis[2].t);
  const int taps_h = g.ndim >= 2 ? 2 : 1;
  acc_t coef_h[4], coef_w[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int kh = k >> 1, kw = k & 1;
    const acc_t wth = kh ? th : acc_t(1) - th, wtw = kw ? tw : acc_t(1) - tw;
    coef_h[k] = (kh ? acc_t(1) : acc_t(-1)) * wtw;
    coef_w[k] = wth * (kw ? acc_t(1) : acc_t(-1));
  }
  __syncthreads();
  // Pass 1: T = S_H^T g into shared memory, and the shift-gradient sums.
  acc_t sum_h = 0, sum_w = 0;
  auto add_derivatives = [&](int s, int h, int w) {
    const acc_t gr = static_cast<acc_t>(gs[s]);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int kh = k >> 1, kw = k & 1;
      if (kh >= taps_h) continue;
      const int r = rows[kh * H + h], c = cols[kw * W + w];
      if (r < 0 || c < 0) continue;
      const acc_t value = gr * static_cast<acc_t>(xs[r + c]);
      sum_h += value * coef_h[k];
      sum_w += value * coef_w[k];
    }
  };
  auto adjoint_h = [&](int s, int h, int w) { ts[s] = axis_adjoint<kTaps>(gs + w, W, h, H, wh, fold_h, g.padding); };
  if constexpr (kSplit) {
    for_each_plane_element(n, W, add_derivatives);
    __syncthreads();  // the last read of xs: T overwrites it
    for_each_plane_element(n, W, adjoint_h);
  } else {
    for_each_plane_element(n, W, [&](int s, int h, int w) {
      adjoint_h(s, h, w);
      add_derivatives(s, h, w);
    });
  }
  __syncthreads();
  // Pass 2: the input gradient S_W^T T.
  auto adjoint_w = [&](int h, int j) {
    return static_cast<scalar_t>(axis_adjoint<kTaps>(ts + h * W, 1, j, W, ww, fold_w, g.padding));
  };
  if constexpr (kSplit) {
    write_plane_split(
        gx + offset, n, W, fold_w.near,
        [&](int h, int j) { return static_cast<scalar_t>(axis_extended<kTaps>(ts + h * W, 1, j, W, ww, fold_w)); },
        adjoint_w);
  } else {
    write_plane(gx + offset, n, W, adjoint_w);
  }
  const acc_t sums[3] = {acc_t(0), sum_h, sum_w};
  block_sum3(sums, out);
}

// The shift gradient of the fused backward from its per-block sums
// partial[(b * C + c) * 3 + axis]: out[c][k] = the sum over b in ascending
// order of axis first_axis + k, in the shifts' dtype. One thread per output
// (the order does not depend on the launch), one launch where partial.sum(0),
// the narrow and the dtype conversion took two or three.
template <typename acc_t, typename out_t>
__global__ void shift_sum_partials_kernel(const acc_t* __restrict__ partial, out_t* __restrict__ out,
                                          int64_t batch, int64_t channels, int first_axis, int ndim) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= channels * ndim) return;
  const int64_t c = i / ndim;
  const acc_t* p = partial + c * 3 + first_axis + (i - c * ndim);
  acc_t total = 0;
  for (int64_t b = 0; b < batch; ++b) total += p[b * channels * 3];
  out[i] = static_cast<out_t>(total);
}

// partial: (batch, channels, 3) in the opmath type of the input.
at::Tensor sum_partials(const at::Tensor& partial, const ShiftGeometry& g, const at::Tensor& shifts) {
  at::Tensor out = at::empty({g.channels, g.ndim}, shifts.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t outputs = g.channels * g.ndim;
  constexpr int kThreads = 128;
  const dim3 grid(static_cast<unsigned>((outputs + kThreads - 1) / kThreads));
  AT_DISPATCH_FLOATING_TYPES(partial.scalar_type(), "shift_sum_partials", [&] {
    using acc_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "shift_sum_partials", [&] {
      shift_sum_partials_kernel<acc_t, scalar_t><<<grid, kThreads, 0, current_stream()>>>(
          partial.const_data_ptr<acc_t>(), out.mutable_data_ptr<scalar_t>(), g.batch, g.channels, g.first_axis(),
          static_cast<int>(g.ndim));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor shifts_as_double(const at::Tensor& shifts) {
  return shifts.detach().to(at::kDouble).contiguous();
}

// Calls launch(index_t(), std::integral_constant<int, kBits>()) for an
// interpolating kernel: 32-bit indices when they fit, and one tap bit per
// axis (3 on the 64-bit path, which covers every ndim).
template <typename F>
void dispatch_interpolating(const ShiftGeometry& g, F&& launch) {
  if (needs_wide_index(g))
    launch(int64_t(), std::integral_constant<int, 3>());
  else if (g.ndim == 1)
    launch(int32_t(), std::integral_constant<int, 1>());
  else if (g.ndim == 2)
    launch(int32_t(), std::integral_constant<int, 2>());
  else
    launch(int32_t(), std::integral_constant<int, 3>());
}

// The same for a gather of the forward or its adjoint: kBits = 0 (one tap
// per axis) for the sparse shift.
template <typename F>
void dispatch_gather(const ShiftGeometry& g, bool sparse, F&& launch) {
  if (!sparse)
    dispatch_interpolating(g, launch);
  else if (needs_wide_index(g))
    launch(int64_t(), std::integral_constant<int, 0>());
  else
    launch(int32_t(), std::integral_constant<int, 0>());
}

// ShiftsRef of `shifts`: in place when float32 or float64, else of its
// float64 copy, which `keep` holds until the launch.
ShiftsRef shifts_ref(const at::Tensor& shifts, at::Tensor& keep) {
  const auto type = shifts.scalar_type();
  keep = ((type == at::kFloat || type == at::kDouble) && !shifts.is_neg()) ? shifts : shifts_as_double(shifts);
  return {keep.const_data_ptr(), {keep.stride(0), keep.stride(1)}, keep.scalar_type() == at::kFloat};
}

at::Tensor shift_cuda(const at::Tensor& input, const at::Tensor& shifts,
                      c10::string_view padding_mode, c10::string_view mode) {
  check_floating(input, "input");
  const bool active = parse_shift_mode(std::string(mode));
  const ShiftGeometry g =
      make_shift_geometry(input, "input", shifts, std::string(padding_mode), active);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(input.sizes(), x.options());
  if (out.numel() == 0) return out;
  at::Tensor keep;
  const ShiftsRef s = shifts_ref(shifts, keep);
  const int64_t smem = plane_forward_smem(g, x.element_size());
  if (plane_kernel_applies(g, smem)) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_cuda", [&] {
      const int threads = plane_threads(g, 16 / int(sizeof(scalar_t)));
      const dim3 grid(static_cast<unsigned>(g.batch * g.channels));
      if (active)
        shift_plane_forward_kernel<scalar_t, true><<<grid, threads, smem, current_stream()>>>(
            x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), s, g);
      else
        shift_plane_forward_kernel<scalar_t, false><<<grid, threads, smem, current_stream()>>>(
            x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), s, g);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_cuda", [&] {
    dispatch_gather(g, !active, [&](auto index_tag, auto bits) {
      using index_t = decltype(index_tag);
      constexpr int kBits = decltype(bits)::value;
      const PlaneLaunch l = plane_launch(g, gather_unroll<scalar_t, kBits>());
      shift_forward_kernel<scalar_t, index_t, kBits><<<l.grid, l.threads, 0, current_stream()>>>(
          x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), s, g, plane_index<index_t>(g),
          l.chunk);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor shift_input_backward_cuda(const at::Tensor& grad_output, const at::Tensor& shifts,
                                     c10::string_view padding_mode, c10::string_view mode) {
  check_floating(grad_output, "grad_output");
  const bool active = parse_shift_mode(std::string(mode));
  const ShiftGeometry g =
      make_shift_geometry(grad_output, "grad_output", shifts, std::string(padding_mode), active);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor go = grad_output.contiguous();
  at::Tensor gx = at::empty(grad_output.sizes(), go.options());
  if (gx.numel() == 0) return gx;
  const at::Tensor s = shifts_as_double(shifts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "shift_input_backward_cuda", [&] {
    dispatch_gather(g, !active, [&](auto index_tag, auto bits) {
      using index_t = decltype(index_tag);
      constexpr int kBits = decltype(bits)::value;
      const PlaneLaunch l = plane_launch(g, gather_unroll<scalar_t, kBits>());
      shift_input_backward_kernel<scalar_t, index_t, kBits><<<l.grid, l.threads, 0, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), s.const_data_ptr<double>(),
          g, plane_index<index_t>(g), l.chunk);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return gx;
}

at::Tensor shift_shifts_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& shifts, c10::string_view padding_mode) {
  const ShiftGeometry g = check_shift_backward_args(grad_output, input, shifts,
                                                    std::string(padding_mode), /*active=*/true);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto acc_type = at::toOpMathType(input.scalar_type());
  if (input.numel() == 0) return at::zeros_like(shifts, at::MemoryFormat::Contiguous);
  const at::Tensor go = grad_output.contiguous(), x = input.contiguous();
  const at::Tensor s = shifts_as_double(shifts);
  at::Tensor partial;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_shifts_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_interpolating(g, [&](auto index_tag, auto bits) {
      using index_t = decltype(index_tag);
      constexpr int kBits = decltype(bits)::value;
      const PlaneLaunch l = plane_launch(g, reduce_unroll<scalar_t>());
      partial = at::empty({g.batch, g.channels, l.chunks, 3}, input.options().dtype(acc_type));
      shift_shifts_backward_kernel<scalar_t, index_t, kBits><<<l.grid, l.threads, 0, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), s.const_data_ptr<double>(), g,
          plane_index<index_t>(g), l.chunk, partial.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return partial.sum(at::IntArrayRef{0, 2})
      .narrow(1, g.first_axis(), g.ndim)
      .to(shifts.scalar_type())
      .contiguous();
}

// Both gradients: (shift_input_backward, shift_shifts_backward). The input
// gradient is bit-identical to shift_input_backward; the shift gradient
// equals shift_shifts_backward up to float rounding (another summation order).
std::tuple<at::Tensor, at::Tensor> shift_backward_cuda(const at::Tensor& grad_output,
                                                       const at::Tensor& input, const at::Tensor& shifts,
                                                       c10::string_view padding_mode,
                                                       c10::string_view mode) {
  const bool active = parse_shift_mode(std::string(mode));
  const ShiftGeometry g =
      check_shift_backward_args(grad_output, input, shifts, std::string(padding_mode), active);
  const c10::cuda::CUDAGuard guard(input.device());
  if (input.numel() == 0)
    return {at::empty(grad_output.sizes(), grad_output.options()),
            at::zeros_like(shifts, at::MemoryFormat::Contiguous)};
  const auto acc_type = at::toOpMathType(input.scalar_type());
  // The choice of kernel does not depend on the variant switches below.
  const int64_t plane_smem =
      plane_backward_smem<false>(g, input.element_size(), c10::elementSize(acc_type));
  const bool plane = plane_kernel_applies(g, plane_smem);
  // Without the plane kernel: the staged kernel below for half types (it
  // paid there), the two separate kernels for float and double (the staged
  // kernel ran 8-29% slower than they did in float32 on an H100).
  const bool half = input.scalar_type() == at::kHalf || input.scalar_type() == at::kBFloat16;
  if (!plane && !(half && fits_staged_plane(g, input.element_size())))
    return {shift_input_backward_cuda(grad_output, shifts, padding_mode, mode),
            shift_shifts_backward_cuda(grad_output, input, shifts, padding_mode)};
  const at::Tensor go = grad_output.contiguous(), x = input.contiguous();
  at::Tensor gx = at::empty(grad_output.sizes(), go.options());
  const at::Tensor s = shifts_as_double(shifts);
  at::Tensor partial = at::empty({g.batch, g.channels, 3}, input.options().dtype(acc_type));
  if (plane) {
    // Tuning switches read at every call, so that one build can time the
    // variants. The defaults are the fastest measured (H100, 64x96x56x56,
    // session 6 run 2): the split pass 1 with the fold table took the fp32
    // active reflect backward from 219 to 143 us, active periodic from 188 to
    // 142 us, sparse reflect from 173 to 130 us and zeros from 129 to 125 us
    // (bf16 active reflect 196 -> 154 us). LEARNABLE_OPS_SHIFT_FOLD_TABLE=0 and
    // LEARNABLE_OPS_SHIFT_BWD_SPLIT=0 turn either off.
    auto env_on = [](const char* name) {
      const char* value = std::getenv(name);
      return value == nullptr || value[0] != '0';
    };
    const bool fold_table = env_on("LEARNABLE_OPS_SHIFT_FOLD_TABLE");
    const bool split = env_on("LEARNABLE_OPS_SHIFT_BWD_SPLIT");
    const int64_t smem = split ? plane_backward_smem<true>(g, input.element_size(), c10::elementSize(acc_type))
                               : plane_smem;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const int threads = plane_threads(g, 16 / int(sizeof(scalar_t)));
      const dim3 grid(static_cast<unsigned>(g.batch * g.channels));
      auto launch = [&](auto active_tag, auto table_tag, auto split_tag) {
        shift_plane_backward_kernel<scalar_t, decltype(active_tag)::value, decltype(table_tag)::value,
                                    decltype(split_tag)::value><<<grid, threads, smem, current_stream()>>>(
            go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(),
            s.const_data_ptr<double>(), g, partial.mutable_data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      auto with_split = [&](auto active_tag, auto table_tag) {
        if (split)
          launch(active_tag, table_tag, std::true_type());
        else
          launch(active_tag, table_tag, std::false_type());
      };
      auto with_table = [&](auto active_tag) {
        if (fold_table)
          with_split(active_tag, std::true_type());
        else
          with_split(active_tag, std::false_type());
      };
      if (active)
        with_table(std::true_type());
      else
        with_table(std::false_type());
    });
    return {gx, sum_partials(partial, g, shifts)};
  }
  const size_t staged_bytes = static_cast<size_t>(g.plane() * input.element_size());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto launch = [&](auto gather_bits, auto reduce_bits) {
      constexpr int kBitsGather = decltype(gather_bits)::value;
      constexpr int kBitsReduce = decltype(reduce_bits)::value;
      const PlaneLaunch l = plane_launch(g, fused_unroll<scalar_t, kBitsGather>(), g.plane());
      shift_backward_kernel<scalar_t, kBitsGather, kBitsReduce>
          <<<l.grid, l.threads, staged_bytes, current_stream()>>>(
              go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(),
              s.const_data_ptr<double>(), g, plane_index<int32_t>(g), partial.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    // Sparse: one rounded tap per axis for the input gradient; active: the
    // floor taps of both gradients.
    auto for_mode = [&](auto reduce_bits) {
      if (active)
        launch(reduce_bits, reduce_bits);
      else
        launch(std::integral_constant<int, 0>(), reduce_bits);
    };
    if (g.ndim == 1)
      for_mode(std::integral_constant<int, 1>());
    else if (g.ndim == 2)
      for_mode(std::integral_constant<int, 2>());
    else
      for_mode(std::integral_constant<int, 3>());
  });
  return {gx, sum_partials(partial, g, shifts)};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) {
  m.impl("shift", &shift_cuda);
  m.impl("shift_input_backward", &shift_input_backward_cuda);
  m.impl("shift_shifts_backward", &shift_shifts_backward_cuda);
  m.impl("shift_backward", &shift_backward_cuda);
}

}  // namespace learnable_ops
