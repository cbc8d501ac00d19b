// pad's CUDA kernels for float (see pad_launch.cuh).
#include "pad_launch.cuh"

namespace learnable_ops {
LO_PAD_INSTANTIATE(float)
}  // namespace learnable_ops
