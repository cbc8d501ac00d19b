// dcls_sparse_depthwise on CUDA. The op logic (tap expansion with ATen ops on
// the device, chain rule to W and P) is shared with the CPU in
// cpp/dcls_sparse.cpp; the corner taps run on the CUDA tap-list kernels of
// cuda/depthwise.cu (tiled shared-memory forward, flipped or transposed-form
// input gradient, per-block partial sums for the tap correlations).
#include <torch/library.h>

#include "learnable_ops/tap_conv.h"

namespace learnable_ops {

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) { TapConvOps<kCudaTapConv>::register_dcls_sparse(m); }

}  // namespace learnable_ops
