// diff_conv2d: DiffConv2d (padding-free convolution by polynomial extrapolation).
//
// DiffConv2d's output equals a valid convolution of the input padded by
// polynomial extrapolation (the pad op's `polynomial` mode, order K - 1 per
// axis, on the dilated grid). Three implementations share that definition.
//
// Ring path (stride 1, no edge weight or edge bias, keep_img_grad_at_invalid;
// ops diff_conv2d_ring and diff_conv2d_ring_backward, chosen by the Python
// wrapper): F.conv2d's zero-padded convolution plus a correction of the
// boundary outputs by two thin convolutions; see the section further down.
//
// Padded path (the diff_conv2d op without edge weight or edge bias, used for
// stride > 1 and, on CUDA, for every layer that is not depthwise; its backward
// also needs keep_img_grad_at_invalid): the forward pass pads, then runs one
// valid convolution; the padded copy is a temporary. Autograd saves only input
// and weight, as for a plain convolution, and the backward pass recomputes the
// pad for the weight gradient, frees it, then computes the gradient of the
// padded input and folds it back (the pad's adjoint) into the input gradient
// in one pass. The convolutions are ATen's, or our depthwise ops for depthwise
// layers. On CUDA, ATen's (cuDNN's, which compute in NHWC) get channels_last
// tensors: the op diff_conv2d_pad_layout pads straight from NCHW into a
// channels_last buffer and folds straight from channels_last back into NCHW
// (cuda/diffconv_layout.cuh), in the passes that cuDNN would otherwise spend
// transposing the input and the results.
//
// Strip path (edge weight, edge bias, or keep_img_grad_at_invalid false in
// the backward):
//
//   out          = conv(zero-padded x, w) + bias           (ATen: cuDNN / oneDNN)
//   out[strip s] = conv(P_s, w_edge) + bias_edge           (overwrites the strip)
//
// where the strips (top, bottom, left, right) partition the boundary outputs
// (those whose window leaves the image) and P_s is the polynomially padded
// input window of a strip, built by the pad op from a thin slice of x. The
// strips cost O(perimeter * K) values and O(perimeter * K^2) MACs per channel
// pair.
//
// Its backward: ATen's convolution backward of the whole output, then per
// strip the difference between what the strip really computed and what the
// zero-padded conv assumed. With P_s = Z_s + E_s (Z_s the zero-padded window,
// E_s the extrapolated ring) and no edge weight, that difference is
// conv(E_s, w): its weight gradient comes from E_s (P_s with the interior
// zeroed), its input gradient is E^T of the ring part of the strip's
// convT(g) (P^T applied after zeroing the interior). With
// keep_img_grad_at_invalid false, the strip instead removes its zero-padded
// contribution Z^T convT(g) (a crop). With an edge weight, both terms are
// explicit. Every step is the exact adjoint of the forward.
//
// The op is a composition of ATen convolutions (in the ring path of depthwise
// layers, our depthwise ops instead: cpp/depthwise.cpp, cuda/depthwise.cu) and
// the pad op, which dispatch on the device themselves, so one implementation
// is registered for CPU and CUDA; the device kernels are the pad op's
// (cpp/pad.cpp, cuda/pad.cu) and the depthwise ops'.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "learnable_ops/checks.h"
#include "learnable_ops/diffconv_layout.h"
#include "learnable_ops/env_switch.h"

namespace learnable_ops {
namespace {

// Boundary outputs along one axis: front [0, front_end), back [back_start, out).
struct AxisGeometry {
  int64_t n, kernel, dilation, stride, order, pad, out, front_end, back_start;
};

AxisGeometry axis_geometry(int64_t n, int64_t kernel, int64_t dilation, int64_t stride, int64_t order) {
  AxisGeometry g{n, kernel, dilation, stride, order, 0, 0, 0, 0};
  g.pad = (kernel / 2) * dilation;
  g.out = (n - 1) / stride + 1;
  // Output o reads image samples [o * stride - pad, o * stride + pad].
  const int64_t first_inner = (g.pad + stride - 1) / stride;
  const int64_t inner_end = n - 1 - g.pad >= 0 ? (n - 1 - g.pad) / stride + 1 : 0;
  g.front_end = std::min(first_inner, g.out);
  g.back_start = std::max(g.front_end, std::min(inner_end, g.out));
  return g;
}

struct Box {
  int64_t begin[2], end[2];  // output rows, columns
};

// Top and bottom strips span all columns; left and right the rows between.
std::vector<Box> boundary_boxes(const AxisGeometry& h, const AxisGeometry& w) {
  std::vector<Box> boxes;
  if (h.front_end > 0) boxes.push_back({{0, 0}, {h.front_end, w.out}});
  if (h.back_start < h.out) boxes.push_back({{h.back_start, 0}, {h.out, w.out}});
  if (h.front_end < h.back_start) {
    if (w.front_end > 0) boxes.push_back({{h.front_end, 0}, {h.back_start, w.front_end}});
    if (w.back_start < w.out) boxes.push_back({{h.front_end, w.back_start}, {h.back_start, w.out}});
  }
  return boxes;
}

// The input window of a box: a slice of the image and the pad (F.pad order,
// negative crops) that turns it into exactly the samples the box's
// convolution reads. The slice always holds the extrapolation nodes.
struct Window {
  int64_t slice_begin[2], slice_len[2];
  std::vector<int64_t> pad;
  // Image samples of the window: [inner_begin, +inner_len) in window (padded)
  // coordinates, starting at image index inner_image_begin.
  int64_t inner_begin[2], inner_len[2], inner_image_begin[2];
};

Window box_window(const Box& box, const AxisGeometry* axes) {
  Window win;
  int64_t before[2], after[2];
  for (int a = 0; a < 2; ++a) {
    const AxisGeometry& g = axes[a];
    const int64_t start = box.begin[a] * g.stride - g.pad;
    const int64_t end = (box.end[a] - 1) * g.stride + g.pad + 1;
    const int64_t nodes = (g.order + 1) * g.dilation;
    int64_t s = start, e = end;
    if (start < 0) s = 0, e = std::max(e, nodes);
    if (end > g.n) e = g.n, s = std::min(s, g.n - nodes);
    s = std::max<int64_t>(s, 0);
    e = std::min(e, g.n);
    win.slice_begin[a] = s;
    win.slice_len[a] = e - s;
    before[a] = s - start;
    after[a] = end - e;
    const int64_t lo = std::max<int64_t>(start, 0), hi = std::min(end, g.n);
    win.inner_begin[a] = lo - start;
    win.inner_len[a] = hi - lo;
    win.inner_image_begin[a] = lo;
  }
  win.pad = {before[1], after[1], before[0], after[0]};
  return win;
}

at::Tensor call_pad(const at::Tensor& x, at::IntArrayRef pad, c10::string_view mode,
                    at::OptionalIntArrayRef order, at::OptionalIntArrayRef dilation) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("learnable_ops::pad", "")
                       .typed<at::Tensor(const at::Tensor&, at::IntArrayRef, c10::string_view,
                                         at::OptionalIntArrayRef, at::OptionalIntArrayRef)>();
  return op.call(x, pad, mode, order, dilation);
}

at::Tensor call_pad_backward(const at::Tensor& grad, at::IntArrayRef input_size, at::IntArrayRef pad,
                             c10::string_view mode, at::OptionalIntArrayRef order,
                             at::OptionalIntArrayRef dilation) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("learnable_ops::pad_backward", "")
                       .typed<at::Tensor(const at::Tensor&, c10::SymIntArrayRef, at::IntArrayRef,
                                         c10::string_view, at::OptionalIntArrayRef,
                                         at::OptionalIntArrayRef)>();
  return op.call(grad, c10::fromIntArrayRefSlow(input_size), pad, mode, order, dilation);
}

struct Setup {
  AxisGeometry axes[2];
  std::array<int64_t, 2> stride, dilation, order, padding;
  int64_t groups;
};

Setup check_and_plan(const at::Tensor& input, const at::Tensor& weight,
                     const std::optional<at::Tensor>& edge_weight, at::IntArrayRef stride,
                     at::IntArrayRef dilation, int64_t groups, at::IntArrayRef order) {
  check_floating(input, "input");
  check_same_dtype(input, "input", weight, "weight");
  check_same_device(input, "input", weight, "weight");
  TORCH_CHECK_VALUE(input.dim() == 4, "input must be a 4D tensor (N, C, H, W), got shape ",
                    input.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 4, "weight must be a 4D tensor (C_out, C_in / groups, kH, kW), got shape ",
                    weight.sizes());
  TORCH_CHECK_VALUE(groups >= 1 && input.size(1) % groups == 0 && weight.size(0) % groups == 0 &&
                        weight.size(1) * groups == input.size(1),
                    "groups=", groups, " does not fit input channels ", input.size(1),
                    " and weight of shape ", weight.sizes());
  if (edge_weight.has_value()) {
    check_same_dtype(input, "input", *edge_weight, "edge_weight");
    check_same_device(input, "input", *edge_weight, "edge_weight");
    TORCH_CHECK_VALUE(edge_weight->sizes() == weight.sizes(), "edge_weight must have the shape of weight ",
                      weight.sizes(), ", got ", edge_weight->sizes());
  }
  TORCH_CHECK_VALUE(stride.size() == 2 && dilation.size() == 2 && order.size() == 2,
                    "stride, dilation and order must have 2 entries each");
  Setup s;
  s.groups = groups;
  for (int a = 0; a < 2; ++a) {
    const int64_t k = weight.size(2 + a), n = input.size(2 + a);
    const char* axis = a == 0 ? "height" : "width";
    TORCH_CHECK_VALUE(k % 2 == 1, "kernel size must be odd along both axes, got ", weight.size(2),
                      "x", weight.size(3));
    TORCH_CHECK_VALUE(stride[a] >= 1 && dilation[a] >= 1, "stride and dilation must be >= 1");
    TORCH_CHECK_VALUE(order[a] >= 0 && order[a] <= k - 1, "order must be in [0, ", k - 1,
                      "] along the ", axis, " (kernel size ", k, "), got ", order[a]);
    const int64_t span = (k - 1) * dilation[a] + 1, nodes = (order[a] + 1) * dilation[a];
    TORCH_CHECK_VALUE(n >= span && (k == 1 || n >= nodes), "input ", axis, " ", n,
                      " is smaller than the kernel: ", k, " taps with dilation ", dilation[a],
                      " span ", span, " and extrapolating with order ", order[a], " needs ", nodes);
    s.axes[a] = axis_geometry(n, k, dilation[a], stride[a], order[a]);
    s.stride[a] = stride[a];
    s.dilation[a] = dilation[a];
    s.order[a] = order[a];
    s.padding[a] = s.axes[a].pad;
  }
  return s;
}

