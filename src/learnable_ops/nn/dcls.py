"""DCLS layers: dilated convolution with learnable spacings.

Every layer holds ``kernel_count`` taps per (output, input) channel pair: a
weight ``W[o, i, k]`` and a fractional position ``P[:, o, i, k]``. The forward
pass builds the dense kernel of size ``dilated_kernel_size`` with the native
op :func:`learnable_ops.dcls_construct` and convolves with it.

Parameter names and shapes are those of the DCLS package 0.1.x (``weight``,
``P``, ``SIG``, ``bias``), but ``P[a]`` and ``SIG[a]`` always drive kernel
axis ``a``; :func:`learnable_ops.compat.load_dcls_state_dict` converts 0.1.x
checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import learnable_ops
from learnable_ops.ops._validate import autocast_dtype, choice, int_tuple, strictly_channels_last
from learnable_ops.ops.dcls_dispatch import choose_method
from learnable_ops.ops.dcls_sparse import SPARSE_VERSIONS
from learnable_ops.ops.dcls import DCLS_VERSIONS, normalize_dcls_version
from learnable_ops.ops.dcls import DCLS_VERSIONS_WITH_SIG as _SIG_VERSIONS
from learnable_ops.ops.pad import PAD_MODE_ALIASES, PAD_MODES, normalize_pad_mode

__all__ = [
    "DCLS_METHODS",
    "Dcls1d",
    "Dcls2d",
    "Dcls3d",
    "Dcls2_1d",
    "Dcls3_1d",
    "Dcls2dK1d",
]

DCLS_METHODS = ("auto", "construct", "dense", "sparse")
"""Forward methods of :class:`Dcls1d`, :class:`Dcls2d` and :class:`Dcls3d` (see their ``method`` argument)."""

_SIG_INIT = {"gauss": 0.23, "max": 0.0}
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular") + tuple(
    m for m in PAD_MODES + tuple(PAD_MODE_ALIASES) if m not in ("zeros", "reflect", "replicate", "circular")
)
# nn.ConvNd's names for the modes it supports, keyed by the canonical pad mode.
_TORCH_PADDING_MODE = {"zeros": "zeros", "reflect": "reflect", "border": "replicate", "periodic": "circular"}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_TORCH_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _positive(values: tuple[int, ...], name: str, minimum: int = 1) -> tuple[int, ...]:
    for v in values:
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum} in every entry, got {values if len(values) > 1 else v}")
    return values


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class _DclsBase(nn.Module):
    """Shared machinery: parameters, validation, kernel construction, eval cache, padding, conv.

    Subclasses fix the conv dimensionality ``spatial_dims`` and split the kernel
    axes into dense leading axes (``dense_kernel_size``, no interpolation) and
    learned trailing axes (``dilated_kernel_size``, one position per learned axis).
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_count: int,
        stride,
        padding,
        dilated_kernel_size,
        learned_dims: int,
        dense_kernel_size=(),
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        version: str = "gauss",
        method: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        in_channels = _positive_int(in_channels, "in_channels")
        out_channels = _positive_int(out_channels, "out_channels")
        groups = _positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.kernel_count = _positive_int(kernel_count, "kernel_count")
        self.dilated_kernel_size = _positive(int_tuple(dilated_kernel_size, "dilated_kernel_size", learned_dims),
                                             "dilated_kernel_size")
        # Dcls2dK1d passes None: one learned axis and no dense axis in a 2-D conv.
        self.dense_kernel_size = () if dense_kernel_size is None else _positive(
            int_tuple(dense_kernel_size, "dense_kernel_size", spatial_dims - learned_dims), "dense_kernel_size"
        )
        self.stride = _positive(int_tuple(stride, "stride", spatial_dims), "stride")
        if isinstance(padding, str):
            padding = choice(padding, "padding", ("same", "valid"))
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' needs stride 1 in every dimension (as in nn.Conv2d)")
        else:
            padding = _positive(int_tuple(padding, "padding", spatial_dims), "padding", minimum=0)
        self.padding = padding
        self.padding_mode = choice(padding_mode, "padding_mode", _PADDING_MODES)
        self.version = normalize_dcls_version(version)
        self.method = choice(method, "method", DCLS_METHODS)
        self._spatial_dims = spatial_dims
        if self.method in ("dense", "sparse"):
            if not self._has_fast_paths(learned_dims):
                raise ValueError(
                    f"method={self.method!r} needs a depthwise Dcls1d or Dcls2d layer (groups == in_channels == "
                    f"out_channels) with stride 1 or 2; use method='construct' or 'auto'"
                )
            if self.method == "sparse" and self.version not in SPARSE_VERSIONS:
                raise ValueError(
                    f"method='sparse' supports the bilinear versions {', '.join(SPARSE_VERSIONS)}, not {self.version!r}"
                )
        self._kernel_cache = None

        factory = {"device": device, "dtype": dtype}
        taps = (out_channels, in_channels // groups) + self.dense_kernel_size + (self.kernel_count,)
        self.weight = nn.Parameter(torch.empty(taps, **factory))
        self.P = nn.Parameter(torch.empty((learned_dims,) + taps, **factory))
        if self.version in _SIG_VERSIONS:
            self.SIG = nn.Parameter(torch.empty((learned_dims,) + taps, **factory))
        else:
            self.register_parameter("SIG", None)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    # ------------------------------------------------------------------ shapes
    @property
    def kernel_size(self) -> tuple[int, ...]:
        """Size of the dense kernel: ``dense_kernel_size + dilated_kernel_size``."""
        return self.dense_kernel_size + self.dilated_kernel_size

    @property
    def position_bounds(self) -> tuple[int, ...]:
        """``floor(D_a / 2)`` per learned axis: the centre offset and the clamp bound of ``P[a]``."""
        return tuple(d // 2 for d in self.dilated_kernel_size)

    def _expected_position_shape(self, broadcast: bool) -> tuple[int, ...]:
        co = 1 if broadcast else self.out_channels
        return (len(self.dilated_kernel_size), co, self.in_channels // self.groups) + self.dense_kernel_size + (
            self.kernel_count,
        )

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """DCLS 0.1.x initialisation.

        ``weight``: kaiming-uniform (a = sqrt(5)), i.e. U(+-1/sqrt(fan_in)) with
        fan_in = Ci/g * prod(dense_kernel_size) * kernel_count; ``bias``: U(+-1/sqrt(fan_in));
        ``P[a]``: N(0, 0.5^2) clamped to +-floor(D_a/2) (uniform on that range for the
        mixed variants); ``SIG``: 0.23 for ``gauss`` (sigma = 0.5), 0 for ``max`` (half-width 1).
        """
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)
        with torch.no_grad():
            for a, h in enumerate(self.position_bounds):
                if self.dense_kernel_size:
                    self.P[a].uniform_(-h, h)
                else:
                    self.P[a].normal_(0.0, 0.5).clamp_(-h, h)
            if self.SIG is not None:
                self.SIG.fill_(_SIG_INIT.get(self.version, _SIG_INIT["gauss"]))

    @torch.no_grad()
    def clamp_parameters(self) -> None:
        """Clamps ``P[a]`` in place to ``[-floor(D_a/2), floor(D_a/2)]`` (tap centres in ``[0, 2 floor(D_a/2)]``).

        Named as in DCLS 0.1.x; :func:`learnable_ops.dcls.clamp_positions` does it for a whole model.
        """
        for a, h in enumerate(self.position_bounds):
            self.P[a].clamp_(-h, h)

    # ------------------------------------------------------------------ kernel
    def _check_parameters(self, version: str):
        P, SIG = self.P, self.SIG
        if not isinstance(P, torch.Tensor):
            raise TypeError(f"P must be a tensor (an nn.Parameter), got {type(P).__name__}")
        full, shared = self._expected_position_shape(False), self._expected_position_shape(True)
        if tuple(P.shape) not in (full, shared):
            raise ValueError(
                f"P must have shape {full} (n, Co, Ci/g, {'dense..., ' if self.dense_kernel_size else ''}Kc), "
                f"or {shared} to share positions across output channels; got {tuple(P.shape)}"
            )
        if version in _SIG_VERSIONS:
            if SIG is None:
                raise ValueError(
                    f"version {version!r} needs SIG, but this layer has none (it was built with a version "
                    "without SIG); assign an nn.Parameter shaped like P to SIG first"
                )
            if tuple(SIG.shape) != tuple(P.shape):
                raise ValueError(f"SIG must have the shape of P {tuple(P.shape)}, got {tuple(SIG.shape)}")
            return P, SIG
        return P, None

    def construct_kernel(self) -> torch.Tensor:
        """Builds the dense kernel from ``weight``, ``P`` and ``SIG`` (never cached).

        :func:`learnable_ops.dcls_construct` runs in float32 for float16 and
        bfloat16 parameters and returns the kernel in ``weight``'s dtype.

        Returns:
            ``(out_channels, in_channels // groups, *kernel_size)``.
        """
        version = normalize_dcls_version(self.version)
        P, SIG = self._check_parameters(version)
        W = self.weight
        co, cig = W.shape[0], W.shape[1]
        if self.dense_kernel_size:
            # Every dense tap has its own Kc positions along the learned axis:
            # fold the dense axes into the input-channel axis of a 1-D construction.
            rows = cig * math.prod(self.dense_kernel_size)
            W = W.reshape(co, rows, self.kernel_count)
            P = P.reshape(P.shape[0], P.shape[1], rows, self.kernel_count)
            SIG = None if SIG is None else SIG.reshape(P.shape)
        kernel = learnable_ops.dcls_construct(W, P, SIG, self.dilated_kernel_size, version)
        return kernel.reshape((co, cig) + self.kernel_size)

    def invalidate_kernel_cache(self) -> None:
        """Drops the eval-mode kernel cache.

        Only needed after changing a parameter behind autograd's back (``p.data``
        edits are invisible to tensor version counters); optimizer steps,
        ``load_state_dict``, in-place ops under ``no_grad`` and ``.to()`` are detected.
        """
        self._kernel_cache = None

    def _cache_allowed(self, input: torch.Tensor, tensors) -> bool:
        if self.training or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return False
        if type(input) is not torch.Tensor or any(
            type(t) not in (torch.Tensor, nn.Parameter) for t in tensors if t is not None
        ):
            return False
        # A kernel that needs a graph to the parameters cannot be reused across forwards.
        return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))

    def _kernel(self, input: torch.Tensor) -> torch.Tensor:
        tensors = (self.weight, self.P, self.SIG if self.version in _SIG_VERSIONS else None)
        if not self._cache_allowed(input, tensors):
            return self.construct_kernel()
        state = tuple(
            None if t is None else (t._version, t.data_ptr(), t.device, t.dtype, tuple(t.shape)) for t in tensors
        ) + (self.version, self.dilated_kernel_size, torch.is_inference_mode_enabled())
        cache = self._kernel_cache
        if cache is not None and cache[1] == state and all(a is b for a, b in zip(cache[0], tensors)):
            return cache[2]
        with torch.no_grad():
            kernel = self.construct_kernel()
        self._kernel_cache = (tensors, state, kernel)
        return kernel

    def _apply(self, fn, recurse=True):
        self._kernel_cache = None
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        self._kernel_cache = None
        return super().train(mode)

    def __getstate__(self):
        state = super().__getstate__()
        state["_kernel_cache"] = None
        return state

    # ------------------------------------------------------------------ forward
    def _input_padding(self) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` zero/mode padding of each spatial axis."""
        if self.padding == "valid":
            return ((0, 0),) * self._spatial_dims
        if self.padding == "same":
            # nn.ConvNd's split: the extra element of an odd total goes after.
            return tuple(((k - 1) // 2, (k - 1) - (k - 1) // 2) for k in self.kernel_size)
        return tuple((p, p) for p in self.padding)

    def _check_input(self, input) -> None:
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        nd = self._spatial_dims
        if input.dim() not in (nd + 1, nd + 2):
            raise ValueError(
                f"input must be (N, C, *spatial) or (C, *spatial) with {nd} spatial dimension(s) for "
                f"{type(self).__name__}, got a tensor of shape {tuple(input.shape)}"
            )
        channels = input.shape[-nd - 1]
        if channels != self.in_channels:
            raise ValueError(
                f"input has {channels} channels (dimension {input.dim() - nd - 1} of shape "
                f"{tuple(input.shape)}) but {type(self).__name__} has in_channels={self.in_channels}"
            )

    def _has_fast_paths(self, learned_dims: int) -> bool:
        """Whether the depthwise paths ('dense', 'sparse') can run this layer."""
        return (
            not self.dense_kernel_size
            and learned_dims == self._spatial_dims in (1, 2)
            and self.groups == self.in_channels == self.out_channels
            and set(self.stride) <= {1, 2}
        )

    def _resolve_method(self, input: torch.Tensor) -> str:
        """The path this call takes: 'sparse', 'dense' or 'construct'.

        'auto' asks :func:`learnable_ops.ops.dcls_dispatch.choose_method` for depthwise
        layers, for the dtype the convolution runs in (:meth:`_autocast_dtype`), and keeps
        'construct' when the input's dtype differs from the parameters' outside autocast
        (``F.conv`` casts; the native paths need one dtype). It passes whether the input is
        channels_last and whether the call records a graph (oneDNN's channels_last forward wins
        on the CPU without one).
        """
        if self.method != "auto":
            return self.method
        if not self._has_fast_paths(self.P.shape[0]):
            return "construct"
        dtype = self._autocast_dtype(input)
        if dtype is None:
            if input.dtype != self.weight.dtype:
                return "construct"
            dtype = input.dtype
        needs_grad = torch.is_grad_enabled() and (
            input.requires_grad or any(p.requires_grad for p in (self.weight, self.P, self.SIG, self.bias) if p is not None)
        )
        channels_last = strictly_channels_last(input)
        return choose_method(
            self.kernel_count, self.dilated_kernel_size, self.in_channels, self.out_channels, self.groups,
            self.version, input.device, dtype, input.shape[2:], channels_last=channels_last, needs_grad=needs_grad,
        )

    @staticmethod
    def _autocast_dtype(input: torch.Tensor):
        """The dtype autocast runs convolutions in on ``input``'s device, or None outside autocast.

        Under autocast the native paths compute as ``F.conv`` would: input, kernel and bias in
        that dtype (accumulating in float32); the kernel is still constructed in the parameters'
        dtype, and the sparse path reads the positions in it too.
        """
        return autocast_dtype(input.device.type)

    def _pad_for_fast_path(self, input: torch.Tensor, symmetric: bool):
        """Applies non-zero padding modes (and, if ``symmetric``, uneven zero padding)
        with :func:`learnable_ops.pad`; returns the input and the zero padding left."""
        pads = self._input_padding()
        mode = normalize_pad_mode(self.padding_mode, "padding_mode")
        if mode != "zeros" or (symmetric and any(b != a for b, a in pads)):
            if any(b or a for b, a in pads):
                input = learnable_ops.pad(input, [v for pair in reversed(pads) for v in pair], mode)
            pads = tuple((0, 0) for _ in pads)
        return input, pads

    def _dense_forward(self, input: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The native large-kernel depthwise convolution with the constructed kernel."""
        input, pads = self._pad_for_fast_path(input, symmetric=False)
        kernel = kernel.to(input.dtype)
        bias = None if self.bias is None else self.bias.to(input.dtype)
        if self._spatial_dims == 1:
            return learnable_ops.depthwise_conv1d(input, kernel, bias, self.stride[0], pads[0])
        (top, bottom), (left, right) = pads
        return learnable_ops.depthwise_conv2d(input, kernel, bias, self.stride, (top, bottom, left, right))

    def _sparse_forward(self, input: torch.Tensor) -> torch.Tensor:
        """Tap by tap (at most 2^n integer taps per tap), without a dense kernel."""
        input, pads = self._pad_for_fast_path(input, symmetric=True)
        dtype = input.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        # The op reads positions in float32 (or float64) whatever the input's dtype: float32
        # parameters under autocast keep their precision (bf16 would round a position near 8
        # to 1/32).
        P = self.P if self.P.dtype in (torch.float32, torch.float64) and dtype in (torch.float16, torch.bfloat16) else self.P.to(dtype)
        return learnable_ops.dcls_sparse_depthwise(
            input, self.weight.to(dtype), P, bias, self.dilated_kernel_size, self.stride,
            tuple(b for b, _ in pads), self.version,
        )

    def _conv_forward(self, input: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Pads ``input`` and convolves it with the dense ``kernel`` through ``F.conv{1,2,3}d``
        (the 'construct' path, and the only one for non-depthwise layers)."""
        conv = _CONV[self._spatial_dims]
        pads = self._input_padding()
        mode = normalize_pad_mode(self.padding_mode, "padding_mode")
        if mode == "zeros" and all(b == a for b, a in pads):
            return conv(input, kernel, self.bias, self.stride, tuple(b for b, _ in pads), 1, self.groups)
        if any(b or a for b, a in pads):
            flat = [v for pair in reversed(pads) for v in pair]
            input = learnable_ops.pad(input, flat, mode)
        return conv(input, kernel, self.bias, self.stride, 0, 1, self.groups)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Convolves ``input`` with the constructed kernel.

        Args:
            input: ``(N, in_channels, *spatial)`` or unbatched ``(in_channels, *spatial)``.

        Returns:
            ``(N, out_channels, *out_spatial)`` (unbatched if the input was), with
            ``out = floor((size + before + after - kernel_size) / stride) + 1`` per axis.
        """
        self._check_input(input)
        unbatched = input.dim() == self._spatial_dims + 1
        x = input.unsqueeze(0) if unbatched else input
        method = self._resolve_method(x)
        if method != "construct":
            dtype = self._autocast_dtype(x)
            if dtype is not None:
                x = x.to(dtype)
        if method == "sparse":
            out = self._sparse_forward(x)
        elif method == "dense":
            out = self._dense_forward(x, self._kernel(x))
        else:
            out = self._conv_forward(x, self._kernel(x))
        return out.squeeze(0) if unbatched else out

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def to_conv(self) -> nn.Module:
        """An equivalent plain ``nn.Conv{1,2,3}d`` holding the constructed kernel.

        For deployment and ONNX: same stride, padding, groups and bias, dilation 1,
        ``kernel_size`` equal to this layer's dense kernel size. The result is in
        this layer's training mode, on its device and in its dtype.

        Raises:
            ValueError: if ``padding_mode`` has no ``nn.ConvNd`` equivalent (``symmetric``).
        """
        mode = normalize_pad_mode(self.padding_mode, "padding_mode")
        if mode not in _TORCH_PADDING_MODE:
            raise ValueError(
                f"padding_mode {self.padding_mode!r} has no nn.Conv{self._spatial_dims}d equivalent; "
                f"to_conv() supports {', '.join(sorted(set(_TORCH_PADDING_MODE.values())))} "
                "(and their aliases)"
            )
        conv = _TORCH_CONV[self._spatial_dims](
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=1,
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=_TORCH_PADDING_MODE[mode],
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        conv.weight.copy_(self.construct_kernel())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv.train(self.training)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_count={self.kernel_count}"
        if self.dense_kernel_size:
            s += f", dense_kernel_size={self.dense_kernel_size}"
        s += f", dilated_kernel_size={self.dilated_kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._spatial_dims:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        s += f", version={self.version!r}"
        if self.method != "auto":
            s += f", method={self.method!r}"
        if self.P is not None and self.P.shape[1] == 1 and self.out_channels != 1:
            s += ", positions shared across output channels"
        return s


class _DclsNd(_DclsBase):
    """Positions learned along every spatial axis; adds :meth:`from_conv`."""

    _dims: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_count: int,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilated_kernel_size: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        version: str = "gauss",
        method: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            spatial_dims=self._dims, learned_dims=self._dims, in_channels=in_channels, out_channels=out_channels,
            kernel_count=kernel_count, stride=stride, padding=padding, dilated_kernel_size=dilated_kernel_size,
            groups=groups, bias=bias, padding_mode=padding_mode, version=version, method=method,
            device=device, dtype=dtype,
        )

    @classmethod
    def from_conv(cls, conv: nn.Module, dilated_kernel_size=None, version: str = "v1"):
        """A DCLS layer whose taps sit on ``conv``'s own grid, with its weights copied.

        Tap ``j`` (row-major over ``conv.kernel_size``) gets position
        ``P[a] = j_a * dilation_a + off_a - floor(D_a / 2)`` with
        ``off_a = (D_a - E_a) / 2`` and ``E_a = (k_a - 1) * dilation_a + 1``, the
        conv's span; the padding grows by ``off_a`` so the outputs align. The
        positions are integers, so with ``v0``, ``v1`` and ``max`` (SIG = 0) the
        layer's output equals the conv's at initialisation (``v1``/``max`` up to
        their ``1 + 1e-7`` normaliser, a relative 1e-7). ``gauss`` spreads each tap
        (sigma 0.5) and only approximates the conv.

        Args:
            conv: an ``nn.Conv{1,2,3}d`` of this class's dimensionality.
            dilated_kernel_size: ``D`` per axis, at least the conv's span and of
                the same parity; default the span ``(k - 1) * dilation + 1``.
            version: one of :data:`learnable_ops.DCLS_VERSIONS`.

        Returns:
            The layer, on ``conv``'s device and dtype and in its training mode.
        """
        torch_conv = _TORCH_CONV[cls._dims]
        if not isinstance(conv, torch_conv):
            raise TypeError(f"conv must be an nn.{torch_conv.__name__}, got {type(conv).__name__}")
        k, d = tuple(conv.kernel_size), tuple(conv.dilation)
        span = tuple((ka - 1) * da + 1 for ka, da in zip(k, d))
        size = span if dilated_kernel_size is None else int_tuple(dilated_kernel_size, "dilated_kernel_size", cls._dims)
        for D, E in zip(size, span):
            if D < E or (D - E) % 2:
                raise ValueError(
                    f"dilated_kernel_size {size} must be >= the conv's span {span} (kernel_size "
                    f"{k}, dilation {d}) with an even difference in every dimension, so the taps stay centred"
                )
        off = tuple((D - E) // 2 for D, E in zip(size, span))
        if isinstance(conv.padding, str):
            padding = "same" if conv.padding == "same" else off
        else:
            padding = tuple(p + o for p, o in zip(conv.padding, off))
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            math.prod(k),
            stride=conv.stride,
            padding=padding,
            dilated_kernel_size=size,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            version=version,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        grid = torch.meshgrid(*[torch.arange(ka) for ka in k], indexing="ij")
        with torch.no_grad():
            layer.weight.copy_(conv.weight.reshape(layer.weight.shape))
            for a in range(cls._dims):
                pos = grid[a].reshape(-1) * d[a] + off[a] - size[a] // 2
                layer.P[a].copy_(pos.to(layer.P.dtype).expand_as(layer.P[a]))
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer.train(conv.training)


class Dcls1d(_DclsNd):
    """1-D DCLS convolution: ``kernel_count`` taps per channel pair at learnable positions.

    ``y = conv1d(x, K)`` with the dense kernel ``K[o, i, u] = sum_k W[o, i, k] phi_k(u)``,
    ``u`` in ``0..D-1``, built by :func:`learnable_ops.dcls_construct`. The signature and
    parameters are DCLS 0.1.x's, plus ``method``.

    Args:
        in_channels: input channels ``Ci``.
        out_channels: output channels ``Co``.
        kernel_count: taps per (output, input) channel pair, ``Kc >= 1``.
        stride: int or 1-tuple.
        padding: int, 1-tuple, ``'same'`` (stride 1) or ``'valid'``.
        dilated_kernel_size: ``D``, the size of the dense kernel (int or 1-tuple).
        groups: as in ``nn.Conv2d``; ``Ci`` and ``Co`` must be multiples.
        bias: adds a learnable ``(Co,)`` bias.
        padding_mode: ``zeros``, ``reflect``, ``replicate``, ``circular``, or any mode of
            :func:`learnable_ops.pad` (``symmetric``, ``border``, ``periodic``, ...).
            Non-zero modes pad with :func:`learnable_ops.pad`, which accepts any amount.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'`` (see ``learnable_ops.DCLS_VERSIONS``);
            ``SIG`` exists only for ``'max'`` and ``'gauss'``.
        method: how the forward convolves, all equal up to float rounding.
            ``'construct'`` builds the dense kernel and runs ``F.conv``; ``'dense'``
            builds it and runs the native large-kernel depthwise convolution
            (:func:`learnable_ops.depthwise_conv2d`); ``'sparse'`` (v0/v1 only)
            convolves tap by tap without a dense kernel
            (:func:`learnable_ops.dcls_sparse_depthwise`). ``'dense'`` and ``'sparse'``
            need a depthwise layer (``groups == in_channels == out_channels``) with
            stride 1 or 2; ``'auto'`` picks the fastest measured path for such layers
            (:func:`learnable_ops.ops.dcls_dispatch.choose_method`) and ``'construct'``
            otherwise.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        weight: ``(Co, Ci/g, Kc)``.
        P: positions ``(1, Co, Ci/g, Kc)``, or ``(1, 1, Ci/g, Kc)``
            to share them across output channels; ``P[a]`` drives kernel axis ``a``; the
            tap's centre is ``P[a] + floor(D_a/2)`` cells from the kernel's first cell.
            May be the same ``nn.Parameter`` as another layer's ``P``.
        SIG: like ``P``, only for ``'max'`` (half-width ``|SIG| + 1``) and ``'gauss'``
            (sigma ``|SIG| + 0.27``); ``None`` otherwise.
        bias: ``(Co,)`` or ``None``.

    Shape:
        input ``(N, Ci, L)`` or ``(Ci, L)``; output ``(N, Co, L_out)``,
        ``L_out = floor((L + 2 padding - D) / stride) + 1``.

    Example:
        >>> layer = Dcls1d(4, 8, kernel_count=3, dilated_kernel_size=9, padding=4)
        >>> layer(torch.randn(2, 4, 20)).shape
        torch.Size([2, 8, 20])
    """

    _dims = 1


class Dcls2d(_DclsNd):
    """2-D DCLS convolution: ``kernel_count`` taps per channel pair at learnable 2-D positions.

    ``y = conv2d(x, K)`` with ``K[o, i, u0, u1] = sum_k W[o, i, k] phi_k(u0, u1)`` on the
    ``D0 x D1`` grid. ``P[0]`` moves taps along rows (height), ``P[1]`` along columns,
    in every version; non-square and even ``D`` are supported.

    Args:
        in_channels: input channels ``Ci``.
        out_channels: output channels ``Co``.
        kernel_count: taps per (output, input) channel pair, ``Kc >= 1``.
        stride: int or pair.
        padding: int, pair, ``'same'`` (stride 1) or ``'valid'``.
        dilated_kernel_size: ``(D0, D1)`` or an int for both.
        groups: as in ``nn.Conv2d``; ``Ci`` and ``Co`` must be multiples.
        bias: adds a learnable ``(Co,)`` bias.
        padding_mode: ``zeros``, ``reflect``, ``replicate``, ``circular``, or any mode of
            :func:`learnable_ops.pad` (``symmetric``, ``border``, ``periodic``, ...).
            Non-zero modes pad with :func:`learnable_ops.pad`, which accepts any amount.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'`` (see ``learnable_ops.DCLS_VERSIONS``);
            ``SIG`` exists only for ``'max'`` and ``'gauss'``.
        method: how the forward convolves, all equal up to float rounding.
            ``'construct'`` builds the dense kernel and runs ``F.conv``; ``'dense'``
            builds it and runs the native large-kernel depthwise convolution
            (:func:`learnable_ops.depthwise_conv2d`); ``'sparse'`` (v0/v1 only)
            convolves tap by tap without a dense kernel
            (:func:`learnable_ops.dcls_sparse_depthwise`). ``'dense'`` and ``'sparse'``
            need a depthwise layer (``groups == in_channels == out_channels``) with
            stride 1 or 2; ``'auto'`` picks the fastest measured path for such layers
            (:func:`learnable_ops.ops.dcls_dispatch.choose_method`) and ``'construct'``
            otherwise.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        weight: ``(Co, Ci/g, Kc)``.
        P: positions ``(2, Co, Ci/g, Kc)``, or ``(2, 1, Ci/g, Kc)``
            to share them across output channels; ``P[a]`` drives kernel axis ``a``; the
            tap's centre is ``P[a] + floor(D_a/2)`` cells from the kernel's first cell.
            May be the same ``nn.Parameter`` as another layer's ``P``.
        SIG: like ``P``, only for ``'max'`` (half-width ``|SIG| + 1``) and ``'gauss'``
            (sigma ``|SIG| + 0.27``); ``None`` otherwise.
        bias: ``(Co,)`` or ``None``.

    Shape:
        input ``(N, Ci, H, W)`` or ``(Ci, H, W)``; output ``(N, Co, H_out, W_out)`` as for
        ``nn.Conv2d`` with ``kernel_size = dilated_kernel_size``.

    Example:
        >>> layer = Dcls2d(8, 8, kernel_count=5, dilated_kernel_size=7, padding=3, groups=8)
        >>> layer(torch.randn(1, 8, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """

    _dims = 2


class Dcls3d(_DclsNd):
    """3-D DCLS convolution: taps at learnable 3-D positions (``P[a]`` drives axis ``a``).

    Args:
        in_channels: input channels ``Ci``.
        out_channels: output channels ``Co``.
        kernel_count: taps per (output, input) channel pair, ``Kc >= 1``.
        stride: int or triple.
        padding: int, triple, ``'same'`` (stride 1) or ``'valid'``.
        dilated_kernel_size: ``(D0, D1, D2)`` or an int for all.
        groups: as in ``nn.Conv2d``; ``Ci`` and ``Co`` must be multiples.
        bias: adds a learnable ``(Co,)`` bias.
        padding_mode: ``zeros``, ``reflect``, ``replicate``, ``circular``, or any mode of
            :func:`learnable_ops.pad` (``symmetric``, ``border``, ``periodic``, ...).
            Non-zero modes pad with :func:`learnable_ops.pad`, which accepts any amount.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'`` (see ``learnable_ops.DCLS_VERSIONS``);
            ``SIG`` exists only for ``'max'`` and ``'gauss'``.
        method: how the forward convolves, all equal up to float rounding.
            ``'construct'`` builds the dense kernel and runs ``F.conv``; ``'dense'``
            builds it and runs the native large-kernel depthwise convolution
            (:func:`learnable_ops.depthwise_conv2d`); ``'sparse'`` (v0/v1 only)
            convolves tap by tap without a dense kernel
            (:func:`learnable_ops.dcls_sparse_depthwise`). ``'dense'`` and ``'sparse'``
            need a depthwise layer (``groups == in_channels == out_channels``) with
            stride 1 or 2; ``'auto'`` picks the fastest measured path for such layers
            (:func:`learnable_ops.ops.dcls_dispatch.choose_method`) and ``'construct'``
            otherwise.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        weight: ``(Co, Ci/g, Kc)``.
        P: positions ``(3, Co, Ci/g, Kc)``, or ``(3, 1, Ci/g, Kc)``
            to share them across output channels; ``P[a]`` drives kernel axis ``a``; the
            tap's centre is ``P[a] + floor(D_a/2)`` cells from the kernel's first cell.
            May be the same ``nn.Parameter`` as another layer's ``P``.
        SIG: like ``P``, only for ``'max'`` (half-width ``|SIG| + 1``) and ``'gauss'``
            (sigma ``|SIG| + 0.27``); ``None`` otherwise.
        bias: ``(Co,)`` or ``None``.

    Shape:
        input ``(N, Ci, D, H, W)`` or unbatched; output as for ``nn.Conv3d`` with
        ``kernel_size = dilated_kernel_size``.
    """

    _dims = 3


class _DclsN_1d(_DclsBase):
    """Dense leading kernel axes, positions learned along the last axis only."""

    _dims: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_count: int,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dense_kernel_size: int | Sequence[int] = 1,
        dilated_kernel_size: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        version: str = "gauss",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            spatial_dims=self._dims, learned_dims=1, in_channels=in_channels, out_channels=out_channels,
            kernel_count=kernel_count, stride=stride, padding=padding, dilated_kernel_size=dilated_kernel_size,
            dense_kernel_size=dense_kernel_size, groups=groups, bias=bias, padding_mode=padding_mode,
            version=version, device=device, dtype=dtype,
        )


class Dcls2_1d(_DclsN_1d):
    """2-D convolution with a dense first axis and learnable positions along the last.

    Kernel ``K[o, i, d, u] = sum_k W[o, i, d, k] phi_{o,i,d,k}(u)``: for each of the
    ``dense_kernel_size`` rows ``d`` the taps have their own positions along the last
    (width) axis, e.g. neurons x time for delay learning. The gauss width is
    ``|SIG| + 0.27`` as in every other layer (the unreleased DCLS ``Dcls2_1d`` used
    ``|SIG| + 1``; :func:`learnable_ops.compat.load_dcls_state_dict` converts).

    Args:
        in_channels: input channels ``Ci``.
        out_channels: output channels ``Co``.
        kernel_count: taps per (output, input) channel pair, ``Kc >= 1``.
        stride: int or pair.
        padding: int, pair, ``'same'`` (stride 1) or ``'valid'``.
        dense_kernel_size: ``d0``, the kernel's height (int or 1-tuple).
        dilated_kernel_size: ``D``, the kernel's width (int or 1-tuple).
        groups: as in ``nn.Conv2d``; ``Ci`` and ``Co`` must be multiples.
        bias: adds a learnable ``(Co,)`` bias.
        padding_mode: ``zeros``, ``reflect``, ``replicate``, ``circular``, or any mode of
            :func:`learnable_ops.pad` (``symmetric``, ``border``, ``periodic``, ...).
            Non-zero modes pad with :func:`learnable_ops.pad`, which accepts any amount.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'`` (see ``learnable_ops.DCLS_VERSIONS``);
            ``SIG`` exists only for ``'max'`` and ``'gauss'``.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        weight: ``(Co, Ci/g, d0, Kc)``.
        P: positions ``(1, Co, Ci/g, d0, Kc)``, or ``(1, 1, Ci/g, d0, Kc)``
            to share them across output channels; ``P[a]`` drives kernel axis 1 (the last); the
            tap's centre is ``P[a] + floor(D_a/2)`` cells from the kernel's first cell.
            May be the same ``nn.Parameter`` as another layer's ``P``.
        SIG: like ``P``, only for ``'max'`` (half-width ``|SIG| + 1``) and ``'gauss'``
            (sigma ``|SIG| + 0.27``); ``None`` otherwise.
        bias: ``(Co,)`` or ``None``.

    Shape:
        input ``(N, Ci, H, W)``; output as for ``nn.Conv2d`` with ``kernel_size = (d0, D)``.
    """

    _dims = 2


class Dcls3_1d(_DclsN_1d):
    """3-D convolution with two dense leading axes and learnable positions along the last.

    Kernel ``K[o, i, d0, d1, u] = sum_k W[o, i, d0, d1, k] phi_{o,i,d0,d1,k}(u)``.

    Args:
        in_channels: input channels ``Ci``.
        out_channels: output channels ``Co``.
        kernel_count: taps per (output, input) channel pair, ``Kc >= 1``.
        stride: int or triple.
        padding: int, triple, ``'same'`` (stride 1) or ``'valid'``.
        dense_kernel_size: ``(d0, d1)`` or an int for both.
        dilated_kernel_size: ``D``, the size of the last kernel axis.
        groups: as in ``nn.Conv2d``; ``Ci`` and ``Co`` must be multiples.
        bias: adds a learnable ``(Co,)`` bias.
        padding_mode: ``zeros``, ``reflect``, ``replicate``, ``circular``, or any mode of
            :func:`learnable_ops.pad` (``symmetric``, ``border``, ``periodic``, ...).
            Non-zero modes pad with :func:`learnable_ops.pad`, which accepts any amount.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'`` (see ``learnable_ops.DCLS_VERSIONS``);
            ``SIG`` exists only for ``'max'`` and ``'gauss'``.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        weight: ``(Co, Ci/g, d0, d1, Kc)``.
        P: positions ``(1, Co, Ci/g, d0, d1, Kc)``, or ``(1, 1, Ci/g, d0, d1, Kc)``
            to share them across output channels; ``P[a]`` drives kernel axis 2 (the last); the
            tap's centre is ``P[a] + floor(D_a/2)`` cells from the kernel's first cell.
            May be the same ``nn.Parameter`` as another layer's ``P``.
        SIG: like ``P``, only for ``'max'`` (half-width ``|SIG| + 1``) and ``'gauss'``
            (sigma ``|SIG| + 0.27``); ``None`` otherwise.
        bias: ``(Co,)`` or ``None``.

    Shape:
        input ``(N, Ci, T, H, W)``; output as for ``nn.Conv3d`` with ``kernel_size = (d0, d1, D)``.
    """

    _dims = 3


class Dcls2dK1d(_DclsBase):
    """A 1-D learnable-spacing kernel applied by a 2-D convolution.

    The kernel lies along input axis ``flat_dim``: ``(D, 1)`` (vertical, along the
    height) for ``flat_dim=0`` and ``(1, D)`` (horizontal, along the width) for
    ``flat_dim=1``. This is what DCLS 0.1.x computes (its README calls ``flat_dim=0``
    a ``(1, D)`` kernel, which its code does not do), so its checkpoints load unchanged.
    For "same" output pad along the kernel's axis only, e.g. ``padding=(D // 2, 0)``
    for ``flat_dim=0``.

    Args:
        in_channels: input channels ``Ci``.
        out_channels: output channels ``Co``.
        kernel_count: taps per (output, input) channel pair, ``Kc >= 1``.
        stride: int or pair.
        padding: int, pair, ``'same'`` or ``'valid'``.
        dilated_kernel_size: ``D`` (int or 1-tuple).
        groups: as in ``nn.Conv2d``; ``Ci`` and ``Co`` must be multiples.
        bias: adds a learnable ``(Co,)`` bias.
        padding_mode: ``zeros``, ``reflect``, ``replicate``, ``circular``, or any mode of
            :func:`learnable_ops.pad` (``symmetric``, ``border``, ``periodic``, ...).
            Non-zero modes pad with :func:`learnable_ops.pad`, which accepts any amount.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'`` (see ``learnable_ops.DCLS_VERSIONS``);
            ``SIG`` exists only for ``'max'`` and ``'gauss'``.
        flat_dim: 0 or 1, the axis the kernel lies along (see above).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        weight: ``(Co, Ci/g, Kc)``.
        P: positions ``(1, Co, Ci/g, Kc)``, or ``(1, 1, Ci/g, Kc)``
            to share them across output channels; ``P[a]`` drives kernel axis ``flat_dim``; the
            tap's centre is ``P[a] + floor(D_a/2)`` cells from the kernel's first cell.
            May be the same ``nn.Parameter`` as another layer's ``P``.
        SIG: like ``P``, only for ``'max'`` (half-width ``|SIG| + 1``) and ``'gauss'``
            (sigma ``|SIG| + 0.27``); ``None`` otherwise.
        bias: ``(Co,)`` or ``None``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_count: int,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilated_kernel_size: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        version: str = "v1",
        flat_dim: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(flat_dim, bool) or flat_dim not in (0, 1):
            raise ValueError(f"flat_dim must be 0 (kernel along the height) or 1 (along the width), got {flat_dim!r}")
        self.flat_dim = flat_dim
        super().__init__(
            spatial_dims=2, learned_dims=1, in_channels=in_channels, out_channels=out_channels,
            kernel_count=kernel_count, stride=stride, padding=padding, dilated_kernel_size=dilated_kernel_size,
            dense_kernel_size=None, groups=groups, bias=bias, padding_mode=padding_mode, version=version,
            device=device, dtype=dtype,
        )

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """``(D, 1)`` for ``flat_dim=0``, ``(1, D)`` for ``flat_dim=1``."""
        (D,) = self.dilated_kernel_size
        return (D, 1) if self.flat_dim == 0 else (1, D)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", flat_dim={self.flat_dim}"
