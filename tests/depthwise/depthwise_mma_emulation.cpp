// Replays the tensor-core depthwise forward (cuda/depthwise_mma.cuh) on the CPU
// in float64: every block, image and warp, with the kernel's index maps (the
// B fragment table, the staging, the A loads and the stores) and a model of
// mma.m16n8k16 written from the PTX ISA's fragment layouts (not from the
// header's maps). Shared memory starts, and is refilled before every image,
// with NaN: a value the kernel reads without staging it reaches an output.
// Driven by test_depthwise_mma.py.
//
// argv: N C H W kh kw pt pl Ho Wo flip(0|1) has_bias(0|1) [wgrad]
// stdin: x (N*C*H*W), w (C*kh*kw), bias (C, if has_bias) as float64
// stdout: y (N*C*Ho*Wo) as float64
// With a 13th argument `small`, the small-plane forward kernel (same streams).
// With a 13th argument `wgrad`, the weight gradient kernel instead:
// stdin: x (N*C*H*W), grad_output (N*C*Ho*Wo); stdout: dW (C*kh*kw), the
// blocks' partial sums added in block order.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "depthwise_mma.cuh"

using namespace learnable_ops::depthwise_mma;

namespace {

// PTX ISA, mma.m16n8k16, 16-bit A (row) and B (col), f32 C/D: lane l, group
// g = l >> 2, t = l % 4.
//   A: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B: b0 (k = 2t..2t+1, n = g), b1 (k = 2t+8.., n = g)
//   C: c0, c1 (g, 2t + 0/1), c2, c3 (g+8, 2t + 0/1)
struct Lane {
  double a[4][2];
  double b[2][2];
};

void mma(const Lane (&lanes)[32], double (&d)[32][4]) {
  double A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = lanes[l].a[0][h];
      A[g + 8][2 * t + h] = lanes[l].a[1][h];
      A[g][2 * t + 8 + h] = lanes[l].a[2][h];
      A[g + 8][2 * t + 8 + h] = lanes[l].a[3][h];
      B[2 * t + h][g] = lanes[l].b[0][h];
      B[2 * t + 8 + h][g] = lanes[l].b[1][h];
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int r = 0; r < 4; ++r) {
      const int row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
      double sum = 0;
      for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
      d[l][r] += sum;
    }
  }
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// build_fragments: channel c's B table, (b0 lo, b0 hi, b1 lo, b1 hi) per entry in
// fragment_index order, NaN past the kernel's rows. False if the index map and the
// kernel's decoding of idx disagree.
bool fragment_table(const Geometry& g, const std::vector<double>& w, int64_t c, bool flip, std::vector<double>& s_b) {
  const int T = g.kh * g.kw;
  s_b.assign(kFragments * 4, kNaN);
  for (int idx = 0; idx < g.kh * kChunks * 2 * 32; ++idx) {
    const int lane = idx & 31, nt = (idx >> 5) & 1, kc = (idx >> 6) & 1, u = idx >> 7;
    if (fragment_index(u, kc, nt, lane) != idx) return false;
    for (int r = 0; r < 2; ++r)
      for (int h = 0; h < 2; ++h) {
        const int t = band_tap(u, b_k(lane, r) + h, b_n(lane), kc, nt, g.kh, g.kw, flip);
        s_b[idx * 4 + 2 * r + h] = t < 0 ? 0.0 : w[c * T + t];
      }
  }
  return true;
}

// The kernels' staging of one image's input rows (stage_source) into `stage`
// (row pitch `pitch`), refilled with NaN first: rows [0, e.stage_rows), columns
// [0, cols). False if the region does not fit the stage.
bool stage_input(std::vector<double>& stage, int pitch, const Geometry& g, const TileExtent& e, int cols,
                 const double* xp) {
  if (int64_t(e.stage_rows) * pitch > int64_t(stage.size()) || cols > pitch) return false;
  std::fill(stage.begin(), stage.end(), kNaN);
  for (int s = 0; s < e.stage_rows * cols; ++s) {
    const int r = s / cols, q = s - r * cols;
    const int64_t src = stage_source(g, e, r, q);
    stage[r * pitch + q] = src < 0 ? 0.0 : xp[src];
  }
  return true;
}