at::Tensor window_slice(const at::Tensor& x, const Window& win) {
  return x.narrow(2, win.slice_begin[0], win.slice_len[0]).narrow(3, win.slice_begin[1], win.slice_len[1]);
}

// The image part of a window-shaped tensor, and the same samples of the image.
at::Tensor window_inner(const at::Tensor& t, const Window& win) {
  return t.narrow(2, win.inner_begin[0], win.inner_len[0]).narrow(3, win.inner_begin[1], win.inner_len[1]);
}
at::Tensor image_inner(const at::Tensor& x, const Window& win) {
  return x.narrow(2, win.inner_image_begin[0], win.inner_len[0])
      .narrow(3, win.inner_image_begin[1], win.inner_len[1]);
}

at::Tensor box_view(const at::Tensor& t, const Box& box) {
  return t.narrow(2, box.begin[0], box.end[0] - box.begin[0]).narrow(3, box.begin[1], box.end[1] - box.begin[1]);
}

// Our depthwise ops through the dispatcher (defined with the ring path below).
bool native_depthwise_applies(const at::Tensor& input, const at::Tensor& weight, const Setup& s);
at::Tensor call_depthwise(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          at::IntArrayRef padding, at::IntArrayRef stride);
at::Tensor call_depthwise_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                         at::IntArrayRef input_size, at::IntArrayRef padding,
                                         at::IntArrayRef stride);
std::tuple<at::Tensor, at::Tensor> call_depthwise_backward_weight(const at::Tensor& grad_output,
                                                                  const at::Tensor& input, at::IntArrayRef kernel_size,
                                                                  at::IntArrayRef padding, at::IntArrayRef stride,
                                                                  bool bias_grad);

// Whether the padded path's valid convolution (forward, and both gradients)
// runs on our depthwise ops rather than ATen's: for depthwise layers within
// their limits, with the strides their tests cover (1 and 2). On CUDA ATen
// leaves depthwise layers to its own slow kernels (see the ring path below).
bool padded_uses_native_depthwise(const at::Tensor& input, const at::Tensor& weight, const Setup& s) {
  return native_depthwise_applies(input, weight, s) && s.stride[0] <= 2 && s.stride[1] <= 2;
}

// The polynomially padded input of the padded path (the input itself for a 1x1 kernel).
at::Tensor call_pad_layout(const at::Tensor& src, std::array<int64_t, 2> padding, at::IntArrayRef order,
                           at::IntArrayRef dilation, bool adjoint, bool channels_last);

// LEARNABLE_OPS_DIFFCONV_LAYOUT_PAD=1 (read at every call, a tuning switch to time
// both on one build): on CUDA the NCHW padded input comes from diff_conv2d_pad_layout's
// tiled kernel instead of the pad op's polynomial kernel.
bool layout_pad_switch(const at::Tensor& input) {
  return input.is_cuda() && env_override("LEARNABLE_OPS_DIFFCONV_LAYOUT_PAD").value_or(false);
}

// LEARNABLE_OPS_DIFFCONV_COPY_PAD=1 (read at every call; a tuning switch, off):
// torch's strided copy of the image into the middle of a new NCHW padded tensor,
// then the ring passes in place (learnable_ops/diffconv_fold.h), the split pass
// that took the channels_last route's dense K = 3 from 1.13x to 1.07x.
at::Tensor copy_then_ring_pad(const at::Tensor& input, const Setup& s);

at::Tensor polynomial_pad(const at::Tensor& input, const Setup& s) {
  if (s.padding[0] == 0 && s.padding[1] == 0) return input;
  if (env_override("LEARNABLE_OPS_DIFFCONV_COPY_PAD").value_or(false)) return copy_then_ring_pad(input, s);
  if (layout_pad_switch(input)) return call_pad_layout(input, s.padding, s.order, s.dilation, false, false);
  return call_pad(input, {s.padding[1], s.padding[1], s.padding[0], s.padding[0]}, "polynomial", s.order,
                  s.dilation);
}

// Whether the stride-1 input gradient of a dense (groups == 1) convolution on
// CUDA runs as the forward convolution of the flipped kernel (below) rather than
// as cuDNN's dgrad: by default for kernels of more than 9 taps. On an H100
// (torch 2.11, 16x64x128x128 fp32, padded input, session 8) cuDNN's heuristics
// took an FFT dgrad for K = 5 on channels_last tensors (0.77 ms and 235 MiB at
// peak, against 0.28 ms for the forward of the same shape): the padded path's
// fwd+bwd went from 1.34x to 1.05x the time of F.conv2d and from 1.40x to 0.77x
// its peak memory. For 3x3 it measured no gain. The switch
// LEARNABLE_OPS_DIFFCONV_DGRAD_FPROP (read at every call) overrides: 0 never, 1
// for every kernel size.
bool dense_dgrad_as_forward(const at::Tensor& grad_output, const at::Tensor& weight) {
  if (!grad_output.is_cuda()) return false;
  return env_override("LEARNABLE_OPS_DIFFCONV_DGRAD_FPROP").value_or(weight.size(2) * weight.size(3) > 9);
}

// Gradient of the valid convolution with respect to its (padded) input, of size
// padded_h x padded_w. Dense convolutions take the transposed convolution,
// which is the data-gradient kernel ATen's convolution backward runs (cuDNN's
// dgrad), except on CUDA at stride 1 (dense_dgrad_as_forward). Grouped ones
// with stride 1 take the equivalent forward convolution of the gradient with
// the flipped, group-transposed kernel and "full" padding: it reaches ATen's
// depthwise kernels, as the backward of a plain depthwise convolution does,
// whereas transposed grouped convolutions go to cuDNN's grouped deconvolution,
// which has been far slower for depthwise (pytorch/pytorch#47341).
at::Tensor padded_input_gradient(const at::Tensor& grad_output, const at::Tensor& weight, const Setup& s,
                                 int64_t padded_h, int64_t padded_w) {
  const int64_t kh = weight.size(2), kw = weight.size(3);
  if (s.stride[0] == 1 && s.stride[1] == 1 && (s.groups > 1 || dense_dgrad_as_forward(grad_output, weight))) {
    const int64_t groups = s.groups, c_out = weight.size(0), c_in_per_group = weight.size(1);
    const at::Tensor flipped = weight.reshape({groups, c_out / groups, c_in_per_group, kh, kw})
                                   .transpose(1, 2)
                                   .reshape({groups * c_in_per_group, c_out / groups, kh, kw})
                                   .flip({2, 3});
    return at::convolution(grad_output, flipped, std::nullopt, {1, 1},
                           {(kh - 1) * s.dilation[0], (kw - 1) * s.dilation[1]}, s.dilation, false, {0, 0},
                           groups);
  }
  // The rows (columns) of the padded input past the last output's window, which
  // (H - 1) % stride counts, get no gradient: output_padding adds them as zeros.
  const int64_t extra_h = padded_h - ((grad_output.size(2) - 1) * s.stride[0] + (kh - 1) * s.dilation[0] + 1);
  const int64_t extra_w = padded_w - ((grad_output.size(3) - 1) * s.stride[1] + (kw - 1) * s.dilation[1] + 1);
  return at::convolution(grad_output, weight, std::nullopt, s.stride, {0, 0}, s.dilation, true,
                         {extra_h, extra_w}, s.groups);
}

// Calls f(begin, length) for `chunks` ranges of [0, n) in order (the last one shorter).
template <typename F>
void for_each_batch_chunk(int64_t n, int64_t chunks, F&& f) {
  const int64_t per = (n + chunks - 1) / chunks;
  for (int64_t b = 0; b < n; b += per) f(b, std::min(per, n - b));
}

