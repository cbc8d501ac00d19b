// pad: CUDA kernels. The index maps come from the shared padding.h, the
// polynomial weights from lagrange.h, the argument checks and plan from
// pad_plan.h, exactly as on the CPU.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/pad_plan.h"

namespace learnable_ops {
namespace {

template <typename I>
struct PadGeometry {
  I in[3], out[3], before[3], order[3], step[3];
  // Input indices [safe_lo, safe_hi) on an axis are read by exactly one output,
  // o = j + before: the backward pass copies them without enumerating preimages.
  I safe_lo[3], safe_hi[3];
  PadMode mode;
};

// The contiguous run of input indices whose only preimage is the copy
// o = j + before (with weight 1 in polynomial mode).
std::pair<int64_t, int64_t> single_preimage_run(const PadPlan& plan, int axis) {
  const int64_t n = plan.in[axis], before = plan.before[axis];
  std::vector<char> single(n, 0);
  if (plan.mode == PadMode::Polynomial) {
    for (int64_t j = 0; j < n; ++j) {
      int count = 0;
      bool identity = false;
      for_each_polynomial_preimage(j, n, before, plan.out[axis], plan.order[axis], plan.step[axis], true,
                                   [&](int64_t o, double w) {
                                     ++count;
                                     identity = identity || (o == j + before && w == 1.0);
                                   });
      single[j] = count == 1 && identity;
    }
  } else {
    const Preimages pre = pad_axis_preimages(plan, axis);
    for (int64_t j = 0; j < n; ++j)
      single[j] = pre.ptr[j + 1] - pre.ptr[j] == 1 && pre.idx[pre.ptr[j]] == j + before;
  }
  int64_t lo = 0;
  while (lo < n && !single[lo]) ++lo;
  int64_t hi = lo;
  while (hi < n && single[hi]) ++hi;
  return {lo, hi};
}

template <typename I>
PadGeometry<I> geometry(const PadPlan& plan) {
  PadGeometry<I> g;
  for (int a = 0; a < 3; ++a) {
    g.in[a] = static_cast<I>(plan.in[a]);
    g.out[a] = static_cast<I>(plan.out[a]);
    g.before[a] = static_cast<I>(plan.before[a]);
    g.order[a] = static_cast<I>(plan.order[a]);
    g.step[a] = static_cast<I>(plan.step[a]);
    g.safe_lo[a] = g.safe_hi[a] = 0;
  }
  g.mode = plan.mode;
  return g;
}

// The backward pass's geometry, with the single-preimage runs (host work the
// forward pass does not need).
template <typename I>
PadGeometry<I> backward_geometry(const PadPlan& plan) {
  PadGeometry<I> g = geometry<I>(plan);
  for (int a = 0; a < 3; ++a) {
    const auto run = single_preimage_run(plan, a);
    g.safe_lo[a] = static_cast<I>(run.first);
    g.safe_hi[a] = static_cast<I>(run.second);
  }
  return g;
}

// 32-bit index arithmetic (several times cheaper modulo) when every index,
// including the preimage enumeration's far bounds, fits comfortably.
bool fits_int32(const PadPlan& plan, int64_t in_numel, int64_t out_numel) {
  constexpr int64_t kLimit = int64_t(1) << 29;
  int64_t extent = 0;
  for (int a = 0; a < 3; ++a)
    extent = std::max(extent, plan.in[a] + plan.out[a] + std::abs(plan.before[a]));
  return in_numel < kLimit && out_numel < kLimit && 4 * extent < kLimit;
}

// Launch layout shared by every kernel below: a block is blockDim.y rows of
// blockDim.x threads; each row is walked by its threadIdx.x lanes (a warp per
// row when rows are wider than 16, several rows per warp when narrower), so the
// row's index decomposition is done once per row, not per element, and
// consecutive lanes touch consecutive addresses. Rows are grid-strided.
#define LO_FOR_EACH_ROW(I, row, rows)                                                   \
  for (I row = I(blockIdx.x) * I(blockDim.y) + I(threadIdx.y); row < (rows);            \
       row += I(gridDim.x) * I(blockDim.y))
#define LO_FOR_EACH_COL(I, col, width) for (I col = I(threadIdx.x); col < (width); col += I(blockDim.x))

template <typename scalar_t, typename I>
__global__ void pad_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                   I rows, PadGeometry<I> g) {
  LO_FOR_EACH_ROW(I, row, rows) {
    const I oh = row % g.out[1];
    const I t = row / g.out[1];
    const I od = t % g.out[0];
    const I b = t / g.out[0];
    const I ih = pad_index_t<I>(oh - g.before[1], g.in[1], g.mode);
    const I id = pad_index_t<I>(od - g.before[0], g.in[0], g.mode);
    scalar_t* yrow = y + row * g.out[2];
    if (ih < 0 || id < 0) {
      LO_FOR_EACH_COL(I, ow, g.out[2]) yrow[ow] = scalar_t(0);
      continue;
    }
    const scalar_t* xrow = x + ((b * g.in[0] + id) * g.in[1] + ih) * g.in[2];
    LO_FOR_EACH_COL(I, ow, g.out[2]) {
      const I iw = pad_index_t<I>(ow - g.before[2], g.in[2], g.mode);
      yrow[ow] = iw < 0 ? scalar_t(0) : xrow[iw];
    }
  }
}

// One thread per input element gathers every output that copied it, in a
// fixed order: deterministic, no atomics. Elements whose only preimage is the
// copy (the safe box) read it directly.
template <typename scalar_t, typename I>
__global__ void pad_backward_kernel(const scalar_t* __restrict__ gy, scalar_t* __restrict__ gx,
                                    I rows, PadGeometry<I> g) {
  using acc_t = at::opmath_type<scalar_t>;
  LO_FOR_EACH_ROW(I, row, rows) {
    const I ih = row % g.in[1];
    const I t = row / g.in[1];
    const I id = t % g.in[0];
    const I b = t / g.in[0];
    const scalar_t* base = gy + b * g.out[0] * g.out[1] * g.out[2];
    scalar_t* gxrow = gx + row * g.in[2];
    const bool row_safe = id >= g.safe_lo[0] && id < g.safe_hi[0] && ih >= g.safe_lo[1] && ih < g.safe_hi[1];
    // Formed only inside the safe box, where every index is in range.
    const scalar_t* copy_row =
        row_safe ? base + ((id + g.before[0]) * g.out[1] + ih + g.before[1]) * g.out[2] + g.before[2] : gy;
    LO_FOR_EACH_COL(I, iw, g.in[2]) {
      if (row_safe && iw >= g.safe_lo[2] && iw < g.safe_hi[2]) {
        gxrow[iw] = copy_row[iw];
        continue;
      }
      acc_t acc = 0;
      for_each_preimage_t<I>(id, g.in[0], g.before[0], g.out[0], g.mode, [&](I od) {
        for_each_preimage_t<I>(ih, g.in[1], g.before[1], g.out[1], g.mode, [&](I oh) {
          const scalar_t* grow = base + (od * g.out[1] + oh) * g.out[2];
          for_each_preimage_t<I>(iw, g.in[2], g.before[2], g.out[2], g.mode,
                                 [&](I ow) { acc += static_cast<acc_t>(grow[ow]); });
        });
      });
      gxrow[iw] = static_cast<scalar_t>(acc);
    }
  }
}

// Polynomial mode: each output is the tensor product of the per-axis
// extrapolation rules (lagrange.h), weights computed in double, summed in
// opmath. Interior outputs take a single term.
template <typename scalar_t>
__global__ void pad_polynomial_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                      int64_t rows, PadGeometry<int64_t> g) {
  using acc_t = at::opmath_type<scalar_t>;
  LO_FOR_EACH_ROW(int64_t, row, rows) {
    const int64_t oh = row % g.out[1];
    const int64_t t = row / g.out[1];
    const int64_t od = t % g.out[0];
    const int64_t b = t / g.out[0];
    const scalar_t* base = x + b * g.in[0] * g.in[1] * g.in[2];
    scalar_t* yrow = y + row * g.out[2];
    const int64_t pd = od - g.before[0], ph = oh - g.before[1];
    if (pd >= 0 && pd < g.in[0] && ph >= 0 && ph < g.in[1]) {
      // An interior row: only the last axis may extrapolate.
      const scalar_t* xrow = base + (pd * g.in[1] + ph) * g.in[2];
      LO_FOR_EACH_COL(int64_t, ow, g.out[2]) {
        const int64_t pw = ow - g.before[2];
        if (pw >= 0 && pw < g.in[2]) {
          yrow[ow] = xrow[pw];
        } else {
          acc_t acc = 0;
          for_each_polynomial_source(pw, g.in[2], g.order[2], g.step[2], [&](int64_t iw, double ww) {
            acc += static_cast<acc_t>(ww) * static_cast<acc_t>(xrow[iw]);
          });
          yrow[ow] = static_cast<scalar_t>(acc);
        }
      }
      continue;
    }
    LO_FOR_EACH_COL(int64_t, ow, g.out[2]) {
      acc_t acc = 0;
      for_each_polynomial_source(pd, g.in[0], g.order[0], g.step[0], [&](int64_t id, double wd) {
        for_each_polynomial_source(ph, g.in[1], g.order[1], g.step[1], [&](int64_t ih, double wh) {
          const scalar_t* xrow = base + (id * g.in[1] + ih) * g.in[2];
          for_each_polynomial_source(ow - g.before[2], g.in[2], g.order[2], g.step[2], [&](int64_t iw, double ww) {
            acc += static_cast<acc_t>(wd * wh * ww) * static_cast<acc_t>(xrow[iw]);
          });
        });
      });
      yrow[ow] = static_cast<scalar_t>(acc);
    }
  }
}

