// pad: the CUDA ops. The launch code and kernels are compiled once per dtype
// (pad_launch.cuh, included by pad_float.cu, pad_double.cu, pad_half.cu and
// pad_bfloat16.cu); the argument checks and plan come from pad_plan.h, exactly
// as on the CPU.
#include <algorithm>
#include <cstdlib>

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/pad_plan.h"

namespace learnable_ops {

// Defined per dtype in pad_launch.cuh: the pad (forward) or its adjoint.
template <typename scalar_t>
void pad_typed(const at::Tensor& src, at::Tensor& dst, const PadPlan& plan, bool small, bool forward);

namespace {

// 32-bit index arithmetic (much cheaper division and modulo) when every
// index, including the grid-stride overshoot and the preimage enumeration's
// far bounds, fits comfortably.
bool fits_int32(const PadPlan& plan, int64_t in_numel, int64_t out_numel) {
  constexpr int64_t kLimit = int64_t(1) << 30;
  int64_t extent = 0;
  for (int a = 0; a < 3; ++a)
    extent = std::max(extent, plan.in[a] + plan.out[a] + std::abs(plan.before[a]));
  return in_numel < kLimit && out_numel < kLimit && 4 * extent < kLimit;
}

at::Tensor pad_cuda(const at::Tensor& input, at::IntArrayRef pad, c10::string_view mode_name,
                    at::OptionalIntArrayRef order, at::OptionalIntArrayRef dilation) {
  check_floating(input, "input");
  const PadPlan plan =
      make_pad_plan(input.sizes(), pad, parse_pad_mode(std::string(mode_name)), order, dilation);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(plan.out_shape, x.options());
  if (out.numel() == 0) return out;
  if (x.numel() == 0) return out.zero_();
  const bool small = fits_int32(plan, x.numel(), out.numel());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pad_cuda",
                                  [&] { pad_typed<scalar_t>(x, out, plan, small, true); });
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
  if (gx.numel() == 0) return gx;
  if (gy.numel() == 0) return gx.zero_();
  const bool small = fits_int32(plan, gx.numel(), gy.numel());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "pad_backward_cuda",
                                  [&] { pad_typed<scalar_t>(gy, gx, plan, small, false); });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) {
  m.impl("pad", &pad_cuda);
  m.impl("pad_backward", &pad_backward_cuda);
}

}  // namespace learnable_ops
