// pad: N-d padding in five index modes plus polynomial extrapolation (and
// cropping), CPU kernels and schemas.
#include <algorithm>
#include <cstring>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/pad_plan.h"

namespace learnable_ops {
namespace {

void check_pad_input(const at::Tensor& input, const char* name) {
  check_floating(input, name);
}

// Polynomial mode. Each output row (d, h) is a weighted sum of input rows
// (the tensor product of the D and H maps), accumulated in opmath into a row
// buffer; the W map is then applied to that buffer: a copy in the middle and
// order + 1 taps per extrapolated column.
void pad_polynomial_cpu(const at::Tensor& x, at::Tensor& out, const PadPlan& plan) {
  const WeightedMap src_d = polynomial_axis_sources(plan, 0), src_h = polynomial_axis_sources(plan, 1),
                    src_w = polynomial_axis_sources(plan, 2);
  const int64_t Di = plan.in[0], Hi = plan.in[1], Wi = plan.in[2];
  const int64_t Do = plan.out[0], Ho = plan.out[1], Wo = plan.out[2];
  const int64_t w_lo = std::max<int64_t>(0, plan.before[2]);
  const int64_t w_hi = std::max(w_lo, std::min<int64_t>(Wo, plan.before[2] + Wi));
  const int64_t rows = plan.batch * Do * Ho;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pad_polynomial_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(Wo, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(Wi);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t oh = r % Ho, od = (r / Ho) % Do, b = r / (Ho * Do);
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t kd = src_d.ptr[od]; kd < src_d.ptr[od + 1]; ++kd) {
          for (int64_t kh = src_h.ptr[oh]; kh < src_h.ptr[oh + 1]; ++kh) {
            const acc_t w = static_cast<acc_t>(src_d.weight[kd] * src_h.weight[kh]);
            const scalar_t* irow = src + ((b * Di + src_d.idx[kd]) * Hi + src_h.idx[kh]) * Wi;
            for (int64_t iw = 0; iw < Wi; ++iw) acc[iw] += w * static_cast<acc_t>(irow[iw]);
          }
        }
        scalar_t* orow = dst + r * Wo;
        const acc_t* shifted = acc.data() - plan.before[2];
        for (int64_t ow = w_lo; ow < w_hi; ++ow) orow[ow] = static_cast<scalar_t>(shifted[ow]);
        auto extrapolate = [&](int64_t ow) {
          acc_t v = 0;
          for (int64_t k = src_w.ptr[ow]; k < src_w.ptr[ow + 1]; ++k)
            v += static_cast<acc_t>(src_w.weight[k]) * acc[src_w.idx[k]];
          orow[ow] = static_cast<scalar_t>(v);
        };
        for (int64_t ow = 0; ow < w_lo; ++ow) extrapolate(ow);
        for (int64_t ow = w_hi; ow < Wo; ++ow) extrapolate(ow);
      }
    });
  });
}

