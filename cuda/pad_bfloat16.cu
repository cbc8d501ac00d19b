// pad's CUDA kernels for c10::BFloat16 (see pad_launch.cuh).
#include "pad_launch.cuh"

namespace learnable_ops {
LO_PAD_INSTANTIATE(c10::BFloat16)
}  // namespace learnable_ops