// Adds the gradient of the extrapolated rows of `grad` (a view with pad + n +
// pad rows) to the image rows they were extrapolated from (degree `order`,
// nodes `dilation` apart), in place. Each edge's band (its pad rows and the
// rows that feed them) is folded by the pad op's backward on that band alone,
// so the buffers are band-sized; only an image with fewer than two node ranges
// of rows is folded in one piece. With pieces > 1 each band is folded in that
// many slices of its leading dimension (batch, or channels where the batch is
// smaller), so that its buffers are a slice's.
void fold_rows(const at::Tensor& grad, int64_t n, int64_t pad, int64_t order, int64_t dilation, int64_t pieces) {
  if (pad == 0) return;
  const int64_t nodes = (order + 1) * dilation;
  auto fold_slice = [&](const at::Tensor& band, int64_t image_len, int64_t before, int64_t after) {
    const std::vector<int64_t> image_size{band.size(0), band.size(1), image_len, band.size(3)};
    band.narrow(2, before, image_len)
        .copy_(call_pad_backward(band.contiguous(), image_size, {0, 0, before, after}, "polynomial",
                                 std::vector<int64_t>{order, 0}, std::vector<int64_t>{dilation, 1}));
  };
  auto fold_band = [&](int64_t band_begin, int64_t image_len, int64_t before, int64_t after) {
    const at::Tensor band = grad.narrow(2, band_begin, before + image_len + after);
    const int64_t dim = band.size(0) >= pieces ? 0 : 1;
    const int64_t slices = std::max<int64_t>(1, std::min(pieces, band.size(dim)));
    for_each_batch_chunk(band.size(dim), slices, [&](int64_t b, int64_t len) {
      fold_slice(band.narrow(dim, b, len), image_len, before, after);
    });
  };
  if (2 * nodes <= n) {
    // The front band writes image rows [0, nodes), which the back band, reading
    // [n - nodes, n) and its ring, never reads.
    fold_band(0, nodes, pad, 0);
    fold_band(pad + n - nodes, nodes, 0, pad);
  } else {
    fold_band(0, n, pad, pad);
  }
}

// How many slices the band fold cuts each band into for a layer on our
// depthwise ops, whose padded path otherwise holds only the output and the
// padded gradient at its peak: enough that a band's two buffers (its copy and
// the folded image rows) stay under 6% of the input (at most 4 slices:
// each adds three kernel launches per band, which small images would feel). On an
// H100 (16x64x128x128 fp32, session 8) unsliced bands took depthwise K = 7 to
// 1.12x the peak memory of F.conv2d, K = 5 to 1.08x, K = 3 (5.5%) to 1.05x.
// Other layers fold in one piece: cuDNN's workspace dominates their peak, and
// each slice costs kernel launches.
int64_t fold_pieces(const Setup& s, int64_t h, int64_t w, bool native) {
  if (!native) return 1;
  double worst = 0;
  for (int axis = 0; axis < 2; ++axis) {
    const AxisGeometry& g = s.axes[axis];
    const int64_t n = axis == 0 ? h : w;
    if (g.pad == 0 || n == 0) continue;
    const int64_t nodes = (g.order + 1) * g.dilation;
    const bool two_bands = 2 * nodes <= n;  // as fold_rows splits the axis
    const int64_t band = two_bands ? g.pad + nodes : n + 2 * g.pad, image = two_bands ? nodes : n;
    worst = std::max(worst, double(band + image) / double(n));
  }
  return std::clamp<int64_t>(int64_t(std::ceil(worst / 0.06)), 1, 4);
}

// The pad extends rows first, then columns, so its adjoint folds the columns
// (over every padded row), then the rows (over the image columns). Columns are
// folded as the rows of the transposed view, so that the pad op's backward
// runs along lines of H + 2 * pad_h values rather than thin rows of a few.
//
// By default the fold runs in place (learnable_ops/diffconv_fold.h): two passes
// over the node lines only, no band buffers. LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE=0
// (read at every call; a tuning switch) takes the band fold (fold_rows), in
// fold_pieces slices for layers on our depthwise ops (`native`).
void fold_extrapolated_ring(const at::Tensor& grad_padded, const Setup& s, int64_t h, int64_t w, bool native) {
  const AxisGeometry &gh = s.axes[0], &gw = s.axes[1];
  if (env_override("LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE").value_or(true)) {
    TORCH_CHECK(grad_padded.is_contiguous(), "diff_conv2d: the fold needs a contiguous padded gradient");
    const diffconv_fold::Geometry geo{grad_padded.size(0) * grad_padded.size(1),
                                      {h, gh.pad, gh.order, gh.dilation},
                                      {w, gw.pad, gw.order, gw.dilation}};
#ifdef LEARNABLE_OPS_WITH_CUDA
    if (grad_padded.is_cuda()) return diff_conv2d_fold_cuda(grad_padded, geo);
#endif
    return diff_conv2d_fold_cpu(grad_padded, geo);
  }
  const int64_t pieces = fold_pieces(s, h, w, native);
  fold_rows(grad_padded.transpose(2, 3), w, gw.pad, gw.order, gw.dilation, pieces);
  fold_rows(grad_padded.narrow(3, gw.pad, w), h, gh.pad, gh.order, gh.dilation, pieces);
}

at::Tensor call_pad_layout(const at::Tensor& src, std::array<int64_t, 2> padding, at::IntArrayRef order,
                           at::IntArrayRef dilation, bool adjoint, bool channels_last) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("learnable_ops::diff_conv2d_pad_layout", "")
                       .typed<at::Tensor(const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, bool,
                                         bool)>();
  return op.call(src, padding, order, dilation, adjoint, channels_last);
}

// A plain NCHW <-> channels_last copy by the same op (padding 0).
at::Tensor relayout(const at::Tensor& t, bool channels_last) {
  return call_pad_layout(t, {0, 0}, {0, 0}, {1, 1}, false, channels_last);
}

// Whether the padded path hands ATen's convolution (cuDNN) channels_last
// tensors: on CUDA, for the layers that do not take our depthwise ops. cuDNN
// runs convolutions in NHWC and, fed NCHW tensors, transposes the input, the
// output gradient (for each of its two backward kernels) and the results
// itself; here diff_conv2d_pad_layout's kernels write the padded input (and
// read the padded gradient) in channels_last in the pass that pads (folds)
// anyway, and the output gradient is transposed once. The environment switch
// LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST=0, read at every call, turns it off (to
// time both on one build).
//
// By default only for kernels of at most 25 taps (5x5): on an H100 (torch 2.11,
// 16x64x128x128 fp32, fwd+bwd, session 8) the route ran K = 3 / 5 in 1.33x /
// 1.05x the time of F.conv2d(padding='same') at 0.76x / 0.77x its peak memory,
// but K = 7 in 1.27-1.43x at 1.28x, where the NCHW route took 1.17x at 1.05x:
// for 7x7 cuDNN's TF32 kernels convert their operands in a pass of their own
// on either layout, so the layout kernels bought nothing there. "1" forces the
// route for every kernel size.
bool padded_uses_channels_last(const at::Tensor& input, const at::Tensor& weight, const Setup& s) {
  if (!input.is_cuda() || padded_uses_native_depthwise(input, weight, s)) return false;
  return env_override("LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST").value_or(weight.size(2) * weight.size(3) <= 25);
}

// LEARNABLE_OPS_DIFFCONV_CHUNKS=k (read at every call; a tuning switch, unset by
// default): the padded path runs the batch in min(k, N) chunks, forward and
// backward, so that its temporaries (the padded input and gradient, the
// channels_last copies) and cuDNN's workspace are a chunk's rather than the
// batch's; results are assembled into contiguous tensors and the weight
// gradients added in chunk order. ops/diffconv.py's fake mirrors it.
int64_t padded_batch_chunks(const at::Tensor& input) {
  const char* flag = std::getenv("LEARNABLE_OPS_DIFFCONV_CHUNKS");
  if (flag == nullptr) return 1;
  const int64_t k = std::strtoll(flag, nullptr, 10);
  return std::max<int64_t>(1, std::min<int64_t>(k, input.size(0)));
}

// The padded path's forward on the whole of `input`; the padded copy is freed as
// soon as the convolution returns.
at::Tensor padded_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          const Setup& s, int64_t groups) {
  if (padded_uses_channels_last(input, weight, s)) {
    at::Tensor out = at::convolution(call_pad_layout(input, s.padding, s.order, s.dilation, false, true), weight,
                                     bias, s.stride, {0, 0}, s.dilation, false, {0, 0}, groups);
    return strictly_channels_last(out) ? relayout(out, false) : out.contiguous();
  }
  if (padded_uses_native_depthwise(input, weight, s))
    return call_depthwise(polynomial_pad(input, s), weight.select(1, 0), bias, {0, 0, 0, 0}, s.stride).contiguous();
  at::Tensor out =
      at::convolution(polynomial_pad(input, s), weight, bias, s.stride, {0, 0}, s.dilation, false, {0, 0}, groups);
  return out.contiguous();
}

