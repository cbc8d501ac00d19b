"""Post-training static quantization of models that contain learnable_ops layers.

Two flows:

* **Eager** ``torch.ao.quantization``: :func:`prepare`, calibrate, :func:`convert`
  (or :func:`quantize` in one call). :data:`quant_mapping` is torch's default
  static mapping plus the sparse shift layers, which become quantized shifts
  (a pure integer gather that keeps the input's scale and zero point). Layers
  without an integer kernel (DCLS, DiffConv2d, active shifts) are wrapped in
  :class:`FloatFallback`, which dequantizes their input and quantizes their
  output, so one call handles any converted model. As always in eager mode the
  model must mark where quantization starts and ends (``QuantStub`` and
  ``DeQuantStub``, see ``torch.ao.quantization.QuantWrapper``) and use
  ``torch.ao.nn.quantized.FloatFunctional`` for residual additions.
* **PT2E** (export, then quantize the graph): torch 2.13 no longer ships
  ``torch.ao.quantization.quantize_pt2e``; the flow now lives in ``torchao``
  (``torchao.quantization.pt2e``). :func:`pt2e_available` says whether it can be
  used, and :func:`quantize_pt2e` runs it with torchao's X86 Inductor
  quantizer extended so that a shift's output shares its input's
  quantization parameters.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable

import torch
from torch import nn
from torch.ao import quantization as tq

from learnable_ops.convert import _is_learnable_ops_layer
from learnable_ops.nn.quantized import quant_mapping as _shift_quant_mapping

__all__ = [
    "FloatFallback",
    "convert",
    "get_quant_mapping",
    "pt2e_available",
    "prepare",
    "quant_mapping",
    "quantize",
    "quantize_pt2e",
    "wrap_float_layers",
]


def get_quant_mapping() -> dict:
    """torch's default static quantization module mapping, plus learnable_ops' sparse shift layers.

    Returns:
        A new dict ``float module type -> quantized module type`` for
        ``torch.ao.quantization.convert(model, mapping=...)``.
    """
    return dict(_shift_quant_mapping)


quant_mapping = _shift_quant_mapping
"""torch's default static mapping plus ``learnable_ops.nn.ShiftNd -> learnable_ops.nn.quantized.ShiftNd``
(the same dict as ``learnable_ops.nn.quantized.quant_mapping``)."""


def _mapping(mapping: dict | None) -> dict:
    return quant_mapping if mapping is None else mapping


class FloatFallback(nn.Module):
    """Runs a layer that has no integer kernel in floating point inside a quantized model.

    Before quantization it is the identity around ``module``. After
    :func:`prepare` and :func:`convert`, it dequantizes the input, runs
    ``module`` in float, and quantizes the output with parameters observed
    during calibration.

    Args:
        module: the float layer to wrap (its ``qconfig`` is cleared so that
            torch never tries to quantize it).
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.dequant = tq.DeQuantStub()
        self.module = module
        self.quant = tq.QuantStub()

    def forward(self, x):
        return self.quant(self.module(self.dequant(x)))


def _has_integer_kernel(module: nn.Module, mapping: dict) -> bool:
    if type(module) not in mapping:
        return False
    mode = getattr(module, "mode", "sparse")
    return mode == "sparse"


def wrap_float_layers(model: nn.Module, mapping: dict | None = None) -> list[str]:
    """Wraps, in place, every learnable_ops layer without an integer kernel in :class:`FloatFallback`.

    Args:
        model: the float model.
        mapping: the quantization mapping (default :data:`quant_mapping`).

    Returns:
        The names of the wrapped layers.
    """
    mapping = _mapping(mapping)
    wrapped = []

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            fqn = f"{prefix}.{name}" if prefix else name
            if isinstance(child, FloatFallback):
                continue
            if _is_learnable_ops_layer(child) and not _has_integer_kernel(child, mapping):
                for m in child.modules():
                    m.qconfig = None
                setattr(parent, name, FloatFallback(child))
                wrapped.append(fqn)
            else:
                walk(child, fqn)

    walk(model, "")
    return wrapped


def _default_qconfig(backend: str):
    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"backend={backend!r} is not a quantized engine of this torch build; "
            f"supported: {torch.backends.quantized.supported_engines}"
        )
    return tq.get_default_qconfig(backend)


