// dcls_construct: CUDA kernels. The maths (profiles, one-sided derivatives,
// normalisers, gradient formulas) is learnable_ops/dcls_weights.h, the
// argument checks learnable_ops/dcls_plan.h, exactly as on the CPU.
//
// Forward: a first pass computes each tap's scale w / N (its normaliser over
// the grid); then one thread per kernel cell sums its taps. Backward: one warp
// per tap contracts the kernel gradient with the tap's profile over the tap's
// window (2^n cells for v0/v1) and reduces by shuffles in a fixed order; a
// broadcast P's gradient is then summed over output channels by one thread
// per column, in order. No atomics: results are deterministic. Memory: the
// kernel, the parameter gradients and parameter-sized scratch only.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/dcls_plan.h"

namespace learnable_ops {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

// The grid coordinates u_a of flat cell `cell` (row-major over D). Cells of
// one kernel are indexed in 32 bits (checked on the host).
__device__ __forceinline__ void cell_coords(const DclsGeometry& g, int cell, int* u) {
  for (int a = g.n - 1; a >= 0; --a) {
    const int d = static_cast<int>(g.D[a]);
    u[a] = cell % d;
    cell /= d;
  }
}

// scale[(o * Cig + i) * Kc + k] = W[o, i, k] / N_k.
template <typename scalar_t, typename acc_t>
__global__ void tap_scale_kernel(DclsGeometry g, const scalar_t* __restrict__ W,
                                 const scalar_t* __restrict__ P, const scalar_t* __restrict__ SIG,
                                 acc_t* __restrict__ scale) {
  const int64_t taps = g.Co * g.Cig * g.Kc;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < taps;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = t % g.Kc, pair = t / g.Kc;
    const int64_t o = pair / g.Cig, i = pair % g.Cig;
    acc_t c[kDclsMaxAxes], sig[kDclsMaxAxes];
    dcls_load_tap(g, P, SIG, o, i, k, c, sig);
    const DclsTapNorm<acc_t> norm = dcls_tap_norm(g.version, g.n, c, sig, g.D);
    scale[t] = static_cast<acc_t>(W[t]) / norm.N;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void construct_kernel(DclsGeometry g, const scalar_t* __restrict__ P,
                                 const scalar_t* __restrict__ SIG,
                                 const acc_t* __restrict__ scale, scalar_t* __restrict__ K) {
  const int64_t total = g.Co * g.Cig * g.cells;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pair = e / g.cells;
    const int64_t o = pair / g.Cig, i = pair % g.Cig;
    int u[kDclsMaxAxes];
    cell_coords(g, static_cast<int>(e - pair * g.cells), u);
    acc_t acc = 0;
    for (int64_t k = 0; k < g.Kc; ++k) {
      acc_t c[kDclsMaxAxes], sig[kDclsMaxAxes];
      dcls_load_tap(g, P, SIG, o, i, k, c, sig);
      acc_t v = scale[pair * g.Kc + k];
      for (int a = 0; a < g.n && v != acc_t(0); ++a)
        v *= dcls_axis_sample(g.version, u[a], c[a], sig[a]).phi;
      acc += v;
    }
    K[e] = static_cast<scalar_t>(acc);
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// One warp per tap. Writes grad W, and grad P / grad SIG either in place
// (full_p == nullptr) or per output channel into full_p / full_sig, laid out
// (n, Co, Ci/g * Kc), for the ordered reduction below.
template <typename scalar_t, typename acc_t>
__global__ void construct_backward_kernel(DclsGeometry g, const scalar_t* __restrict__ G,
                                          const scalar_t* __restrict__ W,
                                          const scalar_t* __restrict__ P,
                                          const scalar_t* __restrict__ SIG,
                                          scalar_t* __restrict__ gW, scalar_t* __restrict__ gP,
                                          scalar_t* __restrict__ gSIG, acc_t* __restrict__ full_p,
                                          acc_t* __restrict__ full_sig) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps_per_block = blockDim.x / kWarp;
  const int64_t taps = g.Co * g.Cig * g.Kc;
  for (int64_t t = blockIdx.x * warps_per_block + threadIdx.x / kWarp; t < taps;
       t += int64_t(gridDim.x) * warps_per_block) {
    const int64_t k = t % g.Kc, pair = t / g.Kc;
    const int64_t o = pair / g.Cig, i = pair % g.Cig;
    acc_t c[kDclsMaxAxes], sig[kDclsMaxAxes];
    dcls_load_tap(g, P, SIG, o, i, k, c, sig);
    int lo[kDclsMaxAxes], len[kDclsMaxAxes], window = 1;
    for (int a = 0; a < g.n; ++a) {
      int64_t lo_a, hi_a;
      dcls_axis_window(g.version, c[a], sig[a], g.D[a], lo_a, hi_a);
      lo[a] = static_cast<int>(lo_a);
      len[a] = static_cast<int>(hi_a - lo_a);
      window *= len[a];
    }
    acc_t sum_t = 0, e_c[kDclsMaxAxes] = {0, 0, 0}, e_s[kDclsMaxAxes] = {0, 0, 0};
    const scalar_t* Gk = G + pair * g.cells;
    for (int w = lane; w < window; w += kWarp) {
      DclsAxisSample<acc_t> s[kDclsMaxAxes];
      int rest = w, cell = 0;
      int u[kDclsMaxAxes];
      for (int a = g.n - 1; a >= 0; --a) {
        u[a] = lo[a] + rest % len[a];
        rest /= len[a];
      }
      for (int a = 0; a < g.n; ++a) {
        cell = cell * static_cast<int>(g.D[a]) + u[a];
        s[a] = dcls_axis_sample(g.version, u[a], c[a], sig[a]);
      }
      const acc_t gv = static_cast<acc_t>(Gk[cell]);
      acc_t phi = gv;
      for (int a = 0; a < g.n; ++a) phi *= s[a].phi;
      sum_t += phi;
      for (int a = 0; a < g.n; ++a) {
        acc_t others = gv;
        for (int b = 0; b < g.n; ++b)
          if (b != a) others *= s[b].phi;
        e_c[a] += others * s[a].dc;
        e_s[a] += others * s[a].dsig;
      }
    }
    DclsTapContraction<acc_t> e;
    e.T_ = warp_sum(sum_t);
    for (int a = 0; a < kDclsMaxAxes; ++a) {
      e.E_c[a] = warp_sum(e_c[a]);
      e.E_sig[a] = warp_sum(e_s[a]);
    }
    if (lane != 0) continue;
    const DclsTapNorm<acc_t> norm = dcls_tap_norm(g.version, g.n, c, sig, g.D);
    const DclsTapGrads<acc_t> grads = dcls_tap_grads(g.n, static_cast<acc_t>(W[t]), norm, e);
    gW[t] = static_cast<scalar_t>(grads.weight);
    for (int a = 0; a < g.n; ++a) {
      if (full_p) {
        const int64_t idx = (a * g.Co + o) * g.Cig * g.Kc + i * g.Kc + k;
        full_p[idx] = grads.c[a];
        if (full_sig) full_sig[idx] = grads.sig[a];
      } else {
        const int64_t idx = dcls_param_index(g, a, o, i, k);
        gP[idx] = static_cast<scalar_t>(grads.c[a]);
        if (gSIG) gSIG[idx] = static_cast<scalar_t>(grads.sig[a]);
      }
    }
  }
}

// out[a, col] = sum over o = 0, 1, ... of full[a, o, col]: one thread per column.
template <typename scalar_t, typename acc_t>
__global__ void sum_over_out_channels_kernel(const acc_t* __restrict__ full,
                                             scalar_t* __restrict__ out, int n, int64_t Co,
                                             int64_t cols) {
  const int64_t total = n * cols;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < total;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t a = r / cols, col = r % cols;
    acc_t sum = 0;
    for (int64_t o = 0; o < Co; ++o) sum += full[(a * Co + o) * cols + col];
    out[r] = static_cast<scalar_t>(sum);
  }
}

void check_cells_fit_32_bits(const DclsGeometry& g) {
  TORCH_CHECK_VALUE(g.cells < (int64_t(1) << 31), "dilated_kernel_size must have fewer than 2^31 "
                    "cells on CUDA, got ", g.cells);
}

at::Tensor dcls_construct_cuda(const at::Tensor& weight, const at::Tensor& P,
                               const c10::optional<at::Tensor>& SIG,
                               at::IntArrayRef dilated_kernel_size, c10::string_view version) {
  std::vector<int64_t> kernel_shape;
  const DclsGeometry g =
      make_dcls_geometry(weight, P, SIG, dilated_kernel_size, std::string(version), &kernel_shape);
  check_device(weight, "weight", c10::DeviceType::CUDA);
  check_cells_fit_32_bits(g);
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor w = weight.contiguous(), p = P.contiguous();
  const at::Tensor s = dcls_has_sig(g.version) ? SIG->contiguous() : at::Tensor();
  at::Tensor kernel = at::empty(kernel_shape, w.options());
  if (kernel.numel() == 0) return kernel;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "dcls_construct_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* sig = s.defined() ? s.const_data_ptr<scalar_t>() : nullptr;
    at::Tensor scale = at::empty({w.numel()}, w.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    tap_scale_kernel<scalar_t, acc_t><<<grid_stride_blocks(w.numel(), kThreads), kThreads, 0, stream>>>(
        g, w.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(), sig, scale.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    construct_kernel<scalar_t, acc_t><<<grid_stride_blocks(kernel.numel(), kThreads), kThreads, 0, stream>>>(
        g, p.const_data_ptr<scalar_t>(), sig, scale.const_data_ptr<acc_t>(), kernel.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return kernel;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dcls_construct_backward_cuda(
    const at::Tensor& grad_kernel, const at::Tensor& weight, const at::Tensor& P,
    const c10::optional<at::Tensor>& SIG, at::IntArrayRef dilated_kernel_size,
    c10::string_view version) {
  std::vector<int64_t> kernel_shape;
  const DclsGeometry g =
      make_dcls_geometry(weight, P, SIG, dilated_kernel_size, std::string(version), &kernel_shape);
  check_dcls_grad_kernel(grad_kernel, weight, kernel_shape);
  check_device(weight, "weight", c10::DeviceType::CUDA);
  check_cells_fit_32_bits(g);
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor gk = grad_kernel.contiguous(), w = weight.contiguous(), p = P.contiguous();
  const at::Tensor s = dcls_has_sig(g.version) ? SIG->contiguous() : at::Tensor();
  at::Tensor grad_weight = at::empty(w.sizes(), w.options());
  at::Tensor grad_P = at::empty(p.sizes(), p.options());
  at::Tensor grad_SIG = s.defined() ? at::empty(s.sizes(), s.options()) : at::empty({0}, w.options());
  if (grad_weight.numel() == 0) {
    grad_P.zero_();
    grad_SIG.zero_();
    return {grad_weight, grad_P, grad_SIG};
  }
  const cudaStream_t stream = current_stream();
  const int64_t cols = g.Cig * g.Kc;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "dcls_construct_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor full;
    acc_t *full_p = nullptr, *full_sig = nullptr;
    if (g.broadcast_p) {
      full = at::empty({s.defined() ? 2 : 1, g.n * g.Co * cols},
                       w.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      full_p = full.mutable_data_ptr<acc_t>();
      if (s.defined()) full_sig = full_p + g.n * g.Co * cols;
    }
    const int64_t taps = w.numel();
    const int warps_per_block = kThreads / kWarp;
    const int64_t blocks = (taps + warps_per_block - 1) / warps_per_block;
    const unsigned grid = static_cast<unsigned>(
        std::min<int64_t>(blocks, int64_t(multiprocessor_count()) * 16));
    construct_backward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
        g, gk.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), p.const_data_ptr<scalar_t>(),
        s.defined() ? s.const_data_ptr<scalar_t>() : nullptr, grad_weight.mutable_data_ptr<scalar_t>(),
        grad_P.mutable_data_ptr<scalar_t>(), s.defined() ? grad_SIG.mutable_data_ptr<scalar_t>() : nullptr,
        full_p, full_sig);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (g.broadcast_p) {
      const unsigned blocks_r = grid_stride_blocks(g.n * cols, kThreads);
      sum_over_out_channels_kernel<scalar_t, acc_t><<<blocks_r, kThreads, 0, stream>>>(
          full_p, grad_P.mutable_data_ptr<scalar_t>(), g.n, g.Co, cols);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (full_sig) {
        sum_over_out_channels_kernel<scalar_t, acc_t><<<blocks_r, kThreads, 0, stream>>>(
            full_sig, grad_SIG.mutable_data_ptr<scalar_t>(), g.n, g.Co, cols);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });
  return {grad_weight, grad_P, grad_SIG};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) {
  m.impl("dcls_construct", &dcls_construct_cuda);
  m.impl("dcls_construct_backward", &dcls_construct_backward_cuda);
}

}  // namespace learnable_ops