at::Tensor diff_conv2d_kernel(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias,
                              const std::optional<at::Tensor>& edge_weight,
                              const std::optional<at::Tensor>& edge_bias, at::IntArrayRef stride,
                              at::IntArrayRef dilation, int64_t groups, at::IntArrayRef order,
                              bool keep_img_grad_at_invalid) {
  const Setup s = check_and_plan(input, weight, edge_weight, stride, dilation, groups, order);
  if (!edge_weight.has_value() && !edge_bias.has_value()) {
    const int64_t chunks = padded_batch_chunks(input);
    if (chunks == 1) return padded_forward(input, weight, bias, s, groups);
    at::Tensor out;
    for_each_batch_chunk(input.size(0), chunks, [&](int64_t b, int64_t len) {
      const at::Tensor part = padded_forward(input.narrow(0, b, len), weight, bias, s, groups);
      if (!out.defined())
        out = at::empty({input.size(0), part.size(1), part.size(2), part.size(3)},
                        part.options().memory_format(at::MemoryFormat::Contiguous));
      out.narrow(0, b, len).copy_(part);
    });
    return out;
  }
  // Contiguous whatever the input's memory format (a no-op for NCHW inputs).
  at::Tensor out =
      at::convolution(input, weight, bias, s.stride, s.padding, s.dilation, false, {0, 0}, groups).contiguous();
  if (out.numel() == 0) return out;
  const at::Tensor& strip_weight = edge_weight.has_value() ? *edge_weight : weight;
  const std::optional<at::Tensor>& strip_bias = edge_bias.has_value() ? edge_bias : bias;
  for (const Box& box : boundary_boxes(s.axes[0], s.axes[1])) {
    const Window win = box_window(box, s.axes);
    const at::Tensor poly = call_pad(window_slice(input, win), win.pad, "polynomial", s.order, s.dilation);
    box_view(out, box).copy_(
        at::convolution(poly, strip_weight, strip_bias, s.stride, {0, 0}, s.dilation, false, {0, 0}, groups));
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> diff_conv2d_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& edge_weight, bool has_edge_bias, at::IntArrayRef stride,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef order, bool keep_img_grad_at_invalid,
    std::array<bool, 5> output_mask) {
  const Setup s = check_and_plan(input, weight, edge_weight, stride, dilation, groups, order);
  const bool need_input = output_mask[0], need_weight = output_mask[1], need_bias = output_mask[2];
  const bool need_edge_weight = output_mask[3] && edge_weight.has_value();
  const bool need_edge_bias = output_mask[4] && has_edge_bias;
  at::Tensor grad_input, grad_weight, grad_bias, grad_edge_weight, grad_edge_bias;
  const std::vector<int64_t> bias_sizes{weight.size(0)};
  std::tie(grad_input, grad_weight, grad_bias) = at::convolution_backward(
      grad_output, input, weight, bias_sizes, s.stride, s.padding, s.dilation, false, {0, 0}, groups,
      {need_input, need_weight, need_bias});
  if (need_input) grad_input = grad_input.contiguous();
  if (need_weight) grad_weight = grad_weight.contiguous();
  if (need_edge_weight) grad_edge_weight = at::zeros_like(*edge_weight, at::MemoryFormat::Contiguous);
  if (need_edge_bias) grad_edge_bias = at::zeros({weight.size(0)}, grad_output.options());
  if (grad_output.numel() == 0 || input.numel() == 0)
    return {grad_input, grad_weight, grad_bias, grad_edge_weight, grad_edge_bias};

  auto conv_backward = [&](const at::Tensor& g, const at::Tensor& x, const at::Tensor& w, bool need_x,
                           bool need_w) {
    return at::convolution_backward(g, x, w, std::nullopt, s.stride, {0, 0}, s.dilation, false, {0, 0},
                                    groups, {need_x, need_w, false});
  };
  for (const Box& box : boundary_boxes(s.axes[0], s.axes[1])) {
    const Window win = box_window(box, s.axes);
    const at::Tensor x_box = window_slice(input, win);
    const at::Tensor g_box = box_view(grad_output, box);
    at::Tensor poly = call_pad(x_box, win.pad, "polynomial", s.order, s.dilation);
    // Gradient w.r.t. the window of the ring part of the strip (keep) and of the
    // zero-padded part that the main backward counted (both, or the latter only).
    at::Tensor g_ring, g_zero;
    if (edge_weight.has_value()) {
      at::Tensor g_poly, g_edge_w, g_w;
      std::tie(g_poly, g_edge_w, std::ignore) =
          conv_backward(g_box, poly, *edge_weight, need_input && keep_img_grad_at_invalid, need_edge_weight);
      if (need_edge_weight) grad_edge_weight.add_(g_edge_w);
      // Remove what the main backward counted for these outputs.
      at::Tensor zero = at::zeros_like(poly);
      window_inner(zero, win).copy_(window_inner(poly, win));
      std::tie(g_zero, g_w, std::ignore) = conv_backward(g_box, zero, weight, need_input, need_weight);
      if (need_weight) grad_weight.sub_(g_w);
      if (need_input && keep_img_grad_at_invalid) g_ring = g_poly;
    } else {
      window_inner(poly, win).zero_();  // poly - zero-padded: the extrapolated ring only
      at::Tensor g_w;
      std::tie(g_zero, g_w, std::ignore) = conv_backward(g_box, poly, weight, need_input, need_weight);
      if (need_weight) grad_weight.add_(g_w);
      if (need_input && keep_img_grad_at_invalid) g_ring = g_zero;  // its image part cancels below
    }
    if (need_input) {
      if (g_ring.defined() && g_ring.is_same(g_zero)) {
        // E^T(g) = P^T(g with the image part zeroed); Z^T(g) - Z^T(g) cancels.
        window_inner(g_ring, win).zero_();
        window_slice(grad_input, win).add_(
            call_pad_backward(g_ring, x_box.sizes(), win.pad, "polynomial", s.order, s.dilation));
      } else {
        image_inner(grad_input, win).sub_(window_inner(g_zero, win));
        if (g_ring.defined())
          window_slice(grad_input, win).add_(
              call_pad_backward(g_ring, x_box.sizes(), win.pad, "polynomial", s.order, s.dilation));
      }
    }
    if (has_edge_bias && (need_bias || need_edge_bias)) {
      const at::Tensor g_sum = g_box.sum({0, 2, 3});
      if (need_bias) grad_bias.sub_(g_sum);
      if (need_edge_bias) grad_edge_bias.add_(g_sum);
    }
  }
  return {grad_input, grad_weight, grad_bias, grad_edge_weight, grad_edge_bias};
}

// Backward of the padded path: (input, weight, bias) gradients. The input
// gradient is the pad's adjoint of the padded input's gradient: on the
// channels_last route (padded_uses_channels_last) a new NCHW tensor, folded in
// one pass (diff_conv2d_pad_layout); otherwise the image part of the padded
// gradient folded in place, a view (strides of the padded grid, which the
// Python fake mirrors).
std::tuple<at::Tensor, at::Tensor, at::Tensor> padded_backward(const at::Tensor& grad_output,
                                                               const at::Tensor& input, const at::Tensor& weight,
                                                               const Setup& s, int64_t groups,
                                                               std::array<bool, 3> output_mask);

std::tuple<at::Tensor, at::Tensor, at::Tensor> diff_conv2d_padded_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef order, std::array<bool, 3> output_mask) {
  const Setup s = check_and_plan(input, weight, std::nullopt, stride, dilation, groups, order);
  const int64_t chunks = padded_batch_chunks(input);
  if (chunks == 1) return padded_backward(grad_output, input, weight, s, groups, output_mask);
  // The batch in chunks (padded_batch_chunks): the input gradient assembled into a
  // contiguous tensor, the weight and bias gradients added in chunk order.
  at::Tensor grad_input, grad_weight, grad_bias;
  if (output_mask[0]) grad_input = at::empty(input.sizes(), input.options().memory_format(at::MemoryFormat::Contiguous));
  for_each_batch_chunk(input.size(0), chunks, [&](int64_t b, int64_t len) {
    at::Tensor gi, gw, gb;
    std::tie(gi, gw, gb) =
        padded_backward(grad_output.narrow(0, b, len), input.narrow(0, b, len), weight, s, groups, output_mask);
    if (output_mask[0]) grad_input.narrow(0, b, len).copy_(gi);
    if (output_mask[1]) grad_weight = grad_weight.defined() ? grad_weight.add_(gw) : gw.contiguous();
    if (output_mask[2]) grad_bias = grad_bias.defined() ? grad_bias.add_(gb) : gb.contiguous();
  });
  return {grad_input, grad_weight, grad_bias};
}

