// pad: CUDA launch code, included by one translation unit per dtype
// (pad_float.cu, pad_double.cu, pad_half.cu, pad_bfloat16.cu: about a hundred
// kernels in one file had been the whole build's critical path); pad.cu holds
// the ops. The kernel bodies live in pad_kernels.cuh (shared with the
// host-compiled emulation test); the index maps come from padding.h, the
// polynomial weights from lagrange.h, the argument checks and plan from
// pad_plan.h, exactly as on the CPU.
#pragma once

#include <type_traits>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/cuda_utils.cuh"
#include "learnable_ops/env_switch.h"
#include "learnable_ops/pad_plan.h"
#include "pad_kernels.cuh"

namespace learnable_ops {
namespace {

using pad_kernels::ForwardArgs;
using pad_kernels::GatherArgs;
using pad_kernels::PadAxis;

constexpr int kThreads = 256;
// Per-block budget of the axis tables: 16 KB keeps eight 256-thread blocks
// per SM on every architecture we build for.
constexpr size_t kTableBudget = 16 * 1024;

template <typename I>
void plan_axes(const PadPlan& plan, PadAxis<I> (&axes)[3]) {
  for (int a = 0; a < 3; ++a)
    axes[a] = PadAxis<I>{I(plan.in[a]), I(plan.out[a]), I(plan.before[a]), plan.order[a], plan.step[a]};
}

// Blocks of a kernel resident per SM with the largest table budget. Callers
// keep it in a static of their own instantiation (kernels of one signature
// share a pointer type, so it cannot be cached here), off the per-call host
// path; fewer blocks than would fit with smaller tables lose nothing.
template <typename Kernel>
int blocks_per_sm(Kernel kernel) {
  int blocks = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, kTableBudget));
  return std::max(blocks, 1);
}

// One wave: as many blocks as fit on the device at once (the loops inside are
// grid-stride), fewer when there is not enough work.
dim3 one_wave(int per_sm, int64_t items) {
  const int64_t wave = int64_t(per_sm) * multiprocessor_count();
  const int64_t need = (items + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(std::max<int64_t>(1, std::min(need, wave))));
}

// Calls fn(std::integral_constant<PadMode, mode>{}): the mode becomes a
// template argument of the kernels.
template <typename Fn>
void with_mode(PadMode mode, Fn&& fn) {
  switch (mode) {
    case PadMode::Zeros: return fn(std::integral_constant<PadMode, PadMode::Zeros>{});
    case PadMode::Border: return fn(std::integral_constant<PadMode, PadMode::Border>{});
    case PadMode::Periodic: return fn(std::integral_constant<PadMode, PadMode::Periodic>{});
    case PadMode::Reflect: return fn(std::integral_constant<PadMode, PadMode::Reflect>{});
    case PadMode::Symmetric: return fn(std::integral_constant<PadMode, PadMode::Symmetric>{});
    case PadMode::Polynomial: return fn(std::integral_constant<PadMode, PadMode::Polynomial>{});
  }
}

