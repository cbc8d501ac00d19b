// CPU vectorisation helpers shared by the depthwise kernels (cpp/depthwise.cpp,
// cpp/depthwise_nhwc.cpp).
//
// GCC vector types: 32-byte vectors (AVX2 ymm; two xmm on the x86-64-v2
// baseline), loaded unaligned. LO_CPU_CLONES compiles a function for AVX-512,
// AVX2+FMA and the x86-64-v2 baseline and picks one at load time (the extension
// itself is compiled for x86-64-v2); its vector code lives in LO_ALWAYS_INLINE
// templates, so that every clone gets its own copy.
#pragma once

#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LO_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LO_CPU_CLONES
#endif
#if defined(__GNUC__)
#define LO_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define LO_ALWAYS_INLINE inline
#endif

namespace learnable_ops {

// Bytes: 32 (one AVX2 ymm) by default; 64 is one AVX-512 zmm in the
// x86-64-v4 clone and two ymm (or four xmm) in the others.
template <typename T, int Bytes = 32>
struct Vec {
  typedef T type __attribute__((vector_size(Bytes)));
  typedef T unaligned __attribute__((vector_size(Bytes), aligned(alignof(T)), may_alias));
};
template <typename acc_t, int Bytes = 32>
constexpr int64_t kLanes = Bytes / sizeof(acc_t);

}  // namespace learnable_ops