def prepare(
    model: nn.Module, backend: str = "x86", qconfig: tq.QConfig | None = None, inplace: bool = False
) -> nn.Module:
    """Eager-mode prepare: wraps float-only layers, attaches qconfigs and observers.

    Args:
        model: a float model in eval mode, with ``QuantStub``/``DeQuantStub``
            marking the quantized region.
        backend: quantized engine (``'x86'``, ``'fbgemm'``, ``'qnnpack'``, ``'onednn'``);
            it is also made the active ``torch.backends.quantized.engine``.
        qconfig: the qconfig for modules that have none (default: the backend's default qconfig).
        inplace: modify ``model`` or a deep copy.

    Returns:
        The prepared model; run calibration data through it, then call :func:`convert`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    qconfig = _default_qconfig(backend) if qconfig is None else qconfig
    torch.backends.quantized.engine = backend
    if not inplace:
        model = copy.deepcopy(model)
    wrap_float_layers(model)
    if getattr(model, "qconfig", None) is None:
        model.qconfig = qconfig
    return tq.prepare(model, inplace=True)


def convert(model: nn.Module, inplace: bool = False, mapping: dict | None = None) -> nn.Module:
    """Eager-mode convert with :data:`quant_mapping`: sparse shifts become quantized shifts,
    other modules follow torch's default mappings.

    Args:
        model: a model returned by :func:`prepare` and calibrated.
        inplace: modify ``model`` or a deep copy.
        mapping: override the module mapping (default :data:`quant_mapping`).

    Returns:
        The quantized model.
    """
    return tq.convert(model, mapping=_mapping(mapping), inplace=inplace)


def quantize(
    model: nn.Module, calibrate: Callable[[nn.Module], None], backend: str = "x86", inplace: bool = False
) -> nn.Module:
    """Prepare, calibrate and convert in one call (eager mode).

    Args:
        model: a float model in eval mode with ``QuantStub``/``DeQuantStub``.
        calibrate: called with the prepared model; runs representative data through it.
        backend: quantized engine, see :func:`prepare`.
        inplace: modify ``model`` or a deep copy.

    Returns:
        The quantized model.
    """
    prepared = prepare(model, backend=backend, inplace=inplace)
    with torch.no_grad():
        calibrate(prepared)
    return convert(prepared, inplace=True)


# ----------------------------------------------------------------------------- PT2E


def _pt2e():
    """torchao's PT2E modules, or None where neither torchao nor an older torch provides them."""
    for prefix in ("torchao.quantization.pt2e", "torch.ao.quantization"):
        try:
            flow = importlib.import_module(f"{prefix}.quantize_pt2e")
            x86 = importlib.import_module(f"{prefix}.quantizer.x86_inductor_quantizer")
            quantizer = importlib.import_module(f"{prefix}.quantizer")
        except ImportError:
            continue
        return flow, x86, quantizer
    return None


def pt2e_available() -> bool:
    """Whether the PT2E flow can run: it needs ``torchao`` (``pip install torchao``) on
    torch 2.13, where ``torch.ao.quantization.quantize_pt2e`` no longer exists."""
    return _pt2e() is not None


def _shift_ops() -> set:
    packet = torch.ops.learnable_ops.shift
    return {getattr(packet, overload) for overload in packet.overloads()}


def _make_quantizer(x86, quantizer_module):
    """X86InductorQuantizer whose annotation also makes each shift's output share its input's qparams."""
    base = x86.X86InductorQuantizer

    class LearnableOpsX86Quantizer(base):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            shift_ops = _shift_ops()
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target not in shift_ops:
                    continue
                source = node.args[0]
                annotation = quantizer_module.QuantizationAnnotation(
                    input_qspec_map={source: self._input_spec(source)},
                    output_qspec=quantizer_module.SharedQuantizationSpec((source, node)),
                    _annotated=True,
                )
                node.meta["quantization_annotation"] = annotation
            return model

        def _input_spec(self, source):
            config = self.global_config or x86.get_default_x86_inductor_quantization_config()
            return config.input_activation

    return LearnableOpsX86Quantizer().set_global(x86.get_default_x86_inductor_quantization_config())


def quantize_pt2e(
    model: nn.Module,
    example_inputs: tuple,
    calibrate: Callable[[nn.Module], None],
    dynamic_shapes: dict | tuple | None = None,
) -> torch.fx.GraphModule:
    """PT2E static quantization: export, annotate, calibrate, convert.

    The exported graph keeps learnable_ops' own ops; convolutions and linears
    are quantized by torchao's X86 Inductor quantizer, and each shift's output
    shares its input's quantization parameters (a shift only moves values).

    Args:
        model: a float model in eval mode.
        example_inputs: a tuple of example inputs for ``torch.export``.
        calibrate: called with the prepared graph module; runs representative data through it.
        dynamic_shapes: passed to :func:`torch.export.export`, e.g. ``({0: torch.export.Dim("batch")},)``
            for a graph that accepts any batch size (the default specialises to the example's shapes).

    Returns:
        The quantized ``torch.fx.GraphModule`` (run it as is, or ``torch.compile`` it
        to lower the quantize/dequantize pairs to integer kernels).

    Raises:
        RuntimeError: the PT2E flow is not available (install ``torchao``).
    """
    flows = _pt2e()
    if flows is None:
        raise RuntimeError(
            "the PT2E flow is not available: torch 2.13 moved it out of torch.ao.quantization into torchao; "
            "install torchao (pip install torchao) to use it"
        )
    flow, x86, quantizer_module = flows
    exported = torch.export.export(model, tuple(example_inputs), dynamic_shapes=dynamic_shapes).module()
    prepared = flow.prepare_pt2e(exported, _make_quantizer(x86, quantizer_module))
    with torch.no_grad():
        calibrate(prepared)
    return flow.convert_pt2e(prepared)
