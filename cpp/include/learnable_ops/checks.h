// Argument checks whose messages name the argument. TORCH_CHECK_VALUE raises
// ValueError and TORCH_CHECK_TYPE raises TypeError in Python.
#pragma once

#include <string>

#include <ATen/ATen.h>

#include "learnable_ops/padding.h"

namespace learnable_ops {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
                   " must be a floating-point tensor (float16, bfloat16, float32 or float64), got ",
                   t.scalar_type());
}

inline void check_dim_between(const at::Tensor& t, const char* name, int64_t lo, int64_t hi) {
  TORCH_CHECK_VALUE(t.dim() >= lo && t.dim() <= hi, name, " must have between ", lo, " and ", hi,
                    " dimensions, got a tensor of shape ", t.sizes());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  TORCH_CHECK_VALUE(a.device() == b.device(), a_name, " and ", b_name,
                    " must be on the same device, got ", a.device(), " and ", b.device());
}

inline void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                             const char* b_name) {
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), a_name, " and ", b_name,
                   " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

inline void check_device(const at::Tensor& t, const char* name, c10::DeviceType type) {
  TORCH_CHECK_VALUE(t.device().type() == type, name, " must be a ", c10::DeviceTypeName(type),
                    " tensor, got one on ", t.device());
}

// Whether the tensor is laid out channels_last (and not also NCHW-contiguous).
inline bool strictly_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Parses a padding-mode name. The valid names are listed in the message.
inline PadMode parse_pad_mode(const std::string& mode, const char* name = "mode") {
  if (mode == "zeros" || mode == "constant") return PadMode::Zeros;
  if (mode == "border" || mode == "replicate" || mode == "edge") return PadMode::Border;
  if (mode == "periodic" || mode == "circular" || mode == "wrap") return PadMode::Periodic;
  if (mode == "reflect") return PadMode::Reflect;
  if (mode == "symmetric") return PadMode::Symmetric;
  if (mode == "polynomial") return PadMode::Polynomial;
  TORCH_CHECK_VALUE(false, "unknown ", name, " '", mode,
                    "'; valid modes are: zeros, border, periodic, reflect, symmetric, polynomial "
                    "(aliases: constant, replicate/edge, circular/wrap)");
  return PadMode::Zeros;
}

}  // namespace learnable_ops
