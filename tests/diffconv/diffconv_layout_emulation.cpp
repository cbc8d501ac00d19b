// Runs the CUDA layout kernels of DiffConv2d's padded path (cuda/diffconv_layout.cuh)
// on the CPU: every block of the launch, every thread through the list phase, then
// through the gather phase, then through the store phase (the barriers between them).
// Driven by test_diffconv_layout.py.
//
// argv: direction(pad|fold) src_layout(nchw|nhwc) dst_layout(nchw|nhwc)
//       N C H W before_h before_w order_h order_w step_h step_w
// stdin: the source as float64 in its layout (the image for pad, the padded
// gradient for fold); stdout: the destination as float64 in its layout.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "diffconv_layout.cuh"

using namespace learnable_ops::diffconv_layout;

template <bool kAdjoint, bool kSrcCL, bool kDstCL>
void run(const Args<double>& a, int64_t blocks) {
  auto sh = std::make_unique<Shared<double>>();
  for (int64_t block = 0; block < blocks; ++block) {
    std::memset(static_cast<void*>(sh.get()), 0xAB, sizeof(Shared<double>));  // stale data must not matter
    for (int phase = 0; phase < 3; ++phase)
      for (int ty = 0; ty < kTileRows; ++ty)
        for (int tx = 0; tx < kTile; ++tx) {
          const Slot s{block, tx, ty};
          if (phase == 0) lists<kAdjoint>(s, a, *sh);
          if (phase == 1) gather<kAdjoint, kSrcCL>(s, a, *sh);
          if (phase == 2) store<kAdjoint, kDstCL>(s, a, *sh);
        }
  }
}

template <bool kAdjoint>
int main_for(int argc, char** argv) {
  auto arg = [&](int i) { return std::atoll(argv[i]); };
  const bool src_cl = std::string(argv[2]) == "nhwc", dst_cl = std::string(argv[3]) == "nhwc";
  Args<double> a{};
  a.N = arg(4);
  a.C = arg(5);
  a.h = Axis{arg(6), arg(6) + 2 * arg(8), arg(8), arg(10), arg(12)};
  a.w = Axis{arg(7), arg(7) + 2 * arg(9), arg(9), arg(11), arg(13)};
  if (longest_list<kAdjoint>(a.h) > kMaxTaps || longest_list<kAdjoint>(a.w) > kMaxTaps) {
    std::fprintf(stderr, "lists longer than kMaxTaps\n");
    return 3;
  }
  const int64_t image = a.N * a.C * a.h.n * a.w.n, padded = a.N * a.C * a.h.padded * a.w.padded;
  const int64_t src_n = kAdjoint ? padded : image, dst_n = kAdjoint ? image : padded;
  std::vector<double> src(src_n), dst(dst_n, -12345.0);
  std::cin.read(reinterpret_cast<char*>(src.data()), src_n * sizeof(double));
  a.src = src.data();
  a.dst = dst.data();
  const int64_t blocks = plan<kAdjoint>(a);
  if (src_cl && dst_cl) run<kAdjoint, true, true>(a, blocks);
  if (src_cl && !dst_cl) run<kAdjoint, true, false>(a, blocks);
  if (!src_cl && dst_cl) run<kAdjoint, false, true>(a, blocks);
  if (!src_cl && !dst_cl) run<kAdjoint, false, false>(a, blocks);
  std::cout.write(reinterpret_cast<const char*>(dst.data()), dst_n * sizeof(double));
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 14) {
    std::fprintf(stderr, "usage: %s pad|fold nchw|nhwc nchw|nhwc N C H W before_h before_w order_h order_w step_h step_w\n",
                 argv[0]);
    return 2;
  }
  return std::string(argv[1]) == "fold" ? main_for<true>(argc, argv) : main_for<false>(argc, argv);
}
