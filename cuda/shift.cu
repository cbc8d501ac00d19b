// shift: CUDA kernels of the Sparse/Active shift (forward, input gradient,
// shift gradient). Taps, padding maps and checks are the shared ones
// (shift_plan.h, padding.h), exactly as on the CPU.
//
// Grid: blockIdx.x is one (n, c) plane, blockIdx.y a chunk of it, so a
// block reads its channel's shifts once and the shift-gradient reduction is
// a per-block partial sum (written to its own slot, then summed by at::sum in
// a fixed order): no atomics, deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/shift_plan.h"

namespace learnable_ops {
namespace {

constexpr int kThreads = 256;

struct PlaneLaunch {
  dim3 grid;
  int64_t chunk;   // elements of a plane per block
  int64_t chunks;  // blocks per plane
};

PlaneLaunch plane_launch(const ShiftGeometry& g) {
  const int64_t plane = g.plane();
  int64_t chunk = std::max<int64_t>(int64_t(kThreads) * 8, (plane + 65534) / 65535);
  const int64_t chunks = (plane + chunk - 1) / chunk;
  PlaneLaunch l;
  l.grid = dim3(static_cast<unsigned>(g.batch * g.channels), static_cast<unsigned>(chunks));
  l.chunk = chunk;
  l.chunks = chunks;
  return l;
}

template <typename T>
__device__ __forceinline__ T quiet_nan() {
  return static_cast<T>(__longlong_as_double(0x7ff8000000000000ULL));
}

// Position (d, h, w) of element s of a plane.
template <typename index_t>
__device__ __forceinline__ void unravel(index_t s, const ShiftGeometry& g, index_t& d, index_t& h,
                                        index_t& w) {
  const index_t W = static_cast<index_t>(g.size[2]), H = static_cast<index_t>(g.size[1]);
  w = s % W;
  const index_t rest = s / W;
  h = rest % H;
  d = rest / H;
}

// The chunk [begin, end) of plane blockIdx.x that a block works on, with its
// channel's taps (computed once per thread from the shifts).
template <typename acc_t, typename index_t>
struct BlockPlane {
  int64_t offset;  // of the plane in the tensor
  ChannelTaps ct;
  acc_t t[3];
  index_t begin, end;
  __device__ BlockPlane(const double* shifts, const ShiftGeometry& g, bool rounded, int64_t chunk) {
    const int64_t plane = blockIdx.x;
    offset = plane * g.plane();
    ct = channel_taps(shifts + (plane % g.channels) * g.ndim, g, rounded);
    for (int a = 0; a < 3; ++a) t[a] = static_cast<acc_t>(ct.axis[a].t);
    begin = static_cast<index_t>(blockIdx.y * chunk);
    end = static_cast<index_t>(min(g.plane(), int64_t(begin) + chunk));
  }
};

template <typename scalar_t, typename index_t, bool kActive>
__global__ void shift_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                                     const double* __restrict__ shifts, ShiftGeometry g,
                                     int64_t chunk) {
  using acc_t = at::opmath_type<scalar_t>;
  const BlockPlane<acc_t, index_t> b(shifts, g, /*rounded=*/!kActive, chunk);
  const ChannelTaps& ct = b.ct;
  const acc_t* t = b.t;
  const scalar_t* xp = x + b.offset;
  scalar_t* yp = y + b.offset;
  const index_t D = g.size[0], H = g.size[1], W = g.size[2];
  const index_t fd = ct.axis[0].f, fh = ct.axis[1].f, fw = ct.axis[2].f;
  for (index_t s = b.begin + threadIdx.x; s < b.end; s += blockDim.x) {
    if (!ct.finite) {
      yp[s] = quiet_nan<scalar_t>();
      continue;
    }
    index_t d, h, w;
    unravel(s, g, d, h, w);
    if constexpr (!kActive) {
      const index_t id = pad_index_t<index_t>(d - fd, D, g.padding);
      const index_t ih = pad_index_t<index_t>(h - fh, H, g.padding);
      const index_t iw = pad_index_t<index_t>(w - fw, W, g.padding);
      yp[s] = (id < 0 || ih < 0 || iw < 0) ? scalar_t(0) : xp[(id * H + ih) * W + iw];
    } else {
      acc_t acc = 0;
      for (int kd = 0; kd < (t[0] != acc_t(0) ? 2 : 1); ++kd) {
        const index_t id = pad_index_t<index_t>(d - fd - kd, D, g.padding);
        if (id < 0) continue;
        const acc_t wd = kd ? t[0] : acc_t(1) - t[0];
        for (int kh = 0; kh < (t[1] != acc_t(0) ? 2 : 1); ++kh) {
          const index_t ih = pad_index_t<index_t>(h - fh - kh, H, g.padding);
          if (ih < 0) continue;
          const acc_t wh = kh ? t[1] : acc_t(1) - t[1];
          const scalar_t* row = xp + (id * H + ih) * W;
          for (int kw = 0; kw < (t[2] != acc_t(0) ? 2 : 1); ++kw) {
            const index_t iw = pad_index_t<index_t>(w - fw - kw, W, g.padding);
            if (iw < 0) continue;
            const acc_t ww = kw ? t[2] : acc_t(1) - t[2];
            acc += wd * wh * ww * static_cast<acc_t>(row[iw]);
          }
        }
      }
      yp[s] = static_cast<scalar_t>(acc);
    }
  }
}

// Exact adjoint: each input element gathers, in a fixed order, every output
// whose taps read it (per-axis preimages of the padding map).
template <typename scalar_t, typename index_t>
__global__ void shift_input_backward_kernel(const scalar_t* __restrict__ go, scalar_t* __restrict__ gx,
                                            const double* __restrict__ shifts, ShiftGeometry g,
                                            bool rounded, int64_t chunk) {
  using acc_t = at::opmath_type<scalar_t>;
  const BlockPlane<acc_t, index_t> b(shifts, g, rounded, chunk);
  const ChannelTaps& ct = b.ct;
  const acc_t* t = b.t;
  const scalar_t* gp = go + b.offset;
  scalar_t* xp = gx + b.offset;
  const index_t D = g.size[0], H = g.size[1], W = g.size[2];
  const index_t fd = ct.axis[0].f, fh = ct.axis[1].f, fw = ct.axis[2].f;
  for (index_t s = b.begin + threadIdx.x; s < b.end; s += blockDim.x) {
    if (!ct.finite) {
      xp[s] = quiet_nan<scalar_t>();
      continue;
    }
    index_t d, h, w;
    unravel(s, g, d, h, w);
    acc_t acc = 0;
    for (int kd = 0; kd < (t[0] != acc_t(0) ? 2 : 1); ++kd) {
      const acc_t wd = kd ? t[0] : acc_t(1) - t[0];
      for_each_preimage_t<index_t>(d, D, fd + kd, D, g.padding, [&](index_t od) {
        for (int kh = 0; kh < (t[1] != acc_t(0) ? 2 : 1); ++kh) {
          const acc_t wh = kh ? t[1] : acc_t(1) - t[1];
          for_each_preimage_t<index_t>(h, H, fh + kh, H, g.padding, [&](index_t oh) {
            const scalar_t* row = gp + (od * H + oh) * W;
            for (int kw = 0; kw < (t[2] != acc_t(0) ? 2 : 1); ++kw) {
              const acc_t weight = wd * wh * (kw ? t[2] : acc_t(1) - t[2]);
              for_each_preimage_t<index_t>(w, W, fw + kw, W, g.padding,
                                           [&](index_t ow) { acc += weight * static_cast<acc_t>(row[ow]); });
            }
          });
        }
      });
    }
    xp[s] = static_cast<scalar_t>(acc);
  }
}

// Shift gradient: per element, grad_output times the derivative of the
// multilinear interpolation along each present axis (floor taps, both taps),
// reduced per block into partial[(plane * chunks + blockIdx.y) * 3 + axis].
template <typename scalar_t, typename index_t>
__global__ void shift_shifts_backward_kernel(const scalar_t* __restrict__ go,
                                             const scalar_t* __restrict__ x,
                                             const double* __restrict__ shifts, ShiftGeometry g,
                                             int64_t chunk,
                                             at::opmath_type<scalar_t>* __restrict__ partial) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t reduce[3][kThreads];
  const BlockPlane<acc_t, index_t> b(shifts, g, /*rounded=*/false, chunk);
  const ChannelTaps& ct = b.ct;
  const acc_t* t = b.t;
  const scalar_t* gp = go + b.offset;
  const scalar_t* xp = x + b.offset;
  const index_t D = g.size[0], H = g.size[1], W = g.size[2];
  const index_t fd = ct.axis[0].f, fh = ct.axis[1].f, fw = ct.axis[2].f;
  const int first = g.first_axis();
  acc_t sums[3] = {0, 0, 0};
  for (index_t s = b.begin + threadIdx.x; s < b.end; s += blockDim.x) {
    if (!ct.finite) {
      sums[2] = quiet_nan<acc_t>();
      sums[1] = sums[0] = sums[2];
      continue;
    }
    index_t d, h, w;
    unravel(s, g, d, h, w);
    const acc_t grad = static_cast<acc_t>(gp[s]);
    for (int kd = 0; kd < (first == 0 ? 2 : 1); ++kd) {
      const index_t id = pad_index_t<index_t>(d - fd - kd, D, g.padding);
      if (id < 0) continue;
      const acc_t wd = kd ? t[0] : acc_t(1) - t[0], dd = kd ? acc_t(1) : acc_t(-1);
      for (int kh = 0; kh < (first <= 1 ? 2 : 1); ++kh) {
        const index_t ih = pad_index_t<index_t>(h - fh - kh, H, g.padding);
        if (ih < 0) continue;
        const acc_t wh = kh ? t[1] : acc_t(1) - t[1], dh = kh ? acc_t(1) : acc_t(-1);
        const scalar_t* row = xp + (id * H + ih) * W;
        for (int kw = 0; kw < 2; ++kw) {
          const index_t iw = pad_index_t<index_t>(w - fw - kw, W, g.padding);
          if (iw < 0) continue;
          const acc_t ww = kw ? t[2] : acc_t(1) - t[2], dw = kw ? acc_t(1) : acc_t(-1);
          const acc_t v = grad * static_cast<acc_t>(row[iw]);
          sums[0] += v * dd * wh * ww;
          sums[1] += v * wd * dh * ww;
          sums[2] += v * wd * wh * dw;
        }
      }
    }
  }
  for (int a = 0; a < 3; ++a) reduce[a][threadIdx.x] = sums[a];
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride)
      for (int a = 0; a < 3; ++a) reduce[a][threadIdx.x] += reduce[a][threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x < 3)
    partial[(int64_t(blockIdx.x) * gridDim.y + blockIdx.y) * 3 + threadIdx.x] = reduce[threadIdx.x][0];
}

