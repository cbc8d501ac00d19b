// Stand-in for the header CUDA builds of torch generate; used only by
// tools/cuda-check to compile kernels against a CPU build of torch.
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
