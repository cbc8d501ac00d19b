// Tap-list depthwise convolution: the core shared by the dense depthwise conv
// (cpp/depthwise.cpp, every cell of a kh x kw kernel is a tap) and the sparse
// DCLS path (cpp/dcls_sparse.cpp, each learnable tap expands to at most 2^n
// integer corner taps).
//
// For channel c, tap t has an integer offset (u, v) inside the kernel extent
// [0, kh) x [0, kw) and a weight w[c, t]; with stride (sh, sw) and leading
// padding (pt, pl) >= 0,
//   out[n, c, i, j] = bias[c] + sum_t w[c, t] * x[n, c, i*sh - pt + u_t, j*sw - pl + v_t]
// (x = 0 outside the input). This is F.conv2d's cross-correlation with the
// dense kernel K[c, u, v] = sum of the weights of the taps at (u, v).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/ATen.h>
#include <torch/library.h>

namespace learnable_ops {

struct TapConvGeometry {
  int64_t N, C, H, W;    // input
  int64_t Ho, Wo;        // output
  int64_t kh, kw;        // extent of the tap offsets: 0 <= u < kh, 0 <= v < kw
  int64_t sh, sw;        // stride
  int64_t pt, pl;        // leading (top, left) zero padding, >= 0
  bool dense = false;    // the taps are the full kh x kw grid in row-major order
};

// Output size of a correlation with kernel extent k, stride s and paddings
// (before, after) along one axis.
inline int64_t tap_conv_out_size(int64_t size, int64_t k, int64_t s, int64_t before, int64_t after) {
  return (size + before + after - k) / s + 1;
}

// With stride 1 and leading padding below the kernel extent, the adjoint of
// the tap conv (the input gradient) is the tap conv of grad_out with every tap
// (u, v) moved to (kh-1-u, kw-1-v), on this geometry:
inline bool adjoint_is_flipped_conv(const TapConvGeometry& g) {
  return g.sh == 1 && g.sw == 1 && g.pt <= g.kh - 1 && g.pl <= g.kw - 1;
}
inline TapConvGeometry flipped_geometry(const TapConvGeometry& g) {
  TapConvGeometry t = g;
  t.H = g.Ho;
  t.W = g.Wo;
  t.Ho = g.H;
  t.Wo = g.W;
  t.pt = g.kh - 1 - g.pt;
  t.pl = g.kw - 1 - g.pl;
  return t;
}
inline at::Tensor flip_offsets(const at::Tensor& offsets, const TapConvGeometry& g) {
  return at::stack({(g.kh - 1) - offsets.select(2, 0), (g.kw - 1) - offsets.select(2, 1)}, 2).contiguous();
}

// CPU kernels. x/grad_out: (N, C, H, W) and (N, C, Ho, Wo) of one floating
// dtype (any layout); offsets: (C, T, 2) int64, or (1, T, 2) when every
// channel has the same taps, on the CPU for the CPU backend and on x's device
// for the CUDA one; weights: (C, T) in the opmath dtype of x (double for
// double, float otherwise), on x's device.
at::Tensor tap_conv_forward_cpu(const at::Tensor& x, const at::Tensor& offsets,
                                const at::Tensor& weights, const std::optional<at::Tensor>& bias,
                                const TapConvGeometry& g);
// The dense depthwise conv on channels_last x (cpp/depthwise_nhwc.cpp): vectorised over channels,
// each output over the taps that read inside the image; the output channels_last.
at::Tensor depthwise_forward_nhwc_cpu(const at::Tensor& x, const at::Tensor& weights,
                                      const std::optional<at::Tensor>& bias, const TapConvGeometry& g);
// Its weight and bias gradients (corr (C, kh * kw), gbias (C), zeros without `bias`) from
// channels_last x and grad_out: vectorised over channels, each channel summed by one thread in
// a fixed order.
std::tuple<at::Tensor, at::Tensor> depthwise_correlation_nhwc_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                                  const TapConvGeometry& g, bool bias);
// The adjoint with respect to x: (N, C, H, W) in grad_out's dtype.
at::Tensor tap_conv_backward_input_cpu(const at::Tensor& grad_out, const at::Tensor& offsets,
                                       const at::Tensor& weights, const TapConvGeometry& g);
// corr[c, t] = sum_{n,i,j} grad_out[n,c,i,j] * x[n, c, i*sh - pt + u_t, j*sw - pl + v_t]
// (the gradient of the tap weights) and gbias[c] = sum grad_out[:, c]; both in
// the opmath dtype, each channel summed in a fixed order (thread-count independent).
// With bias false gbias may be left zero: the CUDA backend then skips its bias
// kernels; the CPU one sums it anyway, in the pass that converts grad_out.
std::tuple<at::Tensor, at::Tensor> tap_conv_correlation_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& x,
                                                            const at::Tensor& offsets,
                                                            const TapConvGeometry& g, bool bias);

