// Runs the CUDA pad kernel bodies (cuda/pad_kernels.cuh) on the CPU: every
// block of the launch, every thread of a block through the table phase, then
// every thread through the item phase (the __syncthreads between them), with
// the launch planning pad.cu uses. Driven by test_pad_cuda_emulation.py.
//
// argv: direction(forward|forward_split|backward|runs) mode(0..5) index_bits(32|64)
//       table_budget_bytes blocks threads misalign batch
//       in[3] out[3] before[3] order[3] step[3]      (D, H, W)
//       [dtype: float64 (default) | float32]
// stdin: the source tensor as float64 (input for forward, grad_output for
// backward); stdout: the result as float64. Direction "runs" reads nothing and
// prints the backward pass's single-source run (lo hi shift) of each axis
// listed inline, as the host plans it (the fast path of the fallback).
// dtype float32 runs the polynomial kernel in float with float weights (its
// acc_t for float, half and bfloat16), rounding the source first.
// forward_split runs the polynomial forward as the copy box and then the ring
// (the launch under LEARNABLE_OPS_PAD_POLY_SPLIT=1), where it applies.
//
// argv: divider d n_first n_count: checks Divider<int32_t>(d) against the
// division for n_first .. n_first + n_count - 1 and for n near 2^31 and near
// the multiples of d; prints the number of mismatches.
#include <climits>
#include <cstdint>
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
  bool split;  // polynomial forward: the box and ring kernels
  bool float32;
  PadMode mode;
  size_t budget;
  int64_t blocks;
  int threads;
  int misalign;
  int64_t batch;
  int64_t in[3], out[3], before[3], order[3], step[3];
};

template <typename scalar_t, typename acc_t, typename I>
void run_poly(const Job& job, const PadAxis<I> (&axes)[3], const double* src, double* dst) {
  int64_t in_numel = job.batch, out_numel = job.batch;
  for (int a = 0; a < 3; ++a) in_numel *= job.in[a], out_numel *= job.out[a];
  const int64_t src_numel = job.forward ? in_numel : out_numel;
  const int64_t dst_numel = job.forward ? out_numel : in_numel;
  std::vector<scalar_t> x(src, src + src_numel);
  // NaN marks unwritten elements; the same misalignment as the float64 path.
  std::vector<scalar_t> storage(dst_numel + 8, scalar_t(0.0 / 0.0));
  scalar_t* y = storage.data() + job.misalign;
  PolyArgs<scalar_t, acc_t, I> a{};
  a.src = x.data();
  a.dst = y;
  const size_t shared = plan_poly(a, axes, job.forward, I(job.batch), job.budget);
  const Launch launch{job.blocks, job.threads, shared};
  auto tables = [&](const ThreadSlot& s) { pad_poly_tables(s, a); };
  auto no_tables = [](const ThreadSlot&) {};
  if (job.forward && job.split && poly_split_applies(a)) {
    const PolySplit<I> p = plan_poly_split(a);
    emulate(Launch{job.blocks, job.threads, 0}, no_tables, [&](const ThreadSlot& s) { pad_poly_box_items(s, a, p); });
    if (poly_tabled(a))
      emulate(launch, tables, [&](const ThreadSlot& s) { pad_poly_ring_items<true>(s, a, p); });
    else
      emulate(launch, no_tables, [&](const ThreadSlot& s) { pad_poly_ring_items<false>(s, a, p); });
  } else if (job.forward && poly_tabled(a))
    emulate(launch, tables, [&](const ThreadSlot& s) { pad_poly_items<true, true>(s, a); });
  else if (job.forward)
    emulate(launch, no_tables, [&](const ThreadSlot& s) { pad_poly_items<true, false>(s, a); });
  else if (poly_tabled(a))
    emulate(launch, tables, [&](const ThreadSlot& s) { pad_poly_items<false, true>(s, a); });
  else
    emulate(launch, no_tables, [&](const ThreadSlot& s) { pad_poly_items<false, false>(s, a); });
  for (int64_t e = 0; e < dst_numel; ++e) dst[e] = double(y[e]);
}

template <PadMode M, typename I>
void run(const Job& job, const double* src, double* dst) {
  PadAxis<I> axes[3];
  for (int a = 0; a < 3; ++a)
    axes[a] = PadAxis<I>{I(job.in[a]), I(job.out[a]), I(job.before[a]), job.order[a], job.step[a]};
  if (src == nullptr) {
    for (int a = 0; a < 3; ++a) {
      I lo, hi, shift;
      single_source_run<M>(axes[a], lo, hi, shift);
      std::printf("%lld %lld %lld\n", (long long)lo, (long long)hi, (long long)shift);
    }
    return;
  }
  if constexpr (M == PadMode::Polynomial) {
    if (job.float32) return run_poly<float, float>(job, axes, src, dst);
    return run_poly<double, double>(job, axes, src, dst);
  } else {
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
    GatherArgs<double, I> a{};
    a.src = src;
    a.dst = dst;
    const size_t shared = plan_gather<M>(a, axes, I(job.batch), job.budget);
    emulate(Launch{job.blocks, job.threads, shared},
            [&](const ThreadSlot& s) { pad_gather_tables<M>(s, a); },
            [&](const ThreadSlot& s) { pad_gather_items<M, double>(s, a); });
  }
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

int check_divider(int32_t d, int64_t first, int64_t count) {
  const Divider<int32_t> divider(d);
  int64_t mismatches = 0;
  auto check = [&](int64_t n) {
    if (n < 0 || n > INT32_MAX) return;
    if (divider.div(int32_t(n)) != int32_t(n / d)) ++mismatches;
  };
  for (int64_t n = first; n < first + count; ++n) check(n);
  for (int64_t n = INT32_MAX - count; n <= INT32_MAX; ++n) check(n);
  for (int64_t q = INT32_MAX / d; q >= 0 && q > INT32_MAX / d - count; --q)
    for (int64_t r = -1; r <= 1; ++r) check(q * d + r);
  std::printf("%lld\n", (long long)mismatches);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "divider")
    return check_divider(int32_t(std::atoll(argv[2])), std::atoll(argv[3]), std::atoll(argv[4]));
  if (argc != 9 + 15 && argc != 9 + 16) {
    std::fprintf(stderr, "expected %d or %d arguments, got %d\n", 9 + 15 - 1, 9 + 15, argc - 1);
    return 2;
  }
  Job job{};
  job.forward = std::string(argv[1]) == "forward" || std::string(argv[1]) == "forward_split";
  job.split = std::string(argv[1]) == "forward_split";
  job.float32 = argc == 9 + 16 && std::string(argv[24]) == "float32";
  job.mode = static_cast<PadMode>(std::atoi(argv[2]));
  const int bits = std::atoi(argv[3]);
  job.budget = std::strtoull(argv[4], nullptr, 10);
  job.blocks = std::atoll(argv[5]);
  job.threads = std::atoi(argv[6]);
  job.misalign = std::atoi(argv[7]);
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
  dst += job.misalign;
  if (bits == 64)
    run_mode<int64_t>(job, src.data(), dst);
  else
    run_mode<int32_t>(job, src.data(), dst);
  std::cout.write(reinterpret_cast<const char*>(dst), dst_numel * sizeof(double));
  return std::cout ? 0 : 1;
}