// Exact adjoint: one thread per input element gathers its weighted preimages
// in a fixed order (deterministic, no atomics); the safe box copies.
template <typename scalar_t>
__global__ void pad_polynomial_backward_kernel(const scalar_t* __restrict__ gy, scalar_t* __restrict__ gx,
                                               int64_t rows, PadGeometry<int64_t> g) {
  using acc_t = at::opmath_type<scalar_t>;
  LO_FOR_EACH_ROW(int64_t, row, rows) {
    const int64_t ih = row % g.in[1];
    const int64_t t = row / g.in[1];
    const int64_t id = t % g.in[0];
    const int64_t b = t / g.in[0];
    const scalar_t* base = gy + b * g.out[0] * g.out[1] * g.out[2];
    scalar_t* gxrow = gx + row * g.in[2];
    const bool row_safe = id >= g.safe_lo[0] && id < g.safe_hi[0] && ih >= g.safe_lo[1] && ih < g.safe_hi[1];
    // Formed only inside the safe box, where every index is in range.
    const scalar_t* copy_row =
        row_safe ? base + ((id + g.before[0]) * g.out[1] + ih + g.before[1]) * g.out[2] + g.before[2] : gy;
    LO_FOR_EACH_COL(int64_t, iw, g.in[2]) {
      if (row_safe && iw >= g.safe_lo[2] && iw < g.safe_hi[2]) {
        gxrow[iw] = copy_row[iw];
        continue;
      }
      acc_t acc = 0;
      for_each_polynomial_preimage(id, g.in[0], g.before[0], g.out[0], g.order[0], g.step[0], true, [&](int64_t od, double wd) {
        for_each_polynomial_preimage(ih, g.in[1], g.before[1], g.out[1], g.order[1], g.step[1], true, [&](int64_t oh, double wh) {
          const scalar_t* grow = base + (od * g.out[1] + oh) * g.out[2];
          for_each_polynomial_preimage(iw, g.in[2], g.before[2], g.out[2], g.order[2], g.step[2], true, [&](int64_t ow, double ww) {
            acc += static_cast<acc_t>(wd * wh * ww) * static_cast<acc_t>(grow[ow]);
          });
        });
      });
      gxrow[iw] = static_cast<scalar_t>(acc);
    }
  }
}

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