// Backward of the padded path on the whole of `input` (see the kernel above).
std::tuple<at::Tensor, at::Tensor, at::Tensor> padded_backward(const at::Tensor& grad_output,
                                                               const at::Tensor& input, const at::Tensor& weight,
                                                               const Setup& s, int64_t groups,
                                                               std::array<bool, 3> output_mask) {
  const bool need_input = output_mask[0], need_weight = output_mask[1], need_bias = output_mask[2];
  const int64_t h = input.size(2), w = input.size(3);
  const int64_t padded_h = h + 2 * s.padding[0], padded_w = w + 2 * s.padding[1];
  at::Tensor grad_input, grad_weight, grad_bias;
  const bool native = padded_uses_native_depthwise(input, weight, s);
  const bool channels_last = padded_uses_channels_last(input, weight, s);
  if (grad_output.numel() == 0 || input.numel() == 0) {
    if (need_input)
      grad_input = channels_last ? at::zeros(input.sizes(), input.options().memory_format(at::MemoryFormat::Contiguous))
                                 : at::zeros({input.size(0), input.size(1), padded_h, padded_w}, input.options())
                                       .narrow(2, s.padding[0], h)
                                       .narrow(3, s.padding[1], w);
    if (need_weight) grad_weight = at::zeros_like(weight, at::MemoryFormat::Contiguous);
    if (need_bias) grad_bias = at::zeros({weight.size(0)}, grad_output.options());
    return {grad_input, grad_weight, grad_bias};
  }
  // cuDNN's two backward kernels read the output gradient in NHWC: transposed
  // once here, and released before the fold allocates the input gradient.
  at::Tensor gy = channels_last ? relayout(grad_output, true) : grad_output;
  // The recomputed padded input lives for one statement, so it is gone before
  // the padded gradient is allocated.
  if (need_weight && native) {
    // The bias gradient comes with the weight's (the channel sums).
    at::Tensor g3;
    std::tie(g3, grad_bias) = call_depthwise_backward_weight(
        grad_output, polynomial_pad(input, s), {weight.size(2), weight.size(3)}, {0, 0, 0, 0}, s.stride, need_bias);
    grad_weight = g3.unsqueeze(1);
    if (!need_bias) grad_bias.reset();
  } else if (need_weight) {
    const std::vector<int64_t> bias_sizes{weight.size(0)};
    const at::Tensor padded = channels_last ? call_pad_layout(input, s.padding, s.order, s.dilation, false, true)
                                            : polynomial_pad(input, s);
    std::tie(std::ignore, grad_weight, grad_bias) =
        at::convolution_backward(gy, padded, weight, bias_sizes, s.stride, {0, 0}, s.dilation, false, {0, 0},
                                 groups, {false, true, need_bias});
    grad_weight = grad_weight.contiguous();
  } else if (need_bias) {
    grad_bias = grad_output.sum({0, 2, 3});
  }
  if (need_input) {
    // channels_last when gy is (cuDNN keeps the layout); NCHW otherwise.
    at::Tensor grad_padded =
        native ? call_depthwise_backward_input(grad_output, weight.select(1, 0),
                                               {input.size(0), input.size(1), padded_h, padded_w}, {0, 0, 0, 0},
                                               s.stride)
               : padded_input_gradient(gy, weight, s, padded_h, padded_w);
    gy.reset();
    if (channels_last) {
      // The fold, from channels_last into a new NCHW input gradient: in place on
      // the padded gradient (ours), then a plain copy of its image part
      // (pad_layout_split, the default), or in one pass (the layout op).
      if (pad_layout_split()) {
        const PadLayoutPlan plan = plan_pad_layout(grad_padded, s.padding, s.order, s.dilation, true);
        grad_input = fold_layout_split(std::move(grad_padded), plan, false);
      } else {
        grad_input = call_pad_layout(grad_padded, s.padding, s.order, s.dilation, true, false);
      }
    } else {
      // The fold in place; the input gradient is the image part, a view, so that
      // no second input-sized buffer is allocated.
      grad_padded = grad_padded.contiguous();
      fold_extrapolated_ring(grad_padded, s, h, w, native);
      grad_input = grad_padded.narrow(2, s.padding[0], h).narrow(3, s.padding[1], w);
    }
  }
  return {grad_input, grad_weight, grad_bias};
}

// ---------------------------------------------------------------------------
// Ring path (stride 1, no edge weight or edge bias, keep_img_grad_at_invalid).
//
// With P the polynomially padded input and Z the zero-padded one, P = Z + D,
// where D (the extrapolated ring) is zero on the image. So
//
//   out = conv(Z, w) + bias + conv(D, w)
//
// The first term is exactly F.conv2d(padding=K // 2 * dilation); the second is
// non-zero only on the boundary outputs. D splits into D_rows (the ph rows
// above and below the image, full padded width, corners included) and D_cols
// (the pw columns left and right of the image rows), so conv(D) is the sum of
// two thin convolutions, and no output is corrected twice:
//
//   rows strip (N, C, 4 ph, W + 2 pw) = [top ring; 2 ph zero rows; bottom ring]
//     valid conv -> (N, C_out, 2 ph, W): the top ph and bottom ph output rows.
//     Output row i < ph reads strip rows [i, i + 2 ph], never the bottom ring;
//     bottom output row H - ph + i reads strip rows [ph + i, 3 ph + i], never
//     the top ring, so the 2 ph zero rows serve both edges in one convolution.
//   cols strip, held transposed, (N, C, 4 pw, H) = [left ring; 2 pw zero
//     columns; right ring] as rows: conv with the transposed kernel and
//     padding (0, ph) -> (N, C_out, 2 pw, H): the left and right output
//     columns, as rows.
//
// The columns live transposed so that every ATen kernel on them (the pad op,
// the strip convolution and its backward, the gathers) runs along lines of H
// values rather than of a few: on the CPU the untransposed column work took
// several times the row work. Only the final additions into the column bands
// of the output and of the input gradient touch the columns in place.
//
// The rings come from the pad op (the same extrapolation as the padded path)
// run on the node rows (columns) of both edges concatenated: its front edge
// extrapolates the first nodes, its back edge the last ones. The backward pass
// is ATen's convolution backward of the main convolution plus, per strip, the
// convolution backward of the strip convolution and the adjoint of the
// extrapolation (the pad op's backward on the ring gradient); the strip
// gradients of the zero rows are dropped (those values are constants).
// Everything is convolutions and the pad op, so one implementation serves CPU
// and CUDA. The convolutions (ring_conv, ring_conv_backward and
// ring_conv_input_gradient) are ATen's, or, for depthwise layers, our
// depthwise ops' (learnable_ops::depthwise_conv2d and its backward ops,
// through the dispatcher): on CUDA ATen runs depthwise layers on its own slow
// depthwise kernels, which took most of the path's time.

struct RingPlan {
  int64_t pad_h, pad_w, nodes_h, nodes_w;
  // Order and dilation in the transposed frame of the columns (W axis first).
  std::vector<int64_t> order_t, dilation_t;
  // Every convolution of the path runs on our depthwise ops rather than ATen's
  // (ring_uses_native_depthwise).
  bool native_depthwise;
};

// Kernel sizes and image planes up to these take our depthwise ops. 31 is the
// largest kernel their tests cover; the plane bound keeps the CUDA kernels'
// tilings (at most 65535 tiles of >= 896 outputs, forward and weight
// gradient, float64 with a 31x31 kernel included) well inside their limits.
constexpr int64_t kNativeDepthwiseMaxKernel = 31;
constexpr int64_t kNativeDepthwiseMaxPlane = int64_t(1) << 25;

// Whether the ring path's convolutions can run on learnable_ops::depthwise_conv2d
// and its backward ops: depthwise in their sense (one input channel per output
// channel, groups == C_in == C_out, weight (C, 1, kh, kw)), undilated, within
// their kernel and plane limits.
bool native_depthwise_applies(const at::Tensor& input, const at::Tensor& weight, const Setup& s) {
  return s.groups == input.size(1) && weight.size(0) == s.groups && weight.size(1) == 1 && s.dilation[0] == 1 &&
         s.dilation[1] == 1 && weight.size(2) <= kNativeDepthwiseMaxKernel &&
         weight.size(3) <= kNativeDepthwiseMaxKernel &&
         input.size(2) * input.size(3) <= kNativeDepthwiseMaxPlane && (input.is_cpu() || input.is_cuda());
}

// `native_depthwise` is the ops' internal switch (the tests set it): false
// keeps ATen's convolutions; true and None (the wrapper's call) take our
// depthwise ops wherever they apply. They beat ATen's on both devices: on CUDA
// ATen (cuDNN leaves depthwise layers to it) runs slow depthwise kernels, and
// on the CPU the ring path's forward and backward ran 2.5-4x faster with ours
// than with oneDNN's (docs/diffconv.md).
bool ring_uses_native_depthwise(const at::Tensor& input, const at::Tensor& weight, const Setup& s,
                                std::optional<bool> native_depthwise) {
  return native_depthwise.value_or(true) && native_depthwise_applies(input, weight, s);
}

RingPlan ring_plan(const Setup& s, bool native_depthwise) {
  return {s.padding[0],
          s.padding[1],
          (s.order[0] + 1) * s.dilation[0],
          (s.order[1] + 1) * s.dilation[1],
          {s.order[1], s.order[0]},
          {s.dilation[1], s.dilation[0]},
          native_depthwise};
}

at::Tensor call_depthwise(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          at::IntArrayRef padding, at::IntArrayRef stride) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("learnable_ops::depthwise_conv2d", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                         at::IntArrayRef, at::IntArrayRef)>();
  return op.call(input, weight, bias, stride, padding);
}

at::Tensor call_depthwise_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                         at::IntArrayRef input_size, at::IntArrayRef padding,
                                         at::IntArrayRef stride) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("learnable_ops::depthwise_conv2d_backward_input", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef, at::IntArrayRef,
                                         at::IntArrayRef)>();
  return op.call(grad_output, weight, c10::fromIntArrayRefSlow(input_size), stride, padding);
}

std::tuple<at::Tensor, at::Tensor> call_depthwise_backward_weight(const at::Tensor& grad_output,
                                                                  const at::Tensor& input, at::IntArrayRef kernel_size,
                                                                  at::IntArrayRef padding, at::IntArrayRef stride,
                                                                  bool bias_grad) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("learnable_ops::depthwise_conv2d_backward_weight", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                                                                 at::IntArrayRef, at::IntArrayRef, bool)>();
  return op.call(grad_output, input, kernel_size, stride, padding, bias_grad);
}

// The ops' padding (top, bottom, left, right) of a symmetric (rows, columns) one.
std::array<int64_t, 4> depthwise_padding(std::array<int64_t, 2> padding) {
  return {padding[0], padding[0], padding[1], padding[1]};
}

