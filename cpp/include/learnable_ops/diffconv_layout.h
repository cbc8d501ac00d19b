// diff_conv2d_pad_layout: the polynomial pad (or its adjoint) of DiffConv2d's
// padded path with the result in NCHW or channels_last. Argument checks and
// geometry shared by the CPU op (cpp/diffconv.cpp: the pad op, then a layout
// copy) and the CUDA kernels (cuda/diffconv.cu, cuda/diffconv_layout.cuh).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/diffconv_fold.h"

namespace learnable_ops {

struct PadLayoutPlan {
  int64_t N, C;
  // Per axis (H, W): image extent, padded extent, pad per side, order, node step.
  std::array<int64_t, 2> image, padded, before, order, step;
  std::vector<int64_t> out_shape;
};

// `src` is the image (adjoint false) or the padded tensor (adjoint true);
// `padding` is the amount added on each side of H and W.
inline PadLayoutPlan plan_pad_layout(const at::Tensor& src, at::IntArrayRef padding, at::IntArrayRef order,
                                     at::IntArrayRef dilation, bool adjoint) {
  check_floating(src, "input");
  TORCH_CHECK_VALUE(src.dim() == 4, "input must be a 4D tensor (N, C, H, W), got shape ", src.sizes());
  TORCH_CHECK_VALUE(padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0,
                    "padding must be two non-negative ints, got ", padding);
  TORCH_CHECK_VALUE(order.size() == 2 && order[0] >= 0 && order[1] >= 0, "order must be two non-negative ints, got ",
                    order);
  TORCH_CHECK_VALUE(dilation.size() == 2 && dilation[0] >= 1 && dilation[1] >= 1,
                    "dilation must be two positive ints, got ", dilation);
  PadLayoutPlan p{};
  p.N = src.size(0);
  p.C = src.size(1);
  for (int a = 0; a < 2; ++a) {
    const int64_t n = src.size(2 + a);
    p.before[a] = padding[a];
    p.order[a] = order[a];
    p.step[a] = dilation[a];
    if (adjoint) {
      TORCH_CHECK_VALUE(n > 2 * padding[a], "input ", a == 0 ? "height " : "width ", n,
                        " is smaller than the padding on both sides (", 2 * padding[a], ") plus one");
      p.padded[a] = n;
      p.image[a] = n - 2 * padding[a];
    } else {
      p.image[a] = n;
      p.padded[a] = n + 2 * padding[a];
    }
    TORCH_CHECK_VALUE(padding[a] == 0 || p.image[a] >= (order[a] + 1) * dilation[a], "the image ",
                      a == 0 ? "height " : "width ", p.image[a], " is smaller than the ", (order[a] + 1) * dilation[a],
                      " samples that extrapolating with order ", order[a], " and dilation ", dilation[a], " needs");
  }
  p.out_shape = {p.N, p.C, adjoint ? p.image[0] : p.padded[0], adjoint ? p.image[1] : p.padded[1]};
  return p;
}

// The op by composition: the pad op (or its backward) on the NCHW tensor, then
// the layout copy. The CPU op, and the CUDA op where its kernels do not apply.
at::Tensor pad_layout_composed(const at::Tensor& src, const PadLayoutPlan& p, bool adjoint, bool channels_last);

// The fold in place (learnable_ops/diffconv_fold.h) of a padded gradient,
// contiguous NCHW or channels_last as geo says: the CPU loops (cpp/diffconv.cpp)
// and the CUDA kernels (cuda/diffconv.cu). The pad in place: the ring of a
// padded tensor whose image part is written, from that image part.
void diff_conv2d_fold_cpu(const at::Tensor& grad_padded, const diffconv_fold::Geometry& geo);
void diff_conv2d_pad_ring_cpu(const at::Tensor& padded, const diffconv_fold::Geometry& geo);
#ifdef LEARNABLE_OPS_WITH_CUDA
void diff_conv2d_fold_cuda(const at::Tensor& grad_padded, const diffconv_fold::Geometry& geo);
void diff_conv2d_pad_ring_cuda(const at::Tensor& padded, const diffconv_fold::Geometry& geo);
// The layout kernels on the image part alone (a plain, transposing copy): the
// pad leaves the ring unwritten, the adjoint reads only the image part.
at::Tensor diff_conv2d_layout_copy_cuda(const at::Tensor& src, const PadLayoutPlan& p, bool adjoint,
                                        bool channels_last);
#endif

// The split layout pass (the default; LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT=0, read
// at every call, takes the one-pass kernels): the pad as a plain layout copy of the image into the
// middle of the padded buffer, then the ring in place (two passes over the
// ring only); the adjoint as the fold in place on the padded gradient, then a
// plain layout copy of its image part. The copies carry no ring work, so every
// block of the layout kernel takes its fast path.
bool pad_layout_split();
// diff_conv2d_pad_layout by the split passes (the adjoint on a copy of `src`).
at::Tensor pad_layout_split_op(const at::Tensor& src, const PadLayoutPlan& p, bool adjoint, bool channels_last);
// The split adjoint that folds `grad_padded` itself in place (a temporary of
// the caller's), then copies its image part into a new tensor.
at::Tensor fold_layout_split(at::Tensor grad_padded, const PadLayoutPlan& p, bool channels_last);

}  // namespace learnable_ops
