// diff_conv2d_pad_layout on CUDA: the layout kernels of cuda/diffconv_layout.cuh
// (the polynomial pad, or its adjoint, from either layout into either layout).
// Axes whose lists do not fit the kernels' shared tables (DiffConv2d kernel
// sizes above 32) take the composition of the CPU op (the pad op, then a
// layout copy).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <type_traits>

#include "diffconv_layout.cuh"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/diffconv_layout.h"
#include "learnable_ops/env_switch.h"

namespace learnable_ops {
namespace {

using diffconv_layout::Args;
using diffconv_layout::Axis;
using diffconv_layout::kMaxTaps;
using diffconv_layout::kTile;
using diffconv_layout::kTileRows;

template <bool kAdjoint, bool kSrcChannelsLast, bool kDstChannelsLast, int R, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kTile * kTileRows) pad_layout_kernel(const Args<scalar_t> a) {
  __shared__ diffconv_layout::Shared<acc_t, R> sh;
  const diffconv_layout::Slot s =
      diffconv_layout::make_slot<kAdjoint, R>(a, int64_t(blockIdx.x), int(threadIdx.x), int(threadIdx.y));
  diffconv_layout::lists<kAdjoint>(s, a, sh);
  __syncthreads();
  diffconv_layout::gather<kAdjoint, kSrcChannelsLast>(s, a, sh);
  __syncthreads();
  diffconv_layout::store<kAdjoint, kDstChannelsLast>(s, a, sh);
}

// Blocks of R destination rows (diffconv_layout.cuh).
template <int R, bool kAdjoint, typename scalar_t>
void launch_rows(Args<scalar_t> a, bool src_cl, bool dst_cl) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t blocks = diffconv_layout::plan<kAdjoint, R>(a);
  TORCH_CHECK(blocks <= int64_t(INT32_MAX) && a.C <= int64_t(INT32_MAX) - kTile,
              "diff_conv2d_pad_layout: tensor too large for one launch");
  const dim3 grid{unsigned(blocks)}, block{unsigned(kTile), unsigned(kTileRows)};
  auto go = [&](auto kernel) {
    kernel<<<grid, block, 0, current_stream()>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  if (src_cl && dst_cl) go(pad_layout_kernel<kAdjoint, true, true, R, scalar_t, acc_t>);
  else if (src_cl) go(pad_layout_kernel<kAdjoint, true, false, R, scalar_t, acc_t>);
  else if (dst_cl) go(pad_layout_kernel<kAdjoint, false, true, R, scalar_t, acc_t>);
  else go(pad_layout_kernel<kAdjoint, false, false, R, scalar_t, acc_t>);
}

// Blocks of kRowsWide rows (4, or 2 for double), whose loads are all in flight
// together, by default: on an H100 (torch 2.11, 16x64x128x128 fp32, session 9)
// they ran the channels_last pad in 93 us against 139 us for blocks of one row,
// and dense K = 3 / 5 fwd+bwd in 1.29x / 1.02x F.conv2d's time against 1.49x /
// 1.10x (same run). LEARNABLE_OPS_DIFFCONV_LAYOUT_ROWS=1 (read at every call; a
// tuning switch) takes blocks of one row.
bool wide_layout_rows() { return !env_override("LEARNABLE_OPS_DIFFCONV_LAYOUT_ROWS").value_or(false); }

template <bool kAdjoint, typename scalar_t>
void launch(Args<scalar_t> a, bool src_cl, bool dst_cl) {
  if (wide_layout_rows())
    launch_rows<diffconv_layout::kRowsWide<at::opmath_type<scalar_t>>, kAdjoint>(a, src_cl, dst_cl);
  else
    launch_rows<1, kAdjoint>(a, src_cl, dst_cl);
}

// The fold and the pad in place (learnable_ops/diffconv_fold.h), NCHW or
// channels_last: one thread per element of a pass, two passes (two launches on
// the stream). kPass: 0 fold columns, 1 fold rows, 2 pad rows, 3 pad columns.
template <int kPass, typename scalar_t, typename acc_t>
__global__ void in_place_kernel(scalar_t* g, const diffconv_fold::Geometry geo, int64_t items) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < items; e += int64_t(gridDim.x) * blockDim.x)
    diffconv_fold::pass_item<kPass, scalar_t, acc_t>(g, geo, e);
}

