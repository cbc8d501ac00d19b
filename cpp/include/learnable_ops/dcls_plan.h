// Host-side argument checks and geometry of a DCLS kernel construction,
// shared by the CPU (cpp/dcls.cpp) and CUDA (cuda/dcls.cu) kernels.
#pragma once

#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/dcls_weights.h"

namespace learnable_ops {

inline DclsVersion parse_dcls_version(const std::string& name) {
  if (name == "v0") return DclsVersion::V0;
  if (name == "v1") return DclsVersion::V1;
  if (name == "max") return DclsVersion::Max;
  if (name == "gauss") return DclsVersion::Gauss;
  TORCH_CHECK_VALUE(false, "unknown version '", name, "'; valid values are: v0, v1, max, gauss");
  return DclsVersion::Gauss;
}

// weight (Co, Ci/g, Kc); P (n, Co or 1, Ci/g, Kc); SIG like P (gauss, max) or
// absent (v0, v1). Returns the geometry; kernel_shape gets (Co, Ci/g, *D).
inline DclsGeometry make_dcls_geometry(const at::Tensor& weight, const at::Tensor& P,
                                       const c10::optional<at::Tensor>& SIG,
                                       at::IntArrayRef dilated_kernel_size,
                                       const std::string& version,
                                       std::vector<int64_t>* kernel_shape = nullptr) {
  DclsGeometry g;
  g.version = parse_dcls_version(version);
  check_floating(weight, "weight");
  check_floating(P, "P");
  TORCH_CHECK_VALUE(weight.dim() == 3, "weight must have shape (out_channels, in_channels / "
                    "groups, kernel_count), got ", weight.sizes());
  g.Co = weight.size(0);
  g.Cig = weight.size(1);
  g.Kc = weight.size(2);
  TORCH_CHECK_VALUE(g.Kc >= 1, "kernel_count (weight.size(2)) must be >= 1, got ", g.Kc);
  const int64_t n = static_cast<int64_t>(dilated_kernel_size.size());
  TORCH_CHECK_VALUE(n >= 1 && n <= kDclsMaxAxes,
                    "dilated_kernel_size must have 1, 2 or 3 entries, got ", dilated_kernel_size);
  g.n = static_cast<int>(n);
  g.cells = 1;
  for (int a = 0; a < kDclsMaxAxes; ++a) g.D[a] = 1;
  for (int64_t a = 0; a < n; ++a) {
    TORCH_CHECK_VALUE(dilated_kernel_size[a] >= 1, "dilated_kernel_size must be >= 1 on every "
                      "axis, got ", dilated_kernel_size);
    g.D[a] = dilated_kernel_size[a];
    g.cells *= g.D[a];
  }
  TORCH_CHECK_VALUE(P.dim() == 4 && P.size(0) == n && (P.size(1) == g.Co || P.size(1) == 1) &&
                        P.size(2) == g.Cig && P.size(3) == g.Kc,
                    "P must have shape (", n, ", ", g.Co, " or 1, ", g.Cig, ", ", g.Kc,
                    ") for weight of shape ", weight.sizes(), " and a ", n,
                    "-d dilated_kernel_size, got ", P.sizes());
  g.broadcast_p = P.size(1) != g.Co;
  check_same_dtype(weight, "weight", P, "P");
  check_same_device(weight, "weight", P, "P");
  if (dcls_has_sig(g.version)) {
    TORCH_CHECK_VALUE(SIG.has_value() && SIG->defined(), "SIG is required by version '", version,
                      "' and must have the shape of P, ", P.sizes());
    TORCH_CHECK_VALUE(SIG->sizes() == P.sizes(), "SIG must have the shape of P, ", P.sizes(),
                      ", got ", SIG->sizes());
    check_same_dtype(weight, "weight", *SIG, "SIG");
    check_same_device(weight, "weight", *SIG, "SIG");
  } else {
    TORCH_CHECK_VALUE(!(SIG.has_value() && SIG->defined()), "SIG is only used by versions "
                      "'gauss' and 'max'; pass None for version '", version, "'");
  }
  if (kernel_shape) {
    *kernel_shape = {g.Co, g.Cig};
    for (int64_t a = 0; a < n; ++a) kernel_shape->push_back(g.D[a]);
  }
  return g;
}

// The gradient of the kernel: (Co, Ci/g, *D).
inline void check_dcls_grad_kernel(const at::Tensor& grad, const at::Tensor& weight,
                                   const std::vector<int64_t>& kernel_shape) {
  check_floating(grad, "grad_kernel");
  TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef(kernel_shape), "grad_kernel must have shape ",
                    at::IntArrayRef(kernel_shape), ", got ", grad.sizes());
  check_same_dtype(weight, "weight", grad, "grad_kernel");
  check_same_device(weight, "weight", grad, "grad_kernel");
}

}  // namespace learnable_ops
