// Shared by the CPU, CUDA and QuantizedCPU shift kernels: argument checks,
// the geometry of a shift, and the per-channel taps of a shift value.
//
// Convention (interpolation.h): out[i] = x(i - s) along every spatial axis.
// Per axis, a shift reads two taps: tap 0 at i - f with weight 1 - t and tap 1
// at i - f - 1 with weight t, f integer, t in [0, 1):
//   sparse forward / input gradient   f = rint(s) (half to even), t = 0
//   active forward / input gradient   f = floor(s), t = s - floor(s)
//   shift gradient (both modes)       f = floor(s), t = s - floor(s); the
//                                     derivative along s is tap 1 - tap 0.
// f is then replaced by equivalent_shift(), so any finite shift (1e9, 1e30)
// indexes exactly. A channel with a non-finite shift gives NaN everywhere.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "learnable_ops/macros.h"
#include "learnable_ops/padding.h"

#include <ATen/ATen.h>

#include "learnable_ops/checks.h"

namespace learnable_ops {

// Spatial axes are expanded to three (D, H, W); missing leading axes have
// size 1 and never shift. Shift column k drives axis first_axis() + k.
struct ShiftGeometry {
  int64_t batch = 0, channels = 0;
  int64_t size[3] = {1, 1, 1};
  int64_t ndim = 1;
  PadMode padding = PadMode::Zeros;
  bool active = false;
  LO_HD int first_axis() const { return static_cast<int>(3 - ndim); }
  LO_HD int64_t plane() const { return size[0] * size[1] * size[2]; }
};

struct AxisTaps {
  int64_t f;  // tap 0 reads i - f, tap 1 reads i - f - 1 (equivalent shift)
  double t;   // weight of tap 1
};

// Taps of shift value s along an axis of length n; false if s is not finite.
LO_HD bool axis_taps(double s, int64_t n, PadMode mode, bool rounded, AxisTaps* taps) {
#if defined(__CUDACC__)
  const bool finite = isfinite(s);
#else
  const bool finite = std::isfinite(s);
#endif
  if (!finite) {
    taps->f = 0;
    taps->t = 0;
    return false;
  }
  const double whole = rounded ? ::rint(s) : ::floor(s);
  taps->f = equivalent_shift(whole, n, mode);
  taps->t = rounded ? 0.0 : s - whole;
  return true;
}

struct ChannelTaps {
  AxisTaps axis[3];
  bool finite;
};

// Taps of one channel; `shifts` points at its ndim shift values.
LO_HD ChannelTaps channel_taps(const double* shifts, const ShiftGeometry& g, bool rounded) {
  ChannelTaps c;
  c.finite = true;
  for (int a = 0; a < 3; ++a) {
    const int k = a - g.first_axis();
    if (k < 0) {
      c.axis[a] = {0, 0.0};
      continue;
    }
    c.finite &= axis_taps(shifts[k], g.size[a], g.padding, rounded, &c.axis[a]);
  }
  return c;
}

inline bool parse_shift_mode(const std::string& mode) {
  if (mode == "sparse") return false;
  if (mode == "active") return true;
  TORCH_CHECK_VALUE(false, "unknown mode '", mode, "'; valid modes are: sparse, active");
  return false;
}

// Checks input/shifts as the kernels need them. `input` may also be a
// grad_output (same shape); `input_name` names it in messages.
inline ShiftGeometry make_shift_geometry(const at::Tensor& input, const char* input_name,
                                         const at::Tensor& shifts, const std::string& padding_mode,
                                         bool active) {
  TORCH_CHECK_VALUE(input.dim() >= 3 && input.dim() <= 5, input_name,
                    " must be a 3D, 4D or 5D tensor (N, C, *spatial), got shape ", input.sizes());
  check_floating(shifts, "shifts");
  check_same_device(input, input_name, shifts, "shifts");
  ShiftGeometry g;
  g.ndim = input.dim() - 2;
  g.batch = input.size(0);
  g.channels = input.size(1);
  TORCH_CHECK_VALUE(shifts.dim() == 2 && shifts.size(0) == g.channels && shifts.size(1) == g.ndim,
                    "shifts must have shape (C, ndim) = (", g.channels, ", ", g.ndim,
                    ") for ", input_name, " of shape ", input.sizes(), ", got ", shifts.sizes());
  for (int64_t k = 0; k < g.ndim; ++k) g.size[3 - g.ndim + k] = input.size(2 + k);
  g.padding = parse_pad_mode(padding_mode, "padding_mode");
  TORCH_CHECK_VALUE(g.padding != PadMode::Polynomial,
                    "padding_mode 'polynomial' is not a shift padding mode; valid modes are: zeros, "
                    "border, periodic, reflect, symmetric (aliases: constant, replicate/edge, circular/wrap)");
  g.active = active;
  return g;
}

// Checks the arguments of the shift-gradient and fused backward ops: both
// tensors floating, of one dtype, device and shape, then as above (the
// geometry is that of `input`).
inline ShiftGeometry check_shift_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                                               const at::Tensor& shifts,
                                               const std::string& padding_mode, bool active) {
  check_floating(grad_output, "grad_output");
  check_floating(input, "input");
  check_same_dtype(grad_output, "grad_output", input, "input");
  check_same_device(grad_output, "grad_output", input, "input");
  TORCH_CHECK_VALUE(grad_output.sizes() == input.sizes(), "grad_output must have the shape of input ",
                    input.sizes(), ", got ", grad_output.sizes());
  return make_shift_geometry(input, "input", shifts, padding_mode, active);
}

}  // namespace learnable_ops
