// dcls_sparse_depthwise on CUDA. The op logic (tap expansion with ATen ops on
// the device, chain rule to W and P) is shared with the CPU in
// cpp/dcls_sparse.cpp; the corner taps run on the CUDA tap-list kernels of
// cuda/depthwise.cu (tiled shared-memory forward, transposed-form or flipped
// input gradient, per-block partial sums for the tap correlations).
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/tap_conv.h"

namespace learnable_ops {
namespace {

const TapConvBackend kCudaBackend{&tap_conv_forward_cuda, &tap_conv_backward_input_cuda, &tap_conv_correlation_cuda};

at::Tensor dcls_sparse_depthwise_cuda(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
                                      const std::optional<at::Tensor>& bias, at::IntArrayRef dilated_kernel_size,
                                      at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version) {
  const c10::cuda::CUDAGuard guard(input.device());
  return dcls_sparse_depthwise_impl(input, weight, P, bias, dilated_kernel_size, stride, padding, version,
                                    kCudaBackend);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dcls_sparse_depthwise_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
    at::IntArrayRef dilated_kernel_size, at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version,
    bool input_grad) {
  const c10::cuda::CUDAGuard guard(input.device());
  return dcls_sparse_depthwise_backward_impl(grad_output, input, weight, P, dilated_kernel_size, stride, padding,
                                             version, input_grad, kCudaBackend);
}

}  // namespace

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) {
  m.impl("dcls_sparse_depthwise", &dcls_sparse_depthwise_cuda);
  m.impl("dcls_sparse_depthwise_backward", &dcls_sparse_depthwise_backward_cuda);
}

}  // namespace learnable_ops
