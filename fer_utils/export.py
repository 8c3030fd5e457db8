"""Export a network to ONNX and run it with ONNX Runtime: the ``fer-export`` machinery.

- :func:`export_onnx` writes one ``.onnx`` file whose only output is the class logits
  (:func:`fer_utils.models.logits_of`: a model returning a named output is wrapped so that only its
  ``.logits`` are exported), with a dynamic batch dimension by default.
- :class:`OnnxModel` runs such a file on ONNX Runtime's CPU provider (one thread by default) and behaves
  like a torch module that returns logits: call it with tensors or numpy arrays, get a tensor back.
- :func:`quantize_dynamic_int8` writes the dynamically quantised copy (int8 weights, activations
  quantised on the fly) with ``onnxruntime.quantization.quantize_dynamic``. For the convolutional real
  models it is 2 to 3 times smaller but slower on CPU than the float file (ONNX Runtime's ``ConvInteger``;
  ``benchmarks/bench_export.py``): it is offered for size, not speed.
- :func:`parity` is the check: the largest absolute difference between the softmax probabilities of
  PyTorch (eval mode) and of ONNX Runtime on the same inputs.

Exporters. ``exporter="auto"`` (the default) uses PyTorch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``): it exports 13 of the 14 course networks, needs no package
beyond ``onnx``, and takes a fraction of a second per network. ABAWNet reshapes its ``(B, T, C, H, W)``
windows with sizes read from the input, which leaves that exporter without the spatial size at the
adaptive pooling ("input size not accessible"); ``auto`` then falls back to the ``torch.export``-based
exporter (``dynamo=True``, which needs ``onnxscript``), which handles it. The exporter used is stored in
the file's metadata (``fer_utils.exporter``; :attr:`OnnxModel.metadata`). A trace freezes any Python
value read from a tensor; :attr:`Exported.tracer_warnings` lists where (for the course networks: shape
checks and padding sizes of the fixed spatial dimensions), and :func:`parity` at other batch sizes is the
check that the graph still holds.

Opset :data:`DEFAULT_OPSET` (20): DeepEmotion's spatial transformer uses ``affine_grid``, which ONNX has
as ``AffineGrid`` from opset 20 on (ONNX Runtime >= 1.17 runs it).
"""
from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from fer_utils.explain import eval_mode
from fer_utils.models import logits_of

#: ONNX opset written by default (AffineGrid, needed by DeepEmotion, exists from opset 20).
DEFAULT_OPSET = 20
#: the lowest opset torch.onnx exports (its TorchScript exporter; the dynamo exporter raises lower ones to 18)
MIN_OPSET = 7
#: ``exporter`` values of :func:`export_onnx`.
EXPORTERS = ("auto", "torchscript", "dynamo")
#: Name of the one output of every exported file.
OUTPUT_NAME = "logits"

Array = Any  # a torch.Tensor or a numpy array


class ExportError(RuntimeError):
    """A network could not be exported; the message gives each exporter's reason."""


class LogitsOnly(nn.Module):
    """``model`` with its output reduced to the logits (``logits_of``), the graph that gets exported."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(*inputs))


@dataclass(frozen=True)
class Exported:
    """What :func:`export_onnx` wrote: the file, the exporter that succeeded, the opset the file declares, the
    input names.

    ``tracer_warnings``: the TorchScript tracer's warnings (a Python value read from a tensor, frozen into
    the graph as a constant); the graph is right only for inputs that give the same value. Parity on
    other inputs (other batch sizes, :func:`parity`) is the check.
    """

    path: Path
    exporter: str
    opset: int
    input_names: tuple[str, ...]
    tracer_warnings: tuple[str, ...] = ()

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def input_names(n: int) -> tuple[str, ...]:
    """``("input",)`` for one input, else ``("input0", "input1", ...)``."""
    return ("input",) if n == 1 else tuple(f"input{i}" for i in range(n))


def _as_tuple(example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError("example_inputs: expected a tensor or a sequence of tensors (batch first)")
    return inputs


def _batch_of_two(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A batch of 1 is repeated to 2: a size-1 dimension can be baked into the graph as a constant."""
    return tuple(torch.cat([x, x]) if x.shape[0] == 1 else x for x in inputs)


