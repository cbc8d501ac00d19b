// Runs the CUDA layout kernels of DiffConv2d's padded path (cuda/diffconv_layout.cuh)
// on the CPU: every block of the launch, every thread through the list phase, then
// through the gather phase, then through the store phase (the barriers between them).
// Driven by test_diffconv_layout.py.
//
// argv: direction(pad|fold) src_layout(nchw|nhwc) dst_layout(nchw|nhwc)
//       N C H W before_h before_w order_h order_w step_h step_w
//       f64|f32: the kernels' scalar type; narrow|wide: blocks of 1 or kRowsWide rows
//       [copy]: copy_only axes (the image part alone; the pad leaves the ring as it was)
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

template <bool kAdjoint, bool kSrcCL, bool kDstCL, int R, typename T>
void run(const Args<T>& a, int64_t blocks) {
  using acc_t = T;  // as at::opmath_type for float and double
  auto sh = std::make_unique<Shared<acc_t, R>>();
  for (int64_t block = 0; block < blocks; ++block) {
    std::memset(static_cast<void*>(sh.get()), 0xAB, sizeof(Shared<acc_t, R>));  // stale data must not matter
    for (int phase = 0; phase < 3; ++phase)
      for (int ty = 0; ty < kTileRows; ++ty)
        for (int tx = 0; tx < kTile; ++tx) {
          const Slot s = make_slot<kAdjoint, R>(a, block, tx, ty);
          if (phase == 0) lists<kAdjoint>(s, a, *sh);
          if (phase == 1) gather<kAdjoint, kSrcCL>(s, a, *sh);
          if (phase == 2) store<kAdjoint, kDstCL>(s, a, *sh);
        }
  }
}

// T: the kernel's scalar (and accumulator) type, float64 in and out either way;
// R: destination rows per block (1, or kRowsWide<T>).
template <bool kAdjoint, typename T, int R>
int main_for(int argc, char** argv) {
  auto arg = [&](int i) { return std::atoll(argv[i]); };
  const bool src_cl = std::string(argv[2]) == "nhwc", dst_cl = std::string(argv[3]) == "nhwc";
  Args<T> a{};
  a.N = arg(4);
  a.C = arg(5);
  a.h = Axis{arg(6), arg(6) + 2 * arg(8), arg(8), arg(10), arg(12)};
  a.w = Axis{arg(7), arg(7) + 2 * arg(9), arg(9), arg(11), arg(13)};
  a.h.copy_only = a.w.copy_only = argc == 17 && std::string(argv[16]) == "copy";
  if (longest_list<kAdjoint>(a.h) > kMaxTaps || longest_list<kAdjoint>(a.w) > kMaxTaps) {
    std::fprintf(stderr, "lists longer than kMaxTaps\n");
    return 3;
  }
  const int64_t image = a.N * a.C * a.h.n * a.w.n, padded = a.N * a.C * a.h.padded * a.w.padded;
  const int64_t src_n = kAdjoint ? padded : image, dst_n = kAdjoint ? image : padded;
  std::vector<double> src64(src_n), dst64(dst_n);
  std::cin.read(reinterpret_cast<char*>(src64.data()), src_n * sizeof(double));
  std::vector<T> src(src64.begin(), src64.end()), dst(dst_n, T(-12345));
  a.src = src.data();
  a.dst = dst.data();
  const int64_t blocks = plan<kAdjoint, R>(a);
  if (src_cl && dst_cl) run<kAdjoint, true, true, R>(a, blocks);
  if (src_cl && !dst_cl) run<kAdjoint, true, false, R>(a, blocks);
  if (!src_cl && dst_cl) run<kAdjoint, false, true, R>(a, blocks);
  if (!src_cl && !dst_cl) run<kAdjoint, false, false, R>(a, blocks);
  for (int64_t i = 0; i < dst_n; ++i) dst64[i] = double(dst[i]);
  std::cout.write(reinterpret_cast<const char*>(dst64.data()), dst_n * sizeof(double));
  return 0;
}

template <typename T, int R>
int dispatch(int argc, char** argv) {
  return std::string(argv[1]) == "fold" ? main_for<true, T, R>(argc, argv) : main_for<false, T, R>(argc, argv);
}

int main(int argc, char** argv) {
  if (argc != 16 && argc != 17) {
    std::fprintf(stderr,
                 "usage: %s pad|fold nchw|nhwc nchw|nhwc N C H W before_h before_w order_h order_w step_h step_w "
                 "f64|f32 narrow|wide [copy]\n",
                 argv[0]);
    return 2;
  }
  const bool f32 = std::string(argv[14]) == "f32", wide = std::string(argv[15]) == "wide";
  if (f32) return wide ? dispatch<float, kRowsWide<float>>(argc, argv) : dispatch<float, 1>(argc, argv);
  return wide ? dispatch<double, kRowsWide<double>>(argc, argv) : dispatch<double, 1>(argc, argv);
}
