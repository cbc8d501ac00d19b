// pad: N-d padding in five modes (and cropping), CPU kernels and schemas.
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

at::Tensor pad_cpu(const at::Tensor& input, at::IntArrayRef pad, c10::string_view mode_name) {
  check_pad_input(input, "input");
  const PadMode mode = parse_pad_mode(std::string(mode_name));
  const PadPlan plan = make_pad_plan(input.sizes(), pad, mode);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty(plan.out_shape, x.options());
  if (out.numel() == 0) return out;
  if (x.numel() == 0) return out.zero_();

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
                            at::IntArrayRef pad, c10::string_view mode_name) {
  check_pad_input(grad_output, "grad_output");
  const PadMode mode = parse_pad_mode(std::string(mode_name));
  const PadPlan plan = make_pad_plan(input_size, pad, mode, "input_size");
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(plan.out_shape),
                    "grad_output must have shape ", at::IntArrayRef(plan.out_shape), ", got ",
                    grad_output.sizes());
  const at::Tensor g = grad_output.contiguous();
  at::Tensor grad_input = at::empty(input_size, g.options());
  if (grad_input.numel() == 0) return grad_input;
  if (g.numel() == 0) return grad_input.zero_();

  const auto pre_d = pad_axis_preimages(plan, 0), pre_h = pad_axis_preimages(plan, 1);
  const auto map_w = pad_axis_map(plan, 2);
  const int64_t Di = plan.in[0], Hi = plan.in[1], Wi = plan.in[2];
  const int64_t Do = plan.out[0], Ho = plan.out[1], Wo = plan.out[2];
  const int64_t w_lo = std::max<int64_t>(0, plan.before[2]);
  const int64_t w_hi = std::min<int64_t>(Wo, plan.before[2] + Wi);
  const int64_t rows = plan.batch * Di * Hi;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "pad_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = g.const_data_ptr<scalar_t>();
    scalar_t* dst = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(Wo, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(Wi);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t ih = r % Hi, id = (r / Hi) % Di, b = r / (Hi * Di);
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
  m.def("pad(Tensor input, int[] pad, str mode) -> Tensor");
  m.def("pad_backward(Tensor grad_output, SymInt[] input_size, int[] pad, str mode) -> Tensor");
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) {
  m.impl("pad", &pad_cpu);
  m.impl("pad_backward", &pad_backward_cpu);
}

}  // namespace learnable_ops