// A register's two elements at shared-memory offset `off` (a 32-bit load: even and
// inside the stage). False otherwise.
bool load_a(const std::vector<double>& stage, int off, double (&a)[2]) {
  if (off < 0 || off + 1 >= int(stage.size()) || off % 2 != 0) return false;
  a[0] = stage[off];
  a[1] = stage[off + 1];
  return true;
}

}  // namespace

int weight_grad(const Geometry& g) {
  const int T = g.kh * g.kw;
  std::vector<double> x(g.N * g.C * g.H * g.W), grad(g.N * g.C * g.Ho * g.Wo), dw(g.C * T, 0.0);
  std::cin.read(reinterpret_cast<char*>(x.data()), x.size() * sizeof(double));
  std::cin.read(reinterpret_cast<char*>(grad.data()), grad.size() * sizeof(double));
  std::vector<double> s_g(kGradStageRows * kGradPitch), s_x(kStageRows * kInputPitch);
  for (int64_t c = 0; c < g.C; ++c) {
    for (int part = 0; part < g.tiles * g.n_chunks; ++part) {
      const int tile = part / g.n_chunks, chunk = part - tile * g.n_chunks;
      const TileExtent e = tile_extent(g, tile);
      const int g_rows = grad_stage_rows(g, e), g_cols = grad_stage_cols(e), x_cols = input_stage_cols(e);
      if (g_rows > kGradStageRows || g_cols > kGradPitch || x_cols > kInputPitch || e.stage_rows > kStageRows) return 7;
      double acc[kWarps][kWgMTiles][kWgNTiles][32][4] = {};
      const int64_t n_begin = int64_t(chunk) * g.n_chunk;
      const int64_t n_end = std::min<int64_t>(n_begin + g.n_chunk, g.N);
      for (int64_t n = n_begin; n < n_end; ++n) {
        std::fill(s_g.begin(), s_g.end(), kNaN);
        const double* gp = grad.data() + (n * g.C + c) * g.Ho * g.Wo;
        for (int s = 0; s < g_rows * g_cols; ++s) {
          const int rho = s / g_cols, q = s - rho * g_cols;
          const int64_t src = grad_stage_source(g, e, rho, q);
          s_g[rho * kGradPitch + q] = src < 0 ? 0.0 : gp[src];
        }
        if (!stage_input(s_x, kInputPitch, g, e, x_cols, x.data() + (n * g.C + c) * g.H * g.W)) return 7;
        for (int warp = 0; warp < kWarps; ++warp)
          for (int r_in = warp; r_in < e.stage_rows; r_in += kWarps)
            for (int j0 = 0; j0 < e.cols; j0 += 16)
              for (int mt = 0; mt < kWgMTiles; ++mt)
                for (int nt = 0; nt < kWgNTiles; ++nt) {
                  Lane lanes[32];
                  for (int lane = 0; lane < 32; ++lane) {
                    for (int r = 0; r < 4; ++r)
                      if (!load_a(s_g, wg_a_offset(lane, r, mt, r_in, j0), lanes[lane].a[r])) return 8;
                    for (int r = 0; r < 2; ++r)
                      for (int h = 0; h < 2; ++h) {
                        const int off = wg_b_offset(b_k(lane, r) + h, b_n(lane), nt, r_in, j0);
                        if (off < 0 || off >= kStageRows * kInputPitch) return 9;
                        lanes[lane].b[r][h] = s_x[off];
                      }
                  }
                  mma(lanes, acc[warp][mt][nt]);
                }
      }
      // The block's reduction: (u, v) cells, warps in order; then the partials in block order.
      for (int idx = 0; idx < T; ++idx) {
        const int u = idx / g.kw, v = idx - u * g.kw;
        double sum = 0;
        for (int warp = 0; warp < kWarps; ++warp) {
          bool found = false;
          for (int mt = 0; mt < kWgMTiles; ++mt)
            for (int nt = 0; nt < kWgNTiles; ++nt)
              for (int lane = 0; lane < 32; ++lane)
                for (int r = 0; r < 4; ++r)
                  if (16 * mt + c_row(lane, r) == u && 8 * nt + c_col(lane, r) == v) {
                    sum += acc[warp][mt][nt][lane][r];
                    found = true;
                  }
          if (!found) return 10;
        }
        dw[c * T + idx] += sum;
      }
    }
  }
  std::cout.write(reinterpret_cast<const char*>(dw.data()), dw.size() * sizeof(double));
  return 0;
}

