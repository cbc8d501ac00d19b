// Shared by the .cpp and the .cu translation units.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LO_HD __host__ __device__ __forceinline__
#else
#define LO_HD inline
#endif