// 32-bit in-plane indexing when every plane index and every tap coordinate
// i - f - 1 (|f| <= 2n after equivalent_shift) fits with room to spare.
bool needs_wide_index(const ShiftGeometry& g) {
  return g.plane() > std::numeric_limits<int32_t>::max() / 4;
}

at::Tensor shifts_as_double(const at::Tensor& shifts) {
  return shifts.detach().to(at::kDouble).contiguous();
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
  const at::Tensor s = shifts_as_double(shifts);
  const PlaneLaunch l = plane_launch(g);
  const bool wide = needs_wide_index(g);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_cuda", [&] {
    auto launch = [&](auto index_tag, auto active_tag) {
      using index_t = decltype(index_tag);
      shift_forward_kernel<scalar_t, index_t, decltype(active_tag)::value>
          <<<l.grid, kThreads, 0, current_stream()>>>(x.const_data_ptr<scalar_t>(),
                                                      out.mutable_data_ptr<scalar_t>(),
                                                      s.const_data_ptr<double>(), g, l.chunk);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (wide)
      active ? launch(int64_t(), std::true_type()) : launch(int64_t(), std::false_type());
    else
      active ? launch(int32_t(), std::true_type()) : launch(int32_t(), std::false_type());
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
  const PlaneLaunch l = plane_launch(g);
  const bool wide = needs_wide_index(g);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "shift_input_backward_cuda", [&] {
    auto launch = [&](auto index_tag) {
      using index_t = decltype(index_tag);
      shift_input_backward_kernel<scalar_t, index_t><<<l.grid, kThreads, 0, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(),
          s.const_data_ptr<double>(), g, /*rounded=*/!active, l.chunk);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    wide ? launch(int64_t()) : launch(int32_t());
  });
  return gx;
}