def _export_torchscript(wrapped: nn.Module, inputs: tuple, path: Path, names: tuple[str, ...],
                        dynamic_batch: bool, opset: int) -> list[str]:
    """The TorchScript exporter; returns its tracer warnings (a value the trace may have frozen)."""
    axes = {n: {0: "batch"} for n in (*names, OUTPUT_NAME)} if dynamic_batch else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")   # recorded, not shown: the exporter's deprecation, tracer warnings
        torch.onnx.export(wrapped, inputs, str(path), dynamo=False, input_names=list(names),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset)
    tracer = [f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0]}" for w in caught
              if issubclass(w.category, torch.jit.TracerWarning)]
    return list(dict.fromkeys(tracer))


def _export_dynamo(wrapped: nn.Module, inputs: tuple, path: Path, names: tuple[str, ...],
                   dynamic_batch: bool, opset: int) -> list[str]:
    """The torch.export-based exporter (needs onnxscript); data-dependent control flow fails here."""
    shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1)
        shapes = {"inputs": tuple({0: batch} for _ in inputs)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, inputs, str(path), dynamo=True, input_names=list(names),
                          output_names=[OUTPUT_NAME], dynamic_shapes=shapes, opset_version=opset,
                          external_data=False, verbose=False)
    return []


_EXPORT = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


def _stamp(path: Path, exporter: str, model: nn.Module) -> int:
    """Record the exporter and the source network in the file's metadata; returns the opset the file declares
    for the default ONNX domain (the dynamo exporter writes at least its own minimum, whatever was asked)."""
    import onnx

    proto = onnx.load(str(path))
    meta = {"fer_utils.exporter": exporter, "fer_utils.network": type(model).__name__,
            "fer_utils.torch": torch.__version__}
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _reason(err: BaseException) -> str:
    """The root cause of an exporter's error, one line (torch.export wraps it in a generic message)."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    return f"{type(err).__name__}: {(text.splitlines() or [''])[0][:300]}"


def export_onnx(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor], path: str | os.PathLike,
                dynamic_batch: bool = True, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Exported:
    """Write ``model``'s logits graph to ``path`` (one self-contained ``.onnx`` file).

    ``example_inputs``: one tensor or a sequence of tensors, batch first (a batch of 1 is repeated to 2
    so that the batch size is not fixed into the graph). ``dynamic_batch``: the batch dimension of every
    input and of the output is named ``batch`` and may take any size. The model is exported in eval mode
    and every submodule is left in the mode it came in (:func:`fer_utils.explain.eval_mode`). ``exporter``:
    ``auto`` (TorchScript, then ``torch.export`` if that fails), ``torchscript`` or ``dynamo``. Raises
    :class:`ExportError` with each exporter's reason, and ``TypeError`` (before exporting) when the model's output
    has no logits.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    inputs = _as_tuple(example_inputs)
    inputs = _batch_of_two(inputs) if dynamic_batch else inputs
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(len(inputs))
    order = ("torchscript", "dynamo") if exporter == "auto" else (exporter,)
    reasons: list[str] = []
    with eval_mode(model):
        wrapped = LogitsOnly(model).eval()
        with torch.no_grad():
            wrapped(*inputs)   # a TypeError here: the output has no logits (the output contract)
        for name in order:
            try:
                notes = _EXPORT[name](wrapped, inputs, path, names, dynamic_batch, opset)
            except Exception as err:  # noqa: BLE001 - every exporter failure is reported together below
                reasons.append(f"{name}: {_reason(err)}")
                continue
            written = _stamp(path, name, model)   # the opset in the file (dynamo raises a low one to its own)
            return Exported(path, name, written, names, tuple(notes))
    path.unlink(missing_ok=True)
    raise ExportError(f"{type(model).__name__} could not be exported to ONNX ({'; '.join(reasons)})")


class OnnxModel(nn.Module):
    """An exported file run by ONNX Runtime (CPU), used like the torch model: ``model(x) -> logits``.

    Inputs may be tensors or numpy arrays (converted to the dtype the file declares); the output is a
    float tensor of logits, so :func:`fer_utils.models.logits_of` and ``torch.softmax`` work on it as on
    the PyTorch model's. ``threads``: ONNX Runtime's intra-op threads (1 by default: small face batches
    gain nothing from more on a shared CPU). It has no parameters; ``eval()`` and ``to("cpu")`` are no-ops.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        super().__init__()
        import onnxruntime as ort

        if threads < 1:
            raise ValueError(f"threads {threads}: expected 1 or more")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self._dtypes = tuple(_numpy_dtype(i.type) for i in self.session.get_inputs())
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.eval()

    def run_numpy(self, *inputs: Array) -> np.ndarray:
        """The logits as a numpy array."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.path.name} takes {len(self.input_names)} inputs "
                             f"({', '.join(self.input_names)}), got {len(inputs)}")
        feed = {name: np.ascontiguousarray(_to_numpy(x), dtype=dtype)
                for name, x, dtype in zip(self.input_names, inputs, self._dtypes)}
        return self.session.run([OUTPUT_NAME], feed)[0]

    def forward(self, *inputs: Array) -> torch.Tensor:
        return torch.from_numpy(self.run_numpy(*inputs))

    def extra_repr(self) -> str:
        return f"{self.path.name}, inputs {', '.join(self.input_names)}"


