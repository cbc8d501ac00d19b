// pad's CUDA kernels for double (see pad_launch.cuh).
#include "pad_launch.cuh"

namespace learnable_ops {
LO_PAD_INSTANTIATE(double)
}  // namespace learnable_ops