// forward_small_kernel: planes of at most 16x16 outputs, one warp per image.
int forward_small(Geometry g, const std::vector<double>& x, const std::vector<double>& w,
                  const std::vector<double>& bias, bool flip, std::vector<double>& y) {
  if (!is_small_plane(g.Ho, g.Wo)) return 11;
  // Three images per block where there are three: one warp idle, the chunks uneven.
  g.n_chunk = g.N >= 3 ? 3 : g.N;
  g.n_chunks = int((g.N + g.n_chunk - 1) / g.n_chunk);
  const TileExtent e = tile_extent(g, 0);
  std::vector<double> stage(kSmallRows * kSmallPitch), s_b;
  for (int64_t c = 0; c < g.C; ++c)
    for (int chunk = 0; chunk < g.n_chunks; ++chunk) {
      if (!fragment_table(g, w, c, flip, s_b)) return 4;
      const int64_t n_begin = int64_t(chunk) * g.n_chunk, n_end = std::min<int64_t>(n_begin + g.n_chunk, g.N);
      for (int warp = 0; warp < kWarps; ++warp)
        for (int64_t n = n_begin + warp; n < n_end; n += kWarps) {
          if (!stage_input(stage, kSmallPitch, g, e, e.stage_cols, x.data() + (n * g.C + c) * g.H * g.W)) return 12;
          double acc[2][32][4] = {};
          for (int u = 0; u < g.kh; ++u)
            for (int kc = 0; kc < kChunks; ++kc)
              for (int nt = 0; nt < 2; ++nt) {
                Lane lanes[32];
                for (int lane = 0; lane < 32; ++lane) {
                  for (int r = 0; r < 4; ++r)
                    if (!load_a(stage, a_offset(lane, r, 0, u, 0, kc, kSmallPitch), lanes[lane].a[r])) return 13;
                  const double* b = &s_b[fragment_index(u, kc, nt, lane) * 4];
                  for (int r = 0; r < 2; ++r)
                    for (int h = 0; h < 2; ++h) lanes[lane].b[r][h] = b[2 * r + h];
                }
                mma(lanes, acc[nt]);
              }
          double* yp = y.data() + (n * g.C + c) * g.Ho * g.Wo;
          for (int nt = 0; nt < 2; ++nt)
            for (int lane = 0; lane < 32; ++lane)
              for (int r = 0; r < 4; ++r) {
                const int row = c_row(lane, r), col = 8 * nt + c_col(lane, r);
                if (row < e.rows && col < e.cols) yp[row * g.Wo + col] = acc[nt][lane][r] + bias[c];
              }
        }
    }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 13 && argc != 14) {
    std::fprintf(stderr, "usage: N C H W kh kw pt pl Ho Wo flip has_bias\n");
    return 2;
  }
  auto arg = [&](int i) { return std::atoll(argv[i]); };
  Geometry g{};
  g.N = arg(1);
  g.C = arg(2);
  g.H = arg(3);
  g.W = arg(4);
  g.kh = int(arg(5));
  g.kw = int(arg(6));
  g.pt = int(arg(7));
  g.pl = int(arg(8));
  g.Ho = arg(9);
  g.Wo = arg(10);
  const bool flip = arg(11) != 0, has_bias = arg(12) != 0;
  if (g.kh > kMaxKernel || g.kw > kMaxKernel) return 3;
  g.tiles_w = int((g.Wo + kTileCols - 1) / kTileCols);
  g.tiles = int((g.Ho + kTileRows - 1) / kTileRows) * g.tiles_w;
  // Two images per block where there are two: the second image of a block reuses
  // the fragment table (the accumulators, for the weight gradient) and the shared
  // memory of the first.
  g.n_chunk = g.N >= 2 ? 2 : 1;
  g.n_chunks = int((g.N + g.n_chunk - 1) / g.n_chunk);
  if (argc == 14 && std::string(argv[13]) == "wgrad") return weight_grad(g);
  const int T = g.kh * g.kw;
  std::vector<double> x(g.N * g.C * g.H * g.W), w(g.C * T), bias(g.C, 0.0), y(g.N * g.C * g.Ho * g.Wo, -12345.0);
  std::cin.read(reinterpret_cast<char*>(x.data()), x.size() * sizeof(double));
  std::cin.read(reinterpret_cast<char*>(w.data()), w.size() * sizeof(double));
  if (has_bias) std::cin.read(reinterpret_cast<char*>(bias.data()), bias.size() * sizeof(double));
  if (argc == 14 && std::string(argv[13]) == "small") {
    const int rc = forward_small(g, x, w, bias, flip, y);
    if (rc != 0) return rc;
    std::cout.write(reinterpret_cast<const char*>(y.data()), y.size() * sizeof(double));
    return 0;
  }

  std::vector<double> s_x(kStageRows * kPitch), s_b;
  for (int64_t c = 0; c < g.C; ++c) {
    for (int block_x = 0; block_x < g.tiles * g.n_chunks; ++block_x) {
      const int tile = block_x / g.n_chunks, chunk = block_x - tile * g.n_chunks;
      const TileExtent e = tile_extent(g, tile);
      if (!fragment_table(g, w, c, flip, s_b)) return 4;
      const int64_t n_begin = int64_t(chunk) * g.n_chunk;
      const int64_t n_end = std::min<int64_t>(n_begin + g.n_chunk, g.N);
      for (int64_t n = n_begin; n < n_end; ++n) {
        if (!stage_input(s_x, kPitch, g, e, e.stage_cols, x.data() + (n * g.C + c) * g.H * g.W)) return 5;
        for (int warp = 0; warp < kWarps; ++warp) {
          const int j0 = 16 * warp;
          if (j0 >= e.cols) continue;
          double acc[kMTiles][2][32][4] = {};
          for (int u = 0; u < g.kh; ++u)
            for (int mt = 0; mt < e.m_tiles; ++mt)
              for (int kc = 0; kc < kChunks; ++kc)
                for (int nt = 0; nt < 2; ++nt) {
                  Lane lanes[32];
                  for (int lane = 0; lane < 32; ++lane) {
                    for (int r = 0; r < 4; ++r)
                      if (!load_a(s_x, a_offset(lane, r, mt, u, j0, kc), lanes[lane].a[r])) return 6;
                    const double* b = &s_b[fragment_index(u, kc, nt, lane) * 4];
                    for (int r = 0; r < 2; ++r)
                      for (int h = 0; h < 2; ++h) lanes[lane].b[r][h] = b[2 * r + h];
                  }
                  mma(lanes, acc[mt][nt]);
                }
          double* yp = y.data() + (n * g.C + c) * g.Ho * g.Wo;
          for (int mt = 0; mt < e.m_tiles; ++mt)
            for (int nt = 0; nt < 2; ++nt)
              for (int lane = 0; lane < 32; ++lane)
                for (int r = 0; r < 4; ++r) {
                  const int row = 16 * mt + c_row(lane, r), col = j0 + 8 * nt + c_col(lane, r);
                  if (row < e.rows && col < e.cols)
                    yp[(e.oh0 + row) * g.Wo + e.ow0 + col] = acc[mt][nt][lane][r] + bias[c];
                }
        }
      }
    }
  }
  std::cout.write(reinterpret_cast<const char*>(y.data()), y.size() * sizeof(double));
  return 0;
}
