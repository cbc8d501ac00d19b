// Runs the CUDA pad kernel bodies (cuda/pad_kernels.cuh) on the CPU: every
// block of the launch, every thread of a block through the table phase, then
// every thread through the item phase (the __syncthreads between them), with
// the launch planning pad.cu uses. Driven by test_pad_cuda_emulation.py.
//
// argv: direction(forward|backward|runs) mode(0..5) index_bits(32|64)
//       table_budget_bytes blocks threads misalign batch
//       in[3] out[3] before[3] order[3] step[3]      (D, H, W)
// stdin: the source tensor as float64 (input for forward, grad_output for
// backward); stdout: the result as float64. Direction "runs" reads nothing and
// prints the backward pass's single-source run (lo hi shift) of each axis
// listed inline, as the host plans it (the fast path of the fallback).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "pad_kernels.cuh"

using namespace learnable_ops;
using namespace learnable_ops::pad_kernels;

namespace {

struct Launch {
  int64_t blocks;
  int threads;
  size_t shared;
};

template <typename Tables, typename Items>
void emulate(const Launch& l, Tables&& tables, Items&& items) {
  std::vector<double> storage(l.shared / sizeof(double) + 1);
  unsigned char* shared = reinterpret_cast<unsigned char*>(storage.data());
  for (int64_t block = 0; block < l.blocks; ++block) {
    std::memset(shared, 0xAB, l.shared);  // stale data from a previous block must not matter
    for (int t = 0; t < l.threads; ++t) tables(ThreadSlot{block, l.blocks, t, l.threads, shared});
    for (int t = 0; t < l.threads; ++t) items(ThreadSlot{block, l.blocks, t, l.threads, shared});
  }
}

struct Job {
  bool forward;
  PadMode mode;
  size_t budget;
  int64_t blocks;
  int threads;
  int64_t batch;
  int64_t in[3], out[3], before[3], order[3], step[3];
};

template <PadMode M, typename I>
void run(const Job& job, const double* src, double* dst) {
  PadAxis<I> axes[3];
  for (int a = 0; a < 3; ++a)
    axes[a] = PadAxis<I>{I(job.in[a]), I(job.out[a]), I(job.before[a]), job.order[a], job.step[a]};
  if (src == nullptr) {
    for (int a = 0; a < 3; ++a) {
      I lo, hi, shift;
      single_source_run<M>(axes[a], false, lo, hi, shift);
      std::printf("%lld %lld %lld\n", (long long)lo, (long long)hi, (long long)shift);
    }
    return;
  }
  if constexpr (M != PadMode::Polynomial) {
    if (job.forward) {
      ForwardArgs<double, I> a{};
      a.x = src;
      a.y = dst;
      const size_t shared = plan_forward(a, axes, I(job.batch * job.out[0] * job.out[1]), job.budget);
      emulate(Launch{job.blocks, job.threads, shared},
              [&](const ThreadSlot& s) { pad_forward_tables<M>(s, a); },
              [&](const ThreadSlot& s) { pad_forward_items<M>(s, a); });
      return;
    }
  }
  GatherArgs<double, I> a{};
  a.src = src;
  a.dst = dst;
  const size_t shared = plan_gather<M>(a, axes, job.forward, I(job.batch), job.budget);
  emulate(Launch{job.blocks, job.threads, shared},
          [&](const ThreadSlot& s) { pad_gather_tables<M>(s, a); },
          [&](const ThreadSlot& s) { pad_gather_items<M, double>(s, a); });
}

template <typename I>
void run_mode(const Job& job, const double* src, double* dst) {
  switch (job.mode) {
    case PadMode::Zeros: return run<PadMode::Zeros, I>(job, src, dst);
    case PadMode::Border: return run<PadMode::Border, I>(job, src, dst);
    case PadMode::Periodic: return run<PadMode::Periodic, I>(job, src, dst);
    case PadMode::Reflect: return run<PadMode::Reflect, I>(job, src, dst);
    case PadMode::Symmetric: return run<PadMode::Symmetric, I>(job, src, dst);
    case PadMode::Polynomial: return run<PadMode::Polynomial, I>(job, src, dst);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9 + 15) {
    std::fprintf(stderr, "expected %d arguments, got %d\n", 9 + 15 - 1, argc - 1);
    return 2;
  }
  Job job{};
  job.forward = std::string(argv[1]) == "forward";
  job.mode = static_cast<PadMode>(std::atoi(argv[2]));
  const int bits = std::atoi(argv[3]);
  job.budget = std::strtoull(argv[4], nullptr, 10);
  job.blocks = std::atoll(argv[5]);
  job.threads = std::atoi(argv[6]);
  const int misalign = std::atoi(argv[7]);
  job.batch = std::atoll(argv[8]);
  for (int a = 0; a < 3; ++a) {
    job.in[a] = std::atoll(argv[9 + a]);
    job.out[a] = std::atoll(argv[12 + a]);
    job.before[a] = std::atoll(argv[15 + a]);
    job.order[a] = std::atoll(argv[18 + a]);
    job.step[a] = std::atoll(argv[21 + a]);
  }
  if (std::string(argv[1]) == "runs") {
    run_mode<int64_t>(job, nullptr, nullptr);
    return 0;
  }
  int64_t in_numel = job.batch, out_numel = job.batch;
  for (int a = 0; a < 3; ++a) in_numel *= job.in[a], out_numel *= job.out[a];
  const int64_t src_numel = job.forward ? in_numel : out_numel;
  const int64_t dst_numel = job.forward ? out_numel : in_numel;
  std::vector<double> src(src_numel);
  if (!std::cin.read(reinterpret_cast<char*>(src.data()), src_numel * sizeof(double))) {
    std::fprintf(stderr, "short input\n");
    return 2;
  }
  // 32-byte aligned destination (Quad<double>), optionally shifted by one
  // element so that the scalar-store path runs too. NaN marks unwritten elements.
  std::vector<double> storage(dst_numel + 8, 0.0 / 0.0);
  double* dst = storage.data();
  while (reinterpret_cast<uintptr_t>(dst) % 32) ++dst;
  dst += misalign;
  if (bits == 64)
    run_mode<int64_t>(job, src.data(), dst);
  else
    run_mode<int32_t>(job, src.data(), dst);
  std::cout.write(reinterpret_cast<const char*>(dst), dst_numel * sizeof(double));
  return std::cout ? 0 : 1;
}