template <PadMode M, typename scalar_t, typename I>
void launch_forward(const at::Tensor& x, at::Tensor& out, const PadPlan& plan) {
  PadAxis<I> axes[3];
  plan_axes(plan, axes);
  ForwardArgs<scalar_t, I> a{};
  a.x = x.const_data_ptr<scalar_t>();
  a.y = out.mutable_data_ptr<scalar_t>();
  const size_t shared = pad_kernels::plan_forward(a, axes, I(plan.batch * plan.out[0] * plan.out[1]), kTableBudget);
  auto kernel = pad_kernels::pad_forward_kernel<M, scalar_t, I>;
  static const int per_sm = blocks_per_sm(kernel);
  kernel<<<one_wave(per_sm, a.items), kThreads, shared, current_stream()>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Polynomial mode, forward (src = input) or backward (src = grad_output):
// copies, and the ring's weighted sums in acc_t.
template <typename scalar_t, typename I>
void launch_poly(const at::Tensor& src, at::Tensor& dst, const PadPlan& plan, bool forward) {
  using acc_t = at::opmath_type<scalar_t>;
  PadAxis<I> axes[3];
  plan_axes(plan, axes);
  pad_kernels::PolyArgs<scalar_t, acc_t, I> a{};
  a.src = src.const_data_ptr<scalar_t>();
  a.dst = dst.mutable_data_ptr<scalar_t>();
  const size_t shared = pad_kernels::plan_poly(a, axes, forward, I(plan.batch), kTableBudget);
  const int64_t per_block = int64_t(kThreads) * pad_kernels::poly_unroll<scalar_t>();
  const int64_t passes = (int64_t(a.total) + per_block - 1) / per_block;
  auto launch = [&](auto kernel, int per_sm) {
    kernel<<<one_wave(per_sm, passes * kThreads), kThreads, shared, current_stream()>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  // LEARNABLE_OPS_PAD_POLY_SPLIT=1 (a tuning switch, read at every call; off
  // unless set): the forward as the copy box, then the ring (pad_kernels.cuh).
  if (forward && env_override("LEARNABLE_OPS_PAD_POLY_SPLIT").value_or(false) && pad_kernels::poly_split_applies(a)) {
    const pad_kernels::PolySplit<I> p = pad_kernels::plan_poly_split(a);
    const int64_t box_passes =
        (int64_t(p.box_items) + per_block - 1) / per_block;  // kUnroll items per thread, as the flat kernel
    if (p.box_items > 0) {
      auto box = pad_kernels::pad_poly_box_kernel<scalar_t, acc_t, I>;
      static const int box_per_sm = blocks_per_sm(box);
      box<<<one_wave(box_per_sm, box_passes * kThreads), kThreads, 0, current_stream()>>>(a, p);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (p.ring_items > 0) {
      auto go = [&](auto ring, int per_sm) {
        ring<<<one_wave(per_sm, int64_t(p.ring_items)), kThreads, shared, current_stream()>>>(a, p);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (pad_kernels::poly_tabled(a)) {
        auto ring = pad_kernels::pad_poly_ring_kernel<true, scalar_t, acc_t, I>;
        static const int per_sm = blocks_per_sm(ring);
        go(ring, per_sm);
      } else {
        auto ring = pad_kernels::pad_poly_ring_kernel<false, scalar_t, acc_t, I>;
        static const int per_sm = blocks_per_sm(ring);
        go(ring, per_sm);
      }
    }
    return;
  }
  auto with_tables = [&](auto direction) {
    constexpr bool kForward = decltype(direction)::value;
    if (pad_kernels::poly_tabled(a)) {
      auto kernel = pad_kernels::pad_poly_kernel<kForward, true, scalar_t, acc_t, I>;
      static const int per_sm = blocks_per_sm(kernel);
      launch(kernel, per_sm);
    } else {
      auto kernel = pad_kernels::pad_poly_kernel<kForward, false, scalar_t, acc_t, I>;
      static const int per_sm = blocks_per_sm(kernel);
      launch(kernel, per_sm);
    }
  };
  if (forward) with_tables(std::true_type{});
  else with_tables(std::false_type{});
}

// Backward of the index modes.
template <PadMode M, typename scalar_t, typename I>
void launch_gather(const at::Tensor& src, at::Tensor& dst, const PadPlan& plan) {
  using acc_t = at::opmath_type<scalar_t>;
  PadAxis<I> axes[3];
  plan_axes(plan, axes);
  GatherArgs<scalar_t, I> a{};
  a.src = src.const_data_ptr<scalar_t>();
  a.dst = dst.mutable_data_ptr<scalar_t>();
  const size_t shared = pad_kernels::plan_gather<M>(a, axes, I(plan.batch), kTableBudget);
  auto kernel = pad_kernels::pad_gather_kernel<M, acc_t, scalar_t, I>;
  static const int per_sm = blocks_per_sm(kernel);
  kernel<<<one_wave(per_sm, a.items), kThreads, shared, current_stream()>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

// The ops' body for one dtype: every mode, 32- or 64-bit indices; the pad
// (forward, src = input) or its adjoint (src = grad_output).
template <typename scalar_t>
void pad_typed(const at::Tensor& src, at::Tensor& dst, const PadPlan& plan, bool small, bool forward) {
  with_mode(plan.mode, [&](auto mode) {
    constexpr PadMode M = decltype(mode)::value;
    auto run = [&](auto index) {
      using I = decltype(index);
      if constexpr (M == PadMode::Polynomial) launch_poly<scalar_t, I>(src, dst, plan, forward);
      else if (forward) launch_forward<M, scalar_t, I>(src, dst, plan);
      else launch_gather<M, scalar_t, I>(src, dst, plan);
    };
    if (small) run(int32_t{});
    else run(int64_t{});
  });
}

#define LO_PAD_INSTANTIATE(T) \
  template void pad_typed<T>(const at::Tensor&, at::Tensor&, const PadPlan&, bool, bool);

}  // namespace learnable_ops
