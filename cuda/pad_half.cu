// pad's CUDA kernels for c10::Half (see pad_launch.cuh).
#include "pad_launch.cuh"

namespace learnable_ops {
LO_PAD_INSTANTIATE(c10::Half)
}  // namespace learnable_ops
