// dcls_sparse_depthwise: DCLS v0/v1 in a depthwise layer without building the
// dense kernel. Each learnable tap expands to at most 2^n integer corner taps
// (learnable_ops/dcls_taps.h), which run on the tap-list depthwise conv
// (learnable_ops/tap_conv.h):
//   out[n, c] = bias[c] + sum_k W[c, k] sum_corners w_corner * x[n, c, shifted by the corner]
// The backward pass needs, for each corner, the correlation of grad_output
// with the input shifted by the corner (one tap-conv reduction); the chain
// rule to W and P is a few small tensor ops on (C, Kc * 2^n) elements.
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/dcls_taps.h"
#include "learnable_ops/tap_conv.h"

namespace learnable_ops {
namespace {

struct SparsePlan {
  TapConvGeometry g;
  int64_t n;
  bool normalise;
};

bool parse_version(c10::string_view version) {
  TORCH_CHECK_VALUE(version == "v0" || version == "v1", "unknown version '", std::string(version),
                    "' for the sparse DCLS path; valid versions are: v0, v1 (gauss and max need the dense kernel)");
  return version == "v1";
}

SparsePlan sparse_plan(at::IntArrayRef input_size, const at::Tensor& weight, const at::Tensor& P,
                       at::IntArrayRef D, at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version) {
  const int64_t n = static_cast<int64_t>(input_size.size()) - 2;
  TORCH_CHECK_VALUE(n == 1 || n == 2, "input must be (N, C, L) or (N, C, H, W), got shape ", input_size);
  TORCH_CHECK_VALUE(static_cast<int64_t>(D.size()) == n && static_cast<int64_t>(stride.size()) == n &&
                        static_cast<int64_t>(padding.size()) == n,
                    "dilated_kernel_size, stride and padding must have ", n, " entries each, got ", D, ", ", stride,
                    " and ", padding);
  const int64_t C = input_size[1];
  check_floating(weight, "weight");
  check_floating(P, "P");
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(0) == C && weight.size(1) >= 1,
                    "weight must have shape (C=", C, ", kernel_count), got ", weight.sizes());
  TORCH_CHECK_VALUE(P.dim() == 3 && P.size(0) == n && P.size(1) == C && P.size(2) == weight.size(1),
                    "P must have shape (", n, ", ", C, ", ", weight.size(1), "), got ", P.sizes());
  for (int64_t a = 0; a < n; ++a) {
    TORCH_CHECK_VALUE(D[a] >= 1, "dilated_kernel_size must be positive, got ", D);
    TORCH_CHECK_VALUE(stride[a] >= 1, "stride must be positive, got ", stride);
    TORCH_CHECK_VALUE(padding[a] >= 0, "padding must be non-negative, got ", padding);
    TORCH_CHECK_VALUE(input_size[2 + a] + 2 * padding[a] >= D[a], "the padded input along axis ", a, " (",
                      input_size[2 + a] + 2 * padding[a], ") is smaller than dilated_kernel_size (", D[a], ")");
  }
  SparsePlan plan;
  plan.n = n;
  plan.normalise = parse_version(version);
  TapConvGeometry& g = plan.g;
  g.N = input_size[0];
  g.C = C;
  g.H = n == 2 ? input_size[2] : 1;
  g.W = input_size[n + 1];
  g.kh = n == 2 ? D[0] : 1;
  g.kw = D[n - 1];
  g.sh = n == 2 ? stride[0] : 1;
  g.sw = stride[n - 1];
  g.pt = n == 2 ? padding[0] : 0;
  g.pl = padding[n - 1];
  g.Ho = n == 2 ? tap_conv_out_size(g.H, g.kh, g.sh, g.pt, g.pt) : 1;
  g.Wo = tap_conv_out_size(g.W, g.kw, g.sw, g.pl, g.pl);
  return plan;
}

// The tap-conv kernels accumulate (and take weights) in the input's opmath dtype.
at::ScalarType opmath_dtype(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor as_4d(const at::Tensor& t) { return t.dim() == 3 ? t.unsqueeze(2) : t; }

std::vector<int64_t> output_shape(const SparsePlan& p) {
  if (p.n == 1) return {p.g.N, p.g.C, p.g.Wo};
  return {p.g.N, p.g.C, p.g.Ho, p.g.Wo};
}

}  // namespace

at::Tensor dcls_sparse_depthwise_impl(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
                                      const std::optional<at::Tensor>& bias, at::IntArrayRef dilated_kernel_size,
                                      at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version,
                                      const TapConvBackend& be) {
  check_floating(input, "input");
  const SparsePlan plan = sparse_plan(input.sizes(), weight, P, dilated_kernel_size, stride, padding, version);
  check_same_device(input, "input", weight, "weight");
  check_same_device(input, "input", P, "P");
  if (bias.has_value()) {
    check_same_dtype(input, "input", *bias, "bias");
    check_same_device(input, "input", *bias, "bias");
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == plan.g.C, "bias must have shape (", plan.g.C,
                      ",), got ", bias->sizes());
  }
  const auto acc = opmath_dtype(input);
  const DclsCornerTaps taps = make_dcls_corner_taps(P.to(acc), dilated_kernel_size, plan.normalise);
  const int64_t corners = int64_t(1) << plan.n;
  const at::Tensor w = (weight.to(acc).unsqueeze(-1) * taps.corner.view({plan.g.C, -1, corners}))
                           .reshape({plan.g.C, -1})
                           .contiguous();
  const at::Tensor out = be.forward(as_4d(input), taps.offsets, w, bias, plan.g);
  return out.view(output_shape(plan));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dcls_sparse_depthwise_backward_impl(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& P,
    at::IntArrayRef dilated_kernel_size, at::IntArrayRef stride, at::IntArrayRef padding, c10::string_view version,
    bool input_grad, const TapConvBackend& be) {
  check_floating(grad_output, "grad_output");
  check_floating(input, "input");
  check_same_dtype(grad_output, "grad_output", input, "input");
  const SparsePlan plan = sparse_plan(input.sizes(), weight, P, dilated_kernel_size, stride, padding, version);
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(output_shape(plan)), "grad_output must have shape ",
                    at::IntArrayRef(output_shape(plan)), ", got ", grad_output.sizes());
  const auto acc = opmath_dtype(input);
  const DclsCornerTaps taps = make_dcls_corner_taps(P.to(acc), dilated_kernel_size, plan.normalise);
  const int64_t C = plan.g.C, Kc = weight.size(1), corners = int64_t(1) << plan.n;
  const at::Tensor w_acc = weight.to(acc);
  const at::Tensor go = as_4d(grad_output), x = as_4d(input);