// Exact adjoint of pad_polynomial_cpu, gathered per input row: the output
// rows that use it, weighted, summed into a buffer; then the transposed W map
// (the copy in the middle plus the extrapolation taps near both edges).
void pad_polynomial_backward_cpu(const at::Tensor& g, at::Tensor& grad_input, const PadPlan& plan) {
  const WeightedMap pre_d = polynomial_axis_preimages(plan, 0, true),
                    pre_h = polynomial_axis_preimages(plan, 1, true),
                    pre_w = polynomial_axis_preimages(plan, 2, false);
  const int64_t Di = plan.in[0], Hi = plan.in[1], Wi = plan.in[2];
  const int64_t Do = plan.out[0], Ho = plan.out[1], Wo = plan.out[2];
  // Input columns copied to an output column: [c_lo, c_hi).
  const int64_t c_lo = std::max<int64_t>(0, -plan.before[2]);
  const int64_t c_hi = std::max(c_lo, std::min<int64_t>(Wi, Wo - plan.before[2]));
  const int64_t rows = plan.batch * Di * Hi;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "pad_polynomial_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = g.const_data_ptr<scalar_t>();
    scalar_t* dst = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(Wo, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(Wo);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t ih = r % Hi, id = (r / Hi) % Di, b = r / (Hi * Di);
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t kd = pre_d.ptr[id]; kd < pre_d.ptr[id + 1]; ++kd) {
          for (int64_t kh = pre_h.ptr[ih]; kh < pre_h.ptr[ih + 1]; ++kh) {
            const acc_t w = static_cast<acc_t>(pre_d.weight[kd] * pre_h.weight[kh]);
            const scalar_t* grow = src + ((b * Do + pre_d.idx[kd]) * Ho + pre_h.idx[kh]) * Wo;
            for (int64_t ow = 0; ow < Wo; ++ow) acc[ow] += w * static_cast<acc_t>(grow[ow]);
          }
        }
        scalar_t* irow = dst + r * Wi;
        const acc_t* shifted = acc.data() + plan.before[2];
        for (int64_t iw = 0; iw < c_lo; ++iw) irow[iw] = scalar_t(0);
        for (int64_t iw = c_lo; iw < c_hi; ++iw) irow[iw] = static_cast<scalar_t>(shifted[iw]);
        for (int64_t iw = c_hi; iw < Wi; ++iw) irow[iw] = scalar_t(0);
        for (int64_t iw = 0; iw < Wi; ++iw) {
          if (pre_w.ptr[iw] == pre_w.ptr[iw + 1]) continue;
          acc_t v = iw >= c_lo && iw < c_hi ? shifted[iw] : acc_t(0);
          for (int64_t k = pre_w.ptr[iw]; k < pre_w.ptr[iw + 1]; ++k)
            v += static_cast<acc_t>(pre_w.weight[k]) * acc[pre_w.idx[k]];
          irow[iw] = static_cast<scalar_t>(v);
        }
      }
    });
  });
}

at::Tensor pad_cpu(const at::Tensor& input, at::IntArrayRef pad, c10::string_view mode_name,
                   at::OptionalIntArrayRef order, at::OptionalIntArrayRef dilation) {
  check_pad_input(input, "input");
  const PadMode mode = parse_pad_mode(std::string(mode_name));
  const PadPlan plan = make_pad_plan(input.sizes(), pad, mode, order, dilation);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(plan.out_shape, x.options());
  if (out.numel() == 0) return out;
  if (x.numel() == 0) return out.zero_();
  if (mode == PadMode::Polynomial) {
    pad_polynomial_cpu(x, out, plan);
    return out;
  }

  const auto map_d = pad_axis_map(plan, 0), map_h = pad_axis_map(plan, 1),
             map_w = pad_axis_map(plan, 2);
  const int64_t Di = plan.in[0], Hi = plan.in[1], Wi = plan.in[2];
  const int64_t Do = plan.out[0], Ho = plan.out[1], Wo = plan.out[2];
  // Output columns that copy the input contiguously: [w_lo, w_hi).
  const int64_t w_lo = std::max<int64_t>(0, plan.before[2]);
  const int64_t w_hi = std::min<int64_t>(Wo, plan.before[2] + Wi);
  const int64_t rows = plan.batch * Do * Ho;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pad_cpu", [&] {
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(Wo, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t oh = r % Ho, od = (r / Ho) % Do, b = r / (Ho * Do);
        scalar_t* orow = dst + r * Wo;
        const int64_t id = map_d[od], ih = map_h[oh];
        if (id < 0 || ih < 0) {
          std::fill(orow, orow + Wo, scalar_t(0));
          continue;
        }
        const scalar_t* irow = src + ((b * Di + id) * Hi + ih) * Wi;
        for (int64_t ow = 0; ow < w_lo; ++ow) {
          const int64_t iw = map_w[ow];
          orow[ow] = iw < 0 ? scalar_t(0) : irow[iw];
        }
        if (w_hi > w_lo)
          std::memcpy(orow + w_lo, irow + (w_lo - plan.before[2]),
                      (w_hi - w_lo) * sizeof(scalar_t));
        for (int64_t ow = std::max(w_hi, w_lo); ow < Wo; ++ow) {
          const int64_t iw = map_w[ow];
          orow[ow] = iw < 0 ? scalar_t(0) : irow[iw];
        }
      }
    });
  });
  return out;
}