// Every convolution of the ring path: stride 1, symmetric zero padding,
// `weight` (C_out, C_in / groups, kh, kw) possibly a transposed view (the
// columns strip). Our ops take the depthwise weight as (C, kh, kw).
at::Tensor ring_conv(const RingPlan& r, const at::Tensor& input, const at::Tensor& weight,
                     const std::optional<at::Tensor>& bias, std::array<int64_t, 2> padding,
                     at::IntArrayRef dilation, int64_t groups) {
  // Our ops keep a channels_last input's layout on the CPU; the path's tensors are contiguous.
  if (r.native_depthwise)
    return call_depthwise(input, weight.select(1, 0), bias, depthwise_padding(padding), {1, 1}).contiguous();
  return at::convolution(input, weight, bias, {1, 1}, padding, dilation, false, {0, 0}, groups).contiguous();
}

// Its backward: (input, weight, bias) gradients as output_mask asks, each
// contiguous, the weight's in weight's (possibly transposed) shape. `input` is
// read only for the weight gradient.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ring_conv_backward(
    const RingPlan& r, const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    std::array<int64_t, 2> padding, at::IntArrayRef dilation, int64_t groups, std::array<bool, 3> output_mask) {
  at::Tensor grad_input, grad_weight, grad_bias;
  if (r.native_depthwise) {
    const at::Tensor weight3 = weight.select(1, 0);
    const std::array<int64_t, 4> pad = depthwise_padding(padding);
    if (output_mask[0])
      grad_input = call_depthwise_backward_input(grad_output, weight3, input.sizes(), pad, {1, 1}).contiguous();
    if (output_mask[1]) {
      at::Tensor g3;
      // The bias gradient comes with it (the channel sums of grad_output).
      std::tie(g3, grad_bias) = call_depthwise_backward_weight(grad_output, input, {weight.size(2), weight.size(3)},
                                                               pad, {1, 1}, output_mask[2]);
      grad_weight = g3.unsqueeze(1);
    }
    if (!output_mask[2]) grad_bias.reset();
    else if (!grad_bias.defined()) grad_bias = grad_output.sum({0, 2, 3});
    return {grad_input, grad_weight, grad_bias};
  }
  const std::vector<int64_t> bias_sizes{weight.size(0)};
  std::tie(grad_input, grad_weight, grad_bias) =
      at::convolution_backward(grad_output, input, weight, bias_sizes, {1, 1}, padding, dilation, false, {0, 0},
                               groups, output_mask);
  if (output_mask[0]) grad_input = grad_input.contiguous();
  if (output_mask[1]) grad_weight = grad_weight.contiguous();
  return {grad_input, grad_weight, grad_bias};
}

// The input gradient alone, of a strip of `strip_size` (N, C, rows, columns),
// without the strip itself (the lean backward). ATen's takes
// padded_input_gradient (its route to ATen's depthwise kernels for grouped
// convolutions) over the zero-padded strip and returns a view of the strip part.
at::Tensor ring_conv_input_gradient(const RingPlan& r, const at::Tensor& grad_output, const at::Tensor& weight,
                                    at::IntArrayRef strip_size, std::array<int64_t, 2> padding,
                                    at::IntArrayRef dilation, int64_t groups) {
  if (r.native_depthwise)
    return call_depthwise_backward_input(grad_output, weight.select(1, 0), strip_size, depthwise_padding(padding),
                                         {1, 1})
        .contiguous();
  Setup frame{};
  frame.stride = {1, 1};
  frame.dilation = {dilation[0], dilation[1]};
  frame.groups = groups;
  const at::Tensor grad_padded = padded_input_gradient(grad_output, weight, frame, strip_size[2] + 2 * padding[0],
                                                       strip_size[3] + 2 * padding[1]);
  return grad_padded.narrow(2, padding[0], strip_size[2]).narrow(3, padding[1], strip_size[3]);
}

// The first and last `width` rows of a 4D tensor as one (N, C, 2, width, W)
// view (the two may overlap: read such a view, never write it).
at::Tensor row_bands(const at::Tensor& t, int64_t width) {
  return t.as_strided({t.size(0), t.size(1), 2, width, t.size(3)},
                      {t.stride(0), t.stride(1), (t.size(2) - width) * t.stride(2), t.stride(2), t.stride(3)},
                      t.storage_offset());
}

// The first and last `width` columns of a 4D tensor, transposed, as one
// (N, C, 2, width, H) view.
at::Tensor column_bands_transposed(const at::Tensor& t, int64_t width) {
  return t.as_strided({t.size(0), t.size(1), 2, width, t.size(2)},
                      {t.stride(0), t.stride(1), (t.size(3) - width) * t.stride(3), t.stride(3), t.stride(2)},
                      t.storage_offset());
}

// Copies of the bands, [first; last] along dim 2: (N, C, 2 width, W) and (N, C, 2 width, H).
// One strided copy each (a cat of two slices is a copy per slice on CUDA).
at::Tensor gather_row_bands(const at::Tensor& t, int64_t width) {
  return row_bands(t, width).reshape({t.size(0), t.size(1), 2 * width, t.size(3)});
}
at::Tensor gather_column_bands(const at::Tensor& t, int64_t width) {
  return column_bands_transposed(t, width).reshape({t.size(0), t.size(1), 2 * width, t.size(2)});
}

// [first `pad` rows of `src`; `gap` zero rows; last `pad` rows of `src`]: two kernels.
at::Tensor rings_around_gap(const at::Tensor& src, int64_t pad, int64_t gap) {
  at::Tensor strip = at::empty({src.size(0), src.size(1), 2 * pad + gap, src.size(3)}, src.options());
  strip.narrow(2, pad, gap).zero_();
  row_bands(strip, pad).copy_(row_bands(src, pad));
  return strip;
}

// The pad op on the node rows of both edges, (N, C, ph + 2 nodes + ph, W + 2 pw):
// top ring, node rows (columns extended), bottom ring.
at::Tensor padded_row_ends(const at::Tensor& x, const Setup& s, const RingPlan& r) {
  return call_pad(gather_row_bands(x, r.nodes_h), {r.pad_w, r.pad_w, r.pad_h, r.pad_h}, "polynomial", s.order,
                  s.dilation);
}

// The pad op on the node columns of both edges, transposed, (N, C, pw + 2 nodes + pw, H):
// left ring, node columns, right ring (image rows only).
at::Tensor padded_column_ends(const at::Tensor& x, const RingPlan& r) {
  return call_pad(gather_column_bands(x, r.nodes_w), {0, 0, r.pad_w, r.pad_w}, "polynomial", r.order_t,
                  r.dilation_t);
}

// (N, C, 4 ph, W + 2 pw).
at::Tensor ring_rows_strip(const at::Tensor& x, const Setup& s, const RingPlan& r) {
  return rings_around_gap(padded_row_ends(x, s, r), r.pad_h, 2 * r.pad_h);
}

// (N, C, 4 pw, H): the columns strip transposed.
at::Tensor ring_cols_strip(const at::Tensor& x, const RingPlan& r) {
  return rings_around_gap(padded_column_ends(x, r), r.pad_w, 2 * r.pad_w);
}

std::vector<int64_t> rows_strip_size(const at::Tensor& x, const RingPlan& r) {
  return {x.size(0), x.size(1), 4 * r.pad_h, x.size(3) + 2 * r.pad_w};
}
std::vector<int64_t> cols_strip_size(const at::Tensor& x, const RingPlan& r) {
  return {x.size(0), x.size(1), 4 * r.pad_w, x.size(2)};
}

// dst's first and last `width` rows += bands (N, C, 2 width, W). Two adds
// where the bands overlap (an image under two node ranges).
void add_row_bands(const at::Tensor& dst, int64_t width, const at::Tensor& bands) {
  if (2 * width <= dst.size(2)) {
    const at::Tensor view = row_bands(dst, width);
    view.add_(bands.view(view.sizes()));
    return;
  }
  dst.narrow(2, 0, width).add_(bands.narrow(2, 0, width));
  dst.narrow(2, dst.size(2) - width, width).add_(bands.narrow(2, width, width));
}