  auto [corr, gbias] = be.correlation(go, x, taps.offsets, plan.g, true);
  const at::Tensor corr3 = corr.view({C, Kc, corners});
  const at::Tensor grad_weight = (corr3 * taps.corner.view({C, Kc, corners})).sum(-1);
  const at::Tensor grad_P =
      w_acc.unsqueeze(0) * (corr3.unsqueeze(0) * taps.dcorner.view({plan.n, C, Kc, corners})).sum(-1);
  at::Tensor grad_input;
  if (input_grad) {
    const at::Tensor w = (w_acc.unsqueeze(-1) * taps.corner.view({C, Kc, corners})).reshape({C, -1}).contiguous();
    grad_input = be.backward_input(go, taps.offsets, w, plan.g).view(input.sizes());
  } else {
    grad_input = at::empty({0}, input.options());
  }
  return {grad_input, grad_weight.to(weight.scalar_type()), grad_P.to(P.scalar_type()),
          gbias.to(input.scalar_type())};
}

TORCH_LIBRARY_FRAGMENT(learnable_ops, m) {
  m.def(
      "dcls_sparse_depthwise(Tensor input, Tensor weight, Tensor P, Tensor? bias, int[] dilated_kernel_size, "
      "int[] stride, int[] padding, str version) -> Tensor");
  m.def(
      "dcls_sparse_depthwise_backward(Tensor grad_output, Tensor input, Tensor weight, Tensor P, "
      "int[] dilated_kernel_size, int[] stride, int[] padding, str version, bool input_grad) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) { TapConvOps<kCpuTapConv>::register_dcls_sparse(m); }

}  // namespace learnable_ops