// One device's implementation of the three tap-conv primitives, so the op
// logic (checks, tap construction, chain rule) is written once and registered
// for CPU here and for CUDA in cuda/*.cu.
struct TapConvBackend {
  at::Tensor (*forward)(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                        const TapConvGeometry&);
  at::Tensor (*backward_input)(const at::Tensor&, const at::Tensor&, const at::Tensor&, const TapConvGeometry&);
  std::tuple<at::Tensor, at::Tensor> (*correlation)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const TapConvGeometry&, bool);
  // The dense depthwise conv of a strictly channels_last input (x, weights (C, kh * kw) in the
  // opmath dtype, bias, g) with a channels_last output, or nullptr: such input then takes
  // `forward` (which reads it as NCHW, through a copy) and gives an NCHW output.
  at::Tensor (*forward_channels_last)(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                      const TapConvGeometry&) = nullptr;
  // `correlation` of dense taps for a strictly channels_last x (grad_out read channels_last),
  // or nullptr; the bias gradient is summed only with `bias` (zeros otherwise).
  std::tuple<at::Tensor, at::Tensor> (*correlation_channels_last)(const at::Tensor&, const at::Tensor&,
                                                                  const TapConvGeometry&, bool bias) = nullptr;
};

#ifdef LEARNABLE_OPS_WITH_CUDA
at::Tensor tap_conv_forward_cuda(const at::Tensor& x, const at::Tensor& offsets, const at::Tensor& weights,
                                 const std::optional<at::Tensor>& bias, const TapConvGeometry& g);
at::Tensor tap_conv_backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& offsets,
                                        const at::Tensor& weights, const TapConvGeometry& g);
std::tuple<at::Tensor, at::Tensor> tap_conv_correlation_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                             const at::Tensor& offsets, const TapConvGeometry& g,
                                                             bool bias);
#endif

// The ops, device-independent (defined in cpp/depthwise.cpp and cpp/dcls_sparse.cpp).
at::Tensor depthwise_conv2d_impl(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, const TapConvBackend& be);
at::Tensor depthwise_conv2d_backward_input_impl(const at::Tensor& grad_output, const at::Tensor& weight,
                                                at::IntArrayRef input_size, at::IntArrayRef stride,
                                                at::IntArrayRef padding, const TapConvBackend& be);
std::tuple<at::Tensor, at::Tensor> depthwise_conv2d_backward_weight_impl(const at::Tensor& grad_output,
                                                                         const at::Tensor& input,
                                                                         at::IntArrayRef kernel_size,
                                                                         at::IntArrayRef stride,
                                                                         at::IntArrayRef padding, bool bias_grad,
                                                                         const TapConvBackend& be);
at::Tensor dcls_sparse_depthwise_impl(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
                                      const std::optional<at::Tensor>& bias, at::IntArrayRef dilated_kernel_size,
                                      at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version,
                                      const TapConvBackend& be);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dcls_sparse_depthwise_backward_impl(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
    at::IntArrayRef dilated_kernel_size, at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version,
    bool input_grad, const TapConvBackend& be);

// The ops' kernels for one backend, for TORCH_LIBRARY_IMPL(learnable_ops, <key>, m):
//   TapConvOps<kBackend>::register_all(m);
template <const TapConvBackend& B>
struct TapConvOps {
  static at::Tensor depthwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                                     const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                     at::IntArrayRef padding) {
    return depthwise_conv2d_impl(input, weight, bias, stride, padding, B);
  }
  static at::Tensor depthwise_conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                                    at::IntArrayRef input_size, at::IntArrayRef stride,
                                                    at::IntArrayRef padding) {
    return depthwise_conv2d_backward_input_impl(grad_output, weight, input_size, stride, padding, B);
  }
  static std::tuple<at::Tensor, at::Tensor> depthwise_conv2d_backward_weight(const at::Tensor& grad_output,
                                                                             const at::Tensor& input,
                                                                             at::IntArrayRef kernel_size,
                                                                             at::IntArrayRef stride,
                                                                             at::IntArrayRef padding, bool bias_grad) {
    return depthwise_conv2d_backward_weight_impl(grad_output, input, kernel_size, stride, padding, bias_grad, B);
  }
  static at::Tensor dcls_sparse_depthwise(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
                                          const std::optional<at::Tensor>& bias, at::IntArrayRef dilated_kernel_size,
                                          at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version) {
    return dcls_sparse_depthwise_impl(input, weight, P, bias, dilated_kernel_size, stride, padding, version, B);
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dcls_sparse_depthwise_backward(
      const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
      at::IntArrayRef dilated_kernel_size, at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version,
      bool input_grad) {
    return dcls_sparse_depthwise_backward_impl(grad_output, input, weight, P, dilated_kernel_size, stride, padding,
                                               version, input_grad, B);
  }
  static void register_depthwise(torch::Library& m) {
    m.impl("depthwise_conv2d", &depthwise_conv2d);
    m.impl("depthwise_conv2d_backward_input", &depthwise_conv2d_backward_input);
    m.impl("depthwise_conv2d_backward_weight", &depthwise_conv2d_backward_weight);
  }
  static void register_dcls_sparse(torch::Library& m) {
    m.impl("dcls_sparse_depthwise", &dcls_sparse_depthwise);
    m.impl("dcls_sparse_depthwise_backward", &dcls_sparse_depthwise_backward);
  }
};

inline constexpr TapConvBackend kCpuTapConv{&tap_conv_forward_cpu, &tap_conv_backward_input_cpu,
                                            &tap_conv_correlation_cpu, &depthwise_forward_nhwc_cpu,
                                            &depthwise_correlation_nhwc_cpu};
#ifdef LEARNABLE_OPS_WITH_CUDA
inline constexpr TapConvBackend kCudaTapConv{&tap_conv_forward_cuda, &tap_conv_backward_input_cuda,
                                             &tap_conv_correlation_cuda};
#endif

}  // namespace learnable_ops