// dst's first and last `width` columns += bands (N, C, 2 width, H), the
// columns as rows. On the CPU one add per band: over a view of both bands the
// elementwise loop runs 2 x width values at a time, and its per-row overhead
// cost more than the strip convolution; one band runs over (width, H) planes.
// CUDA takes one kernel.
void add_column_bands(const at::Tensor& dst, int64_t width, const at::Tensor& bands) {
  if (!dst.is_cpu() && 2 * width <= dst.size(3)) {
    const at::Tensor view = column_bands_transposed(dst, width);
    view.add_(bands.view(view.sizes()));
    return;
  }
  dst.narrow(3, 0, width).add_(bands.narrow(2, 0, width).transpose(2, 3));
  dst.narrow(3, dst.size(3) - width, width).add_(bands.narrow(2, width, width).transpose(2, 3));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> diff_conv2d_ring_kernel(
    const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef order, bool save_strips,
    std::optional<bool> native_depthwise) {
  const Setup s = check_and_plan(input, weight, std::nullopt, {1, 1}, dilation, groups, order);
  const RingPlan r = ring_plan(s, ring_uses_native_depthwise(input, weight, s, native_depthwise));
  at::Tensor out = ring_conv(r, input, weight, bias, s.padding, s.dilation, groups);
  at::Tensor rows_strip, cols_strip;
  if (out.numel() > 0 && input.numel() > 0) {
    if (r.pad_h > 0) {
      rows_strip = ring_rows_strip(input, s, r);
      add_row_bands(out, r.pad_h, ring_conv(r, rows_strip, weight, std::nullopt, {0, 0}, s.dilation, groups));
    }
    if (r.pad_w > 0) {
      cols_strip = ring_cols_strip(input, r);
      add_column_bands(out, r.pad_w,
                       ring_conv(r, cols_strip, weight.transpose(2, 3), std::nullopt, {0, r.pad_h}, r.dilation_t,
                                 groups));
    }
  }
  // The strips are returned (for the weight gradient) only when asked, and
  // only along an axis with a ring; the schema's outputs are always tensors, so
  // "not saved" is an empty one of shape (0,).
  auto returned = [&](const at::Tensor& strip, int64_t pad, const std::vector<int64_t>& size) {
    if (!save_strips || pad == 0) return at::empty({0}, input.options());
    return strip.defined() ? strip : at::empty(size, input.options());
  };
  return {out, returned(rows_strip, r.pad_h, rows_strip_size(input, r)),
          returned(cols_strip, r.pad_w, cols_strip_size(input, r))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> diff_conv2d_ring_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& rows_strip, const std::optional<at::Tensor>& cols_strip,
    at::IntArrayRef dilation, int64_t groups, at::IntArrayRef order, std::array<bool, 3> output_mask,
    std::optional<bool> native_depthwise) {
  const Setup s = check_and_plan(input, weight, std::nullopt, {1, 1}, dilation, groups, order);
  const RingPlan r = ring_plan(s, ring_uses_native_depthwise(input, weight, s, native_depthwise));
  const bool need_input = output_mask[0], need_weight = output_mask[1], need_bias = output_mask[2];
  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  TORCH_CHECK_VALUE(grad_output.dim() == 4 && grad_output.size(0) == n && grad_output.size(1) == weight.size(0) &&
                        grad_output.size(2) == h && grad_output.size(3) == w,
                    "grad_output must have shape (", n, ", ", weight.size(0), ", ", h, ", ", w, "), got ",
                    grad_output.sizes());
  at::Tensor grad_input, grad_weight, grad_bias;
  if (grad_output.numel() == 0 || input.numel() == 0 || !(need_input || need_weight)) {
    std::tie(grad_input, grad_weight, grad_bias) =
        ring_conv_backward(r, grad_output, input, weight, s.padding, s.dilation, groups, output_mask);
    return {grad_input, grad_weight, grad_bias};
  }

  // Two ways through a strip, chosen by whether the forward pass saved it:
  //
  // Compact (saved, so the strips are small): one convolution backward for
  // both gradients, and the extrapolation's adjoint as one pad backward over
  // the ring rows of the strip gradient around a zero gap, the shape of
  // pad(ends) (2 nodes + 2 pad lines).
  //
  // Lean (rebuilt, or no weight gradient): the rebuilt strip lives only for
  // the weight gradient; the data gradient is the transposed convolution of
  // the gathered output-gradient bands (ring_conv_input_gradient), which
  // needs no strip; the adjoint is one pad backward per edge, of the cropped
  // pad that yields just that edge's ring from its own nodes. Every buffer
  // stays within about one strip; it costs two more small kernels per strip
  // than the compact way.
  auto saved_strip = [&](const std::optional<at::Tensor>& saved, const std::vector<int64_t>& size) {
    if (!saved.has_value() || !saved->defined() || saved->numel() == 0) return at::Tensor();
    TORCH_CHECK_VALUE(saved->sizes() == at::IntArrayRef(size), "saved ring strip must have shape ", size,
                      ", got ", saved->sizes());
    return *saved;
  };
  const at::Tensor saved_rows = saved_strip(rows_strip, rows_strip_size(input, r));
  const at::Tensor saved_cols = saved_strip(cols_strip, cols_strip_size(input, r));
  // The rows strip's share of the gradients the phase asks for (weight, input).
  auto rows_backward = [&](bool weight_phase, bool input_phase) {
    at::Tensor bands = gather_row_bands(grad_output, r.pad_h);
    if (saved_rows.defined()) {
      at::Tensor g_strip, g_weight;
      std::tie(g_strip, g_weight, std::ignore) = ring_conv_backward(r, bands, saved_rows, weight, {0, 0}, s.dilation,
                                                                    groups, {input_phase, weight_phase, false});
      if (weight_phase) grad_weight.add_(g_weight);
      if (input_phase) {
        // Each buffer is released as soon as the next exists (peak memory).
        bands.reset();
        at::Tensor gap = rings_around_gap(g_strip, r.pad_h, 2 * r.nodes_h);
        g_strip.reset();
        const at::Tensor g_ends = call_pad_backward(gap, {n, c, 2 * r.nodes_h, w},
                                                    {r.pad_w, r.pad_w, r.pad_h, r.pad_h}, "polynomial", s.order,
                                                    s.dilation);
        gap.reset();
        add_row_bands(grad_input, r.nodes_h, g_ends);
      }
      return;
    }
    if (weight_phase)
      grad_weight.add_(std::get<1>(ring_conv_backward(r, bands, ring_rows_strip(input, s, r), weight, {0, 0},
                                                      s.dilation, groups, {false, true, false})));
    if (input_phase) {
      const at::Tensor g_strip =
          ring_conv_input_gradient(r, bands, weight, rows_strip_size(input, r), {0, 0}, s.dilation, groups);
      bands.reset();
      const std::vector<int64_t> nodes_size{n, c, r.nodes_h, w};
      grad_input.narrow(2, 0, r.nodes_h)
          .add_(call_pad_backward(g_strip.narrow(2, 0, r.pad_h), nodes_size, {r.pad_w, r.pad_w, r.pad_h, -r.nodes_h},
                                  "polynomial", s.order, s.dilation));
      grad_input.narrow(2, h - r.nodes_h, r.nodes_h)
          .add_(call_pad_backward(g_strip.narrow(2, 3 * r.pad_h, r.pad_h), nodes_size,
                                  {r.pad_w, r.pad_w, -r.nodes_h, r.pad_h}, "polynomial", s.order, s.dilation));
    }
  };
  // The same for the columns strip, held transposed with its bands.
  auto cols_backward = [&](bool weight_phase, bool input_phase) {
    at::Tensor bands = gather_column_bands(grad_output, r.pad_w);
    const at::Tensor weight_t = weight.transpose(2, 3);
    if (saved_cols.defined()) {
      at::Tensor g_strip, g_weight;
      std::tie(g_strip, g_weight, std::ignore) = ring_conv_backward(
          r, bands, saved_cols, weight_t, {0, r.pad_h}, r.dilation_t, groups, {input_phase, weight_phase, false});
      if (weight_phase) grad_weight.add_(g_weight.transpose(2, 3));
      if (input_phase) {
        bands.reset();
        at::Tensor gap = rings_around_gap(g_strip, r.pad_w, 2 * r.nodes_w);
        g_strip.reset();
        const at::Tensor g_ends = call_pad_backward(gap, {n, c, 2 * r.nodes_w, h}, {0, 0, r.pad_w, r.pad_w},
                                                    "polynomial", r.order_t, r.dilation_t);
        gap.reset();
        add_column_bands(grad_input, r.nodes_w, g_ends);
      }
      return;
    }
    if (weight_phase)
      grad_weight.add_(std::get<1>(ring_conv_backward(r, bands, ring_cols_strip(input, r), weight_t, {0, r.pad_h},
                                                      r.dilation_t, groups, {false, true, false}))
                           .transpose(2, 3));
    if (input_phase) {
      const at::Tensor g_strip = ring_conv_input_gradient(r, bands, weight_t, cols_strip_size(input, r),
                                                          {0, r.pad_h}, r.dilation_t, groups);
      bands.reset();
      const std::vector<int64_t> nodes_size{n, c, r.nodes_w, h};
      grad_input.narrow(3, 0, r.nodes_w)
          .add_(call_pad_backward(g_strip.narrow(2, 0, r.pad_w), nodes_size, {0, 0, r.pad_w, -r.nodes_w},
                                  "polynomial", r.order_t, r.dilation_t)
                    .transpose(2, 3));
      grad_input.narrow(3, w - r.nodes_w, r.nodes_w)
          .add_(call_pad_backward(g_strip.narrow(2, 3 * r.pad_w, r.pad_w), nodes_size, {0, 0, -r.nodes_w, r.pad_w},
                                  "polynomial", r.order_t, r.dilation_t)
                    .transpose(2, 3));
    }
  };
  auto strips_backward = [&](bool weight_phase, bool input_phase) {
    if (r.pad_h > 0) rows_backward(weight_phase, input_phase);
    if (r.pad_w > 0) cols_backward(weight_phase, input_phase);
  };

  if (!r.native_depthwise) {
    // ATen's convolution backward computes both gradients in one call.
    std::tie(grad_input, grad_weight, grad_bias) =
        ring_conv_backward(r, grad_output, input, weight, s.padding, s.dilation, groups, output_mask);
    strips_backward(need_weight, need_input);
    return {grad_input, grad_weight, grad_bias};
  }
  // Our ops compute the two gradients in separate calls anyway, so every
  // weight gradient comes first: the strips that the lean way rebuilds for it
  // (with their gathered nodes and padded copy, about a third of an input at
  // K = 7, 128 x 128) then come and go before the input gradient is
  // allocated, and stay below the peak of the input-gradient phase, which is
  // F.conv2d's own plus a strip gradient. The output-gradient bands are
  // gathered once per phase (a thin copy) rather than held across the main
  // input gradient.
  std::tie(std::ignore, grad_weight, grad_bias) = ring_conv_backward(r, grad_output, input, weight, s.padding,
                                                                     s.dilation, groups, {false, need_weight, need_bias});
  if (need_weight) strips_backward(true, false);
  if (need_input) {
    grad_input = std::get<0>(ring_conv_backward(r, grad_output, input, weight, s.padding, s.dilation, groups,
                                                {true, false, false}));
    strips_backward(false, true);
  }
  return {grad_input, grad_weight, grad_bias};
}

at::Tensor diff_conv2d_pad_layout_cpu(const at::Tensor& input, at::IntArrayRef padding, at::IntArrayRef order,
                                      at::IntArrayRef dilation, bool adjoint, bool channels_last) {
  const PadLayoutPlan p = plan_pad_layout(input, padding, order, dilation, adjoint);
  if (pad_layout_split()) return pad_layout_split_op(input, p, adjoint, channels_last);
  return pad_layout_composed(input, p, adjoint, channels_last);
}

// The in-place passes' geometry of a padded tensor of plan p in its layout.
diffconv_fold::Geometry layout_geometry(const PadLayoutPlan& p, bool channels_last) {
  return {channels_last ? p.N : p.N * p.C,
          {p.image[0], p.before[0], p.order[0], p.step[0]},
          {p.image[1], p.before[1], p.order[1], p.step[1]},
          channels_last ? p.C : 1};
}

// The image part alone: from the image into the middle of a new padded tensor
// (ring unwritten), or from the middle of a padded tensor into a new image.
at::Tensor layout_copy(const at::Tensor& src, const PadLayoutPlan& p, bool adjoint, bool channels_last) {
#ifdef LEARNABLE_OPS_WITH_CUDA
  if (src.is_cuda()) return diff_conv2d_layout_copy_cuda(src, p, adjoint, channels_last);
#endif
  const at::MemoryFormat format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = at::empty(p.out_shape, src.options().memory_format(format));
  const at::Tensor& padded = adjoint ? src : out;
  const at::Tensor middle = padded.narrow(2, p.before[0], p.image[0]).narrow(3, p.before[1], p.image[1]);
  if (adjoint) out.copy_(middle);
  else middle.copy_(src);
  return out;
}

// Contiguous in its own layout (NCHW or channels_last), for the in-place passes.
bool dense_in_layout(const at::Tensor& t) { return t.is_contiguous() || strictly_channels_last(t); }

void pad_ring_in_place(const at::Tensor& padded, const diffconv_fold::Geometry& geo) {
#ifdef LEARNABLE_OPS_WITH_CUDA
  if (padded.is_cuda()) return diff_conv2d_pad_ring_cuda(padded, geo);
#endif
  diff_conv2d_pad_ring_cpu(padded, geo);
}

at::Tensor copy_then_ring_pad(const at::Tensor& input, const Setup& s) {
  const PadLayoutPlan p = plan_pad_layout(input, s.padding, s.order, s.dilation, false);
  at::Tensor out = at::empty(p.out_shape, input.options().memory_format(at::MemoryFormat::Contiguous));
  out.narrow(2, p.before[0], p.image[0]).narrow(3, p.before[1], p.image[1]).copy_(input);
  pad_ring_in_place(out, layout_geometry(p, false));
  return out;
}

}  // namespace

// On by default: on an H100 (torch 2.11, 16x64x128x128 fp32 fwd+bwd, session 12,
// run 10) it took dense K = 3 / 5 from 1.18x / 1.03x F.conv2d(padding='same')'s
// time (one-pass kernels, grouped ring loads) or 1.13x / 0.97x (one-pass, one
// entry at a time) to 1.07x / 0.91-0.93x, at the same memory (0.76x / 0.77x).
// =0 (read at every call; a tuning switch) takes the one-pass kernels.
bool pad_layout_split() { return env_override("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT").value_or(true); }

at::Tensor pad_layout_split_op(const at::Tensor& src, const PadLayoutPlan& p, bool adjoint, bool channels_last) {
  if (adjoint) {
    // A copy of the input to fold (an op does not write its inputs), in its layout
    // (contiguous() of a tensor that is dense in neither layout is already a copy).
    const at::Tensor own = dense_in_layout(src) ? src.clone() : src.contiguous();
    return fold_layout_split(own, p, channels_last);
  }
  at::Tensor out = layout_copy(src, p, false, channels_last);
  pad_ring_in_place(out, layout_geometry(p, channels_last));
  return out;
}

at::Tensor fold_layout_split(at::Tensor grad_padded, const PadLayoutPlan& p, bool channels_last) {
  if (!dense_in_layout(grad_padded)) grad_padded = grad_padded.contiguous();
  const diffconv_fold::Geometry geo = layout_geometry(p, !grad_padded.is_contiguous());
#ifdef LEARNABLE_OPS_WITH_CUDA
  if (grad_padded.is_cuda()) diff_conv2d_fold_cuda(grad_padded, geo);
  else
#endif
    diff_conv2d_fold_cpu(grad_padded, geo);
  return layout_copy(grad_padded, p, true, channels_last);
}

namespace {

// Passes kFirst then kSecond of diffconv_fold.h. Each pass's elements are
// independent and each sums in a fixed order, so the result does not depend on
// the number of threads.
template <int kFirst, int kSecond>
void in_place_passes_cpu(const at::Tensor& t, const diffconv_fold::Geometry& geo) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "diff_conv2d_in_place_passes", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scalar_t* g = t.mutable_data_ptr<scalar_t>();
    auto pass = [&](auto which) {
      constexpr int kPass = decltype(which)::value;
      at::parallel_for(0, diffconv_fold::pass_items<kPass>(geo), 2048, [&](int64_t begin, int64_t end) {
        for (int64_t e = begin; e < end; ++e) diffconv_fold::pass_item<kPass, scalar_t, acc_t>(g, geo, e);
      });
    };
    pass(std::integral_constant<int, kFirst>());
    pass(std::integral_constant<int, kSecond>());
  });
}

}  // namespace