struct RowLaunch {
  dim3 grid, block;
};

// blockDim.x lanes per row (32, or the next power of two of a narrower row),
// blockDim.y = kThreads / blockDim.x rows per block.
RowLaunch row_launch(int64_t width, int64_t rows) {
  int bx = 32;
  if (width < 32) {
    bx = 1;
    while (bx < width) bx *= 2;
  }
  const int by = kThreads / bx;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((rows + by - 1) / by, kMaxBlocks));
  return {dim3(static_cast<unsigned>(blocks)), dim3(bx, by)};
}

at::Tensor pad_cuda(const at::Tensor& input, at::IntArrayRef pad, c10::string_view mode_name,
                    at::OptionalIntArrayRef order, at::OptionalIntArrayRef dilation) {
  check_floating(input, "input");
  const PadPlan plan =
      make_pad_plan(input.sizes(), pad, parse_pad_mode(std::string(mode_name)), order, dilation);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(plan.out_shape, x.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  if (x.numel() == 0) return out.zero_();
  const int64_t rows = plan.batch * plan.out[0] * plan.out[1];
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pad_cuda", [&] {
    if (plan.mode == PadMode::Polynomial) {
      const RowLaunch l = row_launch(plan.out[2], rows);
      pad_polynomial_kernel<scalar_t><<<l.grid, l.block, 0, current_stream()>>>(
          x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), rows, geometry<int64_t>(plan));
    } else {
      const RowLaunch l = row_launch(plan.out[2], rows);
      if (fits_int32(plan, x.numel(), total)) {
        pad_forward_kernel<scalar_t, int32_t><<<l.grid, l.block, 0, current_stream()>>>(
            x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), int32_t(rows), geometry<int32_t>(plan));
      } else {
        pad_forward_kernel<scalar_t, int64_t><<<l.grid, l.block, 0, current_stream()>>>(
            x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), rows, geometry<int64_t>(plan));
      }
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor pad_backward_cuda(const at::Tensor& grad_output, at::IntArrayRef input_size,
                             at::IntArrayRef pad, c10::string_view mode_name,
                             at::OptionalIntArrayRef order, at::OptionalIntArrayRef dilation) {
  check_floating(grad_output, "grad_output");
  const PadPlan plan = make_pad_plan(input_size, pad, parse_pad_mode(std::string(mode_name)),
                                     order, dilation, "input_size");
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(plan.out_shape),
                    "grad_output must have shape ", at::IntArrayRef(plan.out_shape), ", got ",
                    grad_output.sizes());
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor gy = grad_output.contiguous();
  at::Tensor gx = at::empty(input_size, gy.options());
  const int64_t total = gx.numel();
  if (total == 0) return gx;
  if (gy.numel() == 0) return gx.zero_();
  const int64_t rows = plan.batch * plan.in[0] * plan.in[1];
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "pad_backward_cuda", [&] {
    if (plan.mode == PadMode::Polynomial) {
      const RowLaunch l = row_launch(plan.in[2], rows);
      pad_polynomial_backward_kernel<scalar_t><<<l.grid, l.block, 0, current_stream()>>>(
          gy.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), rows, backward_geometry<int64_t>(plan));
    } else {
      const RowLaunch l = row_launch(plan.in[2], rows);
      if (fits_int32(plan, total, gy.numel())) {
        pad_backward_kernel<scalar_t, int32_t><<<l.grid, l.block, 0, current_stream()>>>(
            gy.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), int32_t(rows), backward_geometry<int32_t>(plan));
      } else {
        pad_backward_kernel<scalar_t, int64_t><<<l.grid, l.block, 0, current_stream()>>>(
            gy.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), rows, backward_geometry<int64_t>(plan));
      }
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) {
  m.impl("pad", &pad_cuda);
  m.impl("pad_backward", &pad_backward_cuda);
}

}  // namespace learnable_ops
