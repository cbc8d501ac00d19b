// Helpers for the CUDA kernels. Includes only c10/cuda headers (not
// ATen/cuda/CUDAContext.h, which pulls in cuBLAS/cuSPARSE headers), so that
// tools/cuda-check compiles our kernels on machines with a bare nvcc.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

namespace learnable_ops {

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

inline int multiprocessor_count() {
  int device = 0, count = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

// Blocks for a grid-stride loop over n items: enough to fill the device, no more.
inline unsigned grid_stride_blocks(int64_t n, int threads, int blocks_per_sm = 8) {
  const int64_t need = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(need, int64_t(multiprocessor_count()) * blocks_per_sm)));
}

}  // namespace learnable_ops