void diff_conv2d_fold_cpu(const at::Tensor& grad_padded, const diffconv_fold::Geometry& geo) {
  in_place_passes_cpu<0, 1>(grad_padded, geo);
}

void diff_conv2d_pad_ring_cpu(const at::Tensor& padded, const diffconv_fold::Geometry& geo) {
  in_place_passes_cpu<2, 3>(padded, geo);
}

at::Tensor pad_layout_composed(const at::Tensor& src, const PadLayoutPlan& p, bool adjoint, bool channels_last) {
  const at::MemoryFormat format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  if (p.before[0] == 0 && p.before[1] == 0) return src.clone(format);
  const std::vector<int64_t> pads{p.before[1], p.before[1], p.before[0], p.before[0]};
  const std::vector<int64_t> order{p.order[0], p.order[1]}, step{p.step[0], p.step[1]};
  const at::Tensor x = src.contiguous();
  const at::Tensor out = adjoint ? call_pad_backward(x, p.out_shape, pads, "polynomial", order, step)
                                 : call_pad(x, pads, "polynomial", order, step);
  return out.contiguous(format);
}

TORCH_LIBRARY_FRAGMENT(learnable_ops, m) {
  m.def(
      "diff_conv2d(Tensor input, Tensor weight, Tensor? bias, Tensor? edge_weight, Tensor? edge_bias, "
      "int[2] stride, int[2] dilation, int groups, int[2] order, bool keep_img_grad_at_invalid) -> Tensor");
  m.def(
      "diff_conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, Tensor? edge_weight, "
      "bool has_edge_bias, int[2] stride, int[2] dilation, int groups, int[2] order, "
      "bool keep_img_grad_at_invalid, bool[5] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "diff_conv2d_padded_backward(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, "
      "int[2] dilation, int groups, int[2] order, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  m.def(
      "diff_conv2d_pad_layout(Tensor input, int[2] padding, int[2] order, int[2] dilation, bool adjoint, "
      "bool channels_last) -> Tensor");
  m.def(
      "diff_conv2d_ring(Tensor input, Tensor weight, Tensor? bias, int[2] dilation, int groups, int[2] order, "
      "bool save_strips, bool? native_depthwise=None) -> (Tensor, Tensor, Tensor)");
  m.def(
      "diff_conv2d_ring_backward(Tensor grad_output, Tensor input, Tensor weight, Tensor? rows_strip, "
      "Tensor? cols_strip, int[2] dilation, int groups, int[2] order, bool[3] output_mask, "
      "bool? native_depthwise=None) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(learnable_ops, CPU, m) {
  m.impl("diff_conv2d_pad_layout", &diff_conv2d_pad_layout_cpu);
  m.impl("diff_conv2d", &diff_conv2d_kernel);
  m.impl("diff_conv2d_backward", &diff_conv2d_backward_kernel);
  m.impl("diff_conv2d_padded_backward", &diff_conv2d_padded_backward_kernel);
  m.impl("diff_conv2d_ring", &diff_conv2d_ring_kernel);
  m.impl("diff_conv2d_ring_backward", &diff_conv2d_ring_backward_kernel);
}

TORCH_LIBRARY_IMPL(learnable_ops, CUDA, m) {
  m.impl("diff_conv2d", &diff_conv2d_kernel);
  m.impl("diff_conv2d_backward", &diff_conv2d_backward_kernel);
  m.impl("diff_conv2d_padded_backward", &diff_conv2d_padded_backward_kernel);
  m.impl("diff_conv2d_ring", &diff_conv2d_ring_kernel);
  m.impl("diff_conv2d_ring_backward", &diff_conv2d_ring_backward_kernel);
}

}  // namespace learnable_ops