def _numpy_dtype(onnx_type: str) -> np.dtype:
    """numpy dtype of an ONNX Runtime type string such as ``tensor(float)``."""
    table = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}
    if onnx_type not in table:
        raise TypeError(f"input type {onnx_type} is not supported by OnnxModel")
    return np.dtype(table[onnx_type])


def _to_numpy(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def quantize_dynamic_int8(path_in: str | os.PathLike, path_out: str | os.PathLike,
                          op_types: Sequence[str] | None = None) -> Path:
    """Dynamic int8 quantisation of an exported file: int8 weights, activations quantised at run time.

    ONNX Runtime's recommended pre-processing first (``quant_pre_process``: shape inference and graph
    optimisation, e.g. batch norms folded into the convolutions), then
    ``onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)`` on ``op_types`` (default: ``MatMul``,
    ``Gemm``, ``Conv``; the CPU provider runs int8-weight ``Conv`` as ``ConvInteger``). The float file is
    left as it is; returns ``path_out``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path_out = Path(path_out)
    path_out.parent.mkdir(parents=True, exist_ok=True)
    types = list(op_types) if op_types is not None else ["MatMul", "Gemm", "Conv"]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(path_in), str(prepared))
        quantize_dynamic(prepared, path_out, op_types_to_quantize=types, weight_type=QuantType.QInt8)
    return path_out


def probabilities(model: nn.Module, inputs: Sequence[Array]) -> np.ndarray:
    """Softmax of ``logits_of(model(*inputs))`` as float64 numpy, PyTorch in eval mode (afterwards every
    submodule back in its own mode, :func:`fer_utils.explain.eval_mode`)."""
    tensors = [x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)) for x in inputs]
    with eval_mode(model), torch.inference_mode():
        logits = logits_of(model(*tensors))
    return torch.softmax(logits.float(), dim=-1).double().numpy()


def parity(model: nn.Module, onnx_path: str | os.PathLike | OnnxModel,
           inputs: torch.Tensor | Sequence[Array]) -> float:
    """Largest absolute difference between PyTorch's (eval mode) and ONNX Runtime's softmax probabilities."""
    inputs = (inputs,) if isinstance(inputs, (torch.Tensor, np.ndarray)) else tuple(inputs)
    engine = onnx_path if isinstance(onnx_path, OnnxModel) else OnnxModel(onnx_path)
    reference = probabilities(model, inputs)
    got = torch.softmax(engine(*inputs).float(), dim=-1).double().numpy()
    if got.shape != reference.shape:
        raise ValueError(f"ONNX Runtime gave logits of shape {got.shape}, PyTorch {reference.shape}")
    return float(np.abs(reference - got).max())


def latency_ms(engine: nn.Module, inputs: torch.Tensor | Sequence[Array], repeats: int = 10,
               warmup: int = 2) -> dict[str, float]:
    """How long ``engine(*inputs)`` takes, in milliseconds: ``warmup`` untimed calls, then ``repeats`` timed ones.

    ``engine``: a PyTorch module (run in eval mode under ``torch.inference_mode``, afterwards every submodule back
    in its own mode) or an :class:`OnnxModel`. With the sorted times t_(1) <= ... <= t_(R) of the R = ``repeats``
    calls, returns ``median`` (t at rank (R+1)/2), ``p90`` (the 90th percentile, numpy's linear interpolation) and
    ``per_item`` = median / B for a batch of B. The median, not the mean: on a shared machine one call
    slowed by another process moves the mean a lot and the median little. Threads are the caller's
    (``torch.set_num_threads``; :class:`OnnxModel`'s ``threads``).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats {repeats} and warmup {warmup}: expected repeats >= 1 and warmup >= 0")
    inputs = (inputs,) if isinstance(inputs, (torch.Tensor, np.ndarray)) else tuple(inputs)
    batch = int(np.shape(inputs[0])[0])
    times = []
    with eval_mode(engine), torch.inference_mode():
        for k in range(warmup + repeats):
            start = time.perf_counter()
            engine(*inputs)
            if k >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    median = float(np.median(times))
    return {"median": median, "p90": float(np.percentile(times, 90)), "per_item": median / batch}
