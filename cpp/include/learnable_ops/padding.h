// Padding index maps, shared by every CPU and CUDA kernel.
//
// One axis of length n is padded (or cropped) by `before` elements in front.
// Output index o reads the input at the padded coordinate p = o - before; the
// map below sends p to the input index it copies, or to -1 (zeros). Every
// mode matches numpy.pad exactly, for any p (far outside, negative, n == 1):
//
//   zeros      constant 0 outside [0, n)               numpy "constant"
//   border     clamp(p, 0, n-1)                        numpy "edge"
//   periodic   p mod n                                 numpy "wrap"
//   reflect    mirror about the edge elements,         numpy "reflect"
//              period 2n-2 (n == 1 repeats the single element)
//   symmetric  mirror about the edges, period 2n       numpy "symmetric"
//
// The map is separable: an N-d pad is the tensor product of the per-axis maps,
// so its adjoint is the product of the per-axis adjoints. `for_each_preimage`
// enumerates {p : map(p) == j}, which lets a backward kernel gather (one
// writer per input element, deterministic) instead of scatter with atomics.
#pragma once

#include <cmath>
#include <cstdint>

// The *_t templates take the index type: kernels use int32_t when every size
// fits, which makes the modulo arithmetic several times cheaper on a GPU.

#include "learnable_ops/macros.h"

namespace learnable_ops {

enum class PadMode : int32_t {
  Zeros = 0,
  Border = 1,
  Periodic = 2,
  Reflect = 3,
  Symmetric = 4,
  // Not an index map: a linear combination of samples (see lagrange.h). The
  // index functions below treat it as zeros; its kernels use lagrange.h.
  Polynomial = 5,
};

// Floor modulo: result in [0, m) for m > 0, for any sign of a.
template <typename I>
LO_HD I floor_mod_t(I a, I m) {
  const I r = a % m;
  return r < 0 ? r + m : r;
}

// Input index that padded coordinate p reads, or -1 for a zero.
template <typename I>
LO_HD I pad_index_t(I p, I n, PadMode mode) {
  if (p >= 0 && p < n) return p;
  switch (mode) {
    case PadMode::Zeros:
    case PadMode::Polynomial:
      return -1;
    case PadMode::Border:
      return p < 0 ? 0 : n - 1;
    case PadMode::Periodic:
      return floor_mod_t(p, n);
    case PadMode::Reflect: {
      if (n == 1) return 0;
      const I period = 2 * n - 2;
      const I q = floor_mod_t(p, period);
      return q < n ? q : period - q;
    }
    case PadMode::Symmetric: {
      const I period = 2 * n;
      const I q = floor_mod_t(p, period);
      return q < n ? q : period - 1 - q;
    }
  }
  return -1;
}

// An integer shift equivalent to `shift` (an integer-valued double of any
// magnitude, e.g. 1e30) for reading p = i - shift and p = i - shift - 1 with
// i in [0, n). Zeros and border only see on which side of [0, n) p falls, so
// the shift is clamped to [-(n+1), n+1]; periodic, reflect and symmetric are
// periodic in p, so the shift is reduced modulo their period (fmod is exact).
// The result fits comfortably in int64 arithmetic on indices.
LO_HD int64_t equivalent_shift(double shift, int64_t n, PadMode mode) {
  switch (mode) {
    case PadMode::Zeros:
    case PadMode::Border: {
      const double limit = static_cast<double>(n + 1);
      return static_cast<int64_t>(shift < -limit ? -limit : (shift > limit ? limit : shift));
    }
    case PadMode::Periodic:
      return static_cast<int64_t>(::fmod(shift, static_cast<double>(n)));
    case PadMode::Reflect:
      return n == 1 ? 0 : static_cast<int64_t>(::fmod(shift, static_cast<double>(2 * n - 2)));
    case PadMode::Symmetric:
      return static_cast<int64_t>(::fmod(shift, static_cast<double>(2 * n)));
    case PadMode::Polynomial:  // not a shift padding mode: make_shift_geometry rejects it
      break;
  }
  return 0;
}

// Calls f(o) for every output index o in [0, out_len) with
// pad_index(o - before, n, mode) == j, in increasing order of o.
template <typename I, typename F>
LO_HD void for_each_preimage_t(I j, I n, I before, I out_len, PadMode mode, F&& f) {
  // Output range covered by padded coordinates [lo, hi).
  auto range = [&](I lo, I hi) {
    I a = lo + before, b = hi + before;
    if (a < 0) a = 0;
    if (b > out_len) b = out_len;
    for (I o = a; o < b; ++o) f(o);
  };
  // Output indices o = before + r + k * period, for residues r (ascending).
  auto lattice = [&](I r1, I r2, I period) {
    // Smallest o >= 0 on each residue class.
    I o1 = floor_mod_t(before + r1, period);
    I o2 = r2 < 0 ? out_len : floor_mod_t(before + r2, period);
    while (o1 < out_len || o2 < out_len) {
      if (o1 <= o2) {
        f(o1);
        if (o2 == o1) o2 += period;
        o1 += period;
      } else {
        f(o2);
        o2 += period;
      }
    }
  };
  switch (mode) {
    case PadMode::Zeros:
    case PadMode::Polynomial:
      range(j, j + 1);
      return;
    case PadMode::Border: {
      const I big = out_len + (before < 0 ? -before : before) + n + 1;
      const I lo = j == 0 ? -big : j;
      const I hi = j == n - 1 ? n + big : j + 1;
      range(lo, hi);
      return;
    }
    case PadMode::Periodic:
      lattice(j, -1, n);
      return;
    case PadMode::Reflect: {
      if (n == 1) {
        range(-out_len - (before > 0 ? before : -before) - 1,
              out_len + (before > 0 ? before : -before) + 1);
        return;
      }
      const I period = 2 * n - 2;
      const I mirror = period - j;  // == j at both edges
      lattice(j, (mirror == j || mirror == period) ? -1 : mirror, period);
      return;
    }
    case PadMode::Symmetric: {
      const I period = 2 * n;
      lattice(j, period - 1 - j, period);
      return;
    }
  }
}

// 64-bit entry points (the index type of every host-side caller).
LO_HD int64_t floor_mod(int64_t a, int64_t m) { return floor_mod_t<int64_t>(a, m); }
LO_HD int64_t pad_index(int64_t p, int64_t n, PadMode mode) { return pad_index_t<int64_t>(p, n, mode); }
template <typename F>
LO_HD void for_each_preimage(int64_t j, int64_t n, int64_t before, int64_t out_len, PadMode mode,
                             F&& f) {
  for_each_preimage_t<int64_t>(j, n, before, out_len, mode, static_cast<F&&>(f));
}

}  // namespace learnable_ops