// Exact adjoint of pad_cpu. Each input row gathers the output rows that read
// it (per-axis preimages), in a fixed order, so the result does not depend on
// the number of threads.
at::Tensor pad_backward_cpu(const at::Tensor& grad_output, at::IntArrayRef input_size,
                            at::IntArrayRef pad, c10::string_view mode_name,
                            at::OptionalIntArrayRef order, at::OptionalIntArrayRef dilation) {
  check_pad_input(grad_output, "grad_output");
  const PadMode mode = parse_pad_mode(std::string(mode_name));
  const PadPlan plan = make_pad_plan(input_size, pad, mode, order, dilation, "input_size");
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(plan.out_shape),
                    "grad_output must have shape ", at::IntArrayRef(plan.out_shape), ", got ",
                    grad_output.sizes());
  const at::Tensor g = grad_output.contiguous();
  at::Tensor grad_input = at::empty(input_size, g.options());
  if (grad_input.numel() == 0) return grad_input;
  if (g.numel() == 0) return grad_input.zero_();
  if (mode == PadMode::Polynomial) {
    pad_polynomial_backward_cpu(g, grad_input, plan);
    return grad_input;
  }

  const auto pre_d = pad_axis_preimages(plan, 0), pre_h = pad_axis_preimages(plan, 1);
  const auto map_w = pad_axis_map(plan, 2);
  const int64_t Di = plan.in[0], Hi = plan.in[1], Wi = plan.in[2];
  const int64_t Do = plan.out[0], Ho = plan.out[1], Wo = plan.out[2];
  const int64_t w_lo = std::max<int64_t>(0, plan.before[2]);
  const int64_t w_hi = std::min<int64_t>(Wo, plan.before[2] + Wi);
  const int64_t rows = plan.batch * Di * Hi;
  // When no two outputs of a row read the same input (zeros padding, or a crop),
  // an input row whose D and H preimages are single is a plain copy of the
  // output row: one memcpy instead of the accumulation below.
  const bool w_injective =
      mode == PadMode::Zeros || (plan.before[2] <= 0 && Wo <= Wi + plan.before[2]);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "pad_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = g.const_data_ptr<scalar_t>();
    scalar_t* dst = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(Wo, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(Wi);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t ih = r % Hi, id = (r / Hi) % Di, b = r / (Hi * Di);
        if (w_injective && pre_d.ptr[id + 1] - pre_d.ptr[id] == 1 && pre_h.ptr[ih + 1] - pre_h.ptr[ih] == 1) {
          const scalar_t* grow = src + ((b * Do + pre_d.idx[pre_d.ptr[id]]) * Ho + pre_h.idx[pre_h.ptr[ih]]) * Wo;
          scalar_t* irow = dst + r * Wi;
          std::fill(irow, irow + Wi, scalar_t(0));
          // Outputs [w_lo, w_hi) copy inputs [w_lo - before, w_hi - before).
          if (w_hi > w_lo)
            std::memcpy(irow + (w_lo - plan.before[2]), grow + w_lo, (w_hi - w_lo) * sizeof(scalar_t));
          continue;
        }
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t pd = pre_d.ptr[id]; pd < pre_d.ptr[id + 1]; ++pd) {
          for (int64_t ph = pre_h.ptr[ih]; ph < pre_h.ptr[ih + 1]; ++ph) {
            const scalar_t* grow = src + ((b * Do + pre_d.idx[pd]) * Ho + pre_h.idx[ph]) * Wo;
            acc_t* a = acc.data() - plan.before[2];
            for (int64_t ow = w_lo; ow < w_hi; ++ow) a[ow] += static_cast<acc_t>(grow[ow]);
            for (int64_t ow = 0; ow < w_lo; ++ow)
              if (map_w[ow] >= 0) acc[map_w[ow]] += static_cast<acc_t>(grow[ow]);
            for (int64_t ow = std::max(w_hi, w_lo); ow < Wo; ++ow)
              if (map_w[ow] >= 0) acc[map_w[ow]] += static_cast<acc_t>(grow[ow]);
          }
        }
        scalar_t* irow = dst + r * Wi;
        for (int64_t iw = 0; iw < Wi; ++iw) irow[iw] = static_cast<scalar_t>(acc[iw]);
      }
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(learnable_ops, m) {
  m.def("pad(Tensor input, int[] pad, str mode, int[]? order=None, int[]? dilation=None) -> Tensor");
  m.def(
      "pad_backward(Tensor grad_output, SymInt[] input_size, int[] pad, str mode, "
      "int[]? order=None, int[]? dilation=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) {
  m.impl("pad", &pad_cpu);
  m.impl("pad_backward", &pad_backward_cpu);
}

}  // namespace learnable_ops