at::Tensor shift_shifts_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& shifts, c10::string_view padding_mode) {
  check_floating(grad_output, "grad_output");
  check_floating(input, "input");
  check_same_dtype(grad_output, "grad_output", input, "input");
  check_same_device(grad_output, "grad_output", input, "input");
  TORCH_CHECK_VALUE(grad_output.sizes() == input.sizes(), "grad_output must have the shape of input ",
                    input.sizes(), ", got ", grad_output.sizes());
  const ShiftGeometry g =
      make_shift_geometry(input, "input", shifts, std::string(padding_mode), /*active=*/true);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto acc_type = at::toOpMathType(input.scalar_type());
  if (input.numel() == 0) return at::zeros_like(shifts, at::MemoryFormat::Contiguous);
  const at::Tensor go = grad_output.contiguous(), x = input.contiguous();
  const at::Tensor s = shifts_as_double(shifts);
  const PlaneLaunch l = plane_launch(g);
  at::Tensor partial = at::empty({g.batch, g.channels, l.chunks, 3}, input.options().dtype(acc_type));
  const bool wide = needs_wide_index(g);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shift_shifts_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto launch = [&](auto index_tag) {
      using index_t = decltype(index_tag);
      shift_shifts_backward_kernel<scalar_t, index_t><<<l.grid, kThreads, 0, current_stream()>>>(
          go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), s.const_data_ptr<double>(),
          g, l.chunk, partial.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    wide ? launch(int64_t()) : launch(int32_t());
  });
  return partial.sum(at::IntArrayRef{0, 2})
      .narrow(1, g.first_axis(), g.ndim)
      .to(shifts.scalar_type())
      .contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) {
  m.impl("shift", &shift_cuda);
  m.impl("shift_input_backward", &shift_input_backward_cuda);
  m.impl("shift_shifts_backward", &shift_shifts_backward_cuda);
}

}  // namespace learnable_ops