template <int kFirst, int kSecond>
void in_place_passes(const at::Tensor& t, const diffconv_fold::Geometry& geo) {
  const c10::cuda::CUDAGuard guard(t.device());
  constexpr int kThreads = 256;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "diff_conv2d_in_place_passes", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scalar_t* g = t.mutable_data_ptr<scalar_t>();
    auto pass = [&](auto which) {
      constexpr int kPass = decltype(which)::value;
      const int64_t items = diffconv_fold::pass_items<kPass>(geo);
      if (items == 0) return;
      in_place_kernel<kPass, scalar_t, acc_t><<<grid_stride_blocks(items, kThreads), kThreads, 0, current_stream()>>>(
          g, geo, items);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    pass(std::integral_constant<int, kFirst>());
    pass(std::integral_constant<int, kSecond>());
  });
}

}  // namespace

void diff_conv2d_fold_cuda(const at::Tensor& grad_padded, const diffconv_fold::Geometry& geo) {
  in_place_passes<0, 1>(grad_padded, geo);
}

void diff_conv2d_pad_ring_cuda(const at::Tensor& padded, const diffconv_fold::Geometry& geo) {
  in_place_passes<2, 3>(padded, geo);
}

namespace {

// The layout kernels on the axes of plan p; copy_only: the image part alone.
at::Tensor pad_layout_launch(const at::Tensor& input, const PadLayoutPlan& p, bool adjoint, bool channels_last,
                             bool copy_only) {
  Axis axes[2];
  for (int i = 0; i < 2; ++i)
    axes[i] = Axis{p.image[i], p.padded[i], p.before[i], p.order[i], p.step[i], copy_only};
  const c10::cuda::CUDAGuard guard(input.device());
  const bool src_cl = strictly_channels_last(input);
  const at::Tensor src = src_cl ? input : input.contiguous();
  at::Tensor out = at::empty(
      p.out_shape,
      src.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "diff_conv2d_pad_layout_cuda", [&] {
    Args<scalar_t> a{};
    a.src = src.const_data_ptr<scalar_t>();
    a.dst = out.mutable_data_ptr<scalar_t>();
    a.N = p.N;
    a.C = p.C;
    a.h = axes[0];
    a.w = axes[1];
    if (adjoint) launch<true>(a, src_cl, channels_last);
    else launch<false>(a, src_cl, channels_last);
  });
  return out;
}

}  // namespace

at::Tensor diff_conv2d_layout_copy_cuda(const at::Tensor& src, const PadLayoutPlan& p, bool adjoint,
                                        bool channels_last) {
  return pad_layout_launch(src, p, adjoint, channels_last, true);
}

namespace {

at::Tensor diff_conv2d_pad_layout_cuda(const at::Tensor& input, at::IntArrayRef padding, at::IntArrayRef order,
                                       at::IntArrayRef dilation, bool adjoint, bool channels_last) {
  const PadLayoutPlan p = plan_pad_layout(input, padding, order, dilation, adjoint);
  if (pad_layout_split()) return pad_layout_split_op(input, p, adjoint, channels_last);
  for (int i = 0; i < 2; ++i) {
    const diffconv_layout::Axis axis{p.image[i], p.padded[i], p.before[i], p.order[i], p.step[i]};
    const int64_t longest = adjoint ? diffconv_layout::longest_list<true>(axis)
                                    : diffconv_layout::longest_list<false>(axis);
    if (longest > kMaxTaps) return pad_layout_composed(input, p, adjoint, channels_last);
  }
  return pad_layout_launch(input, p, adjoint, channels_last, false);
}

}  // namespace

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) { m.impl("diff_conv2d_pad_layout", &diff_conv2d_pad_layout_cuda); }

}  // namespace learnable_ops
