"""Export a detector to TorchScript (traced) or ONNX, checked against eager PyTorch.

``tools/export_model.py`` is the command; this module is what it calls (and what the tests
call directly). See docs/export.md.

**What the exported model takes and returns** (both formats, one image per call)::

    input   image    float32 (3, H, W)   pixel values 0..255 in the model's input format
                                         (channel order: export.json "input_format"; BGR for
                                         every config of this repository), already resized as
                                         the test loader resizes (export.json input.resize);
                                         NOT normalised: subtracting pixel_mean, dividing by
                                         pixel_std and padding to the backbone's size
                                         divisibility happen inside. Any H, W >= 1.
    outputs boxes    float32 (N, 4)      XYXY, in the pixels of the input tensor
            scores   float32 (N,)        the model's final scores, descending
            classes  int64   (N,)        0-based index into export.json "class_names"

N is 0 to ``max_detections_per_image``. This is Detectron2's tracing contract
(``TracingAdapter`` over ``model([{"image": image}])``) with the ``Instances`` flattened to
three tensors; the steps :class:`~dsla_d2.serving.DslaPredictor` adds around the model
(BGR/RGB flip, resize, scaling the boxes back to the original image) are the caller's:
:func:`prepare_input` is that code.

**How.** TorchScript: ``torch.jit.trace`` of Detectron2's ``TracingAdapter`` (scripting
fails inside Detectron2's ResNet). ONNX: the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``; ``torch.export`` and the dynamo exporter stop at
a data-dependent guard in ``detectron2/layers/wrappers.py``), dynamic H and W, opset 11 by
default, 19 for models with deformable convolutions: ``torchvision::deform_conv2d`` is
written as ONNX ``DeformConv`` (opset 19), which onnxruntime's CPU provider runs. Before a
DCN model is exported to ONNX, a one-layer model is exported and run through onnxruntime;
if that runtime does not run ``DeformConv`` (or disagrees with torchvision), the export is
refused naming the deformable layers: there is no partial export.

**Dynamic sizes.** A trace records Python control flow of the sample image. One spot of
the meta-architecture would be baked: the per-level top-k, ``min(test_topk_candidates,
n)``, keeps whichever side the sample had (a level with fewer candidates than k at the
sample would keep that count at every size, one with more would ask for k candidates of a
smaller image and fail). The meta-architecture computes it with
``dsla_d2.meta_arch.base._topk_count``, a ``clamp`` recorded in the graph while tracing
(and fills its ``test_topk_mode="locations"`` mask with 1, which the tracer records, not
``True``, which it cannot). Every export is
then checked on the sample and on a second input of another height and width
(:func:`check_inputs`).

Running the files needs neither dsla_d2 nor Detectron2 (:data:`RUNTIMES`).

**The check.** :func:`compare` runs the exported file (``torch.jit.load`` /
onnxruntime) and eager PyTorch on the same inputs; :func:`export` raises
:class:`ExportParityError` when a detection count or class differs, or a box differs by
more than :data:`BOX_TOLERANCE` px or a score by more than :data:`SCORE_TOLERANCE`.
"""
import contextlib
import hashlib
import json
import os
import platform
import warnings
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .errors import UserInputError

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "BOX_TOLERANCE",
    "SCORE_TOLERANCE",
    "ONNX_DEFAULT_OPSET",
    "ONNX_DEFORM_CONV_OPSET",
    "ExportError",
    "ExportParityError",
    "ExportUnsupportedError",
    "load_predictor",
    "prepare_input",
    "sample_image",
    "check_inputs",
    "eager_outputs",
    "deformable_layers",
    "onnx_deform_conv_support",
    "onnx_opset",
    "export_torchscript",
    "export_onnx",
    "load_exported",
    "compare",
    "export",
]

FORMATS = ("torchscript", "onnx")
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "classes")
#: Largest difference, exported vs eager, that the check accepts: box coordinates (pixels)
#: and scores. Detection counts and classes must be equal.
BOX_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-4
#: What running the exported file needs (dsla_d2 and Detectron2 are not needed).
RUNTIMES = {
    "torchscript": "torch and torchvision's ops: import torchvision before torch.jit.load (the graph calls "
                   "torchvision::nms, and torchvision::deform_conv2d for deformable convolutions)",
    "onnx": "an ONNX runtime for the opset (onnxruntime), with DeformConv for deformable convolutions",
}
ONNX_MIN_OPSET = 11
ONNX_DEFAULT_OPSET = 11
#: The first opset with ``DeformConv``.
ONNX_DEFORM_CONV_OPSET = 19


class ExportError(UserInputError):
    """An export that cannot be done or did not check out (the tools exit with status 2)."""


class ExportParityError(ExportError, ValueError):
    """The exported model's detections differ from eager PyTorch's beyond the tolerances."""


class ExportUnsupportedError(ExportError, ValueError):
    """The model, or this format on this installation, cannot be exported faithfully."""


# --------------------------------------------------------------------------- loading
def load_predictor(config_file: Optional[str] = None, weights: Optional[str] = None, output_dir: Optional[str] = None,
                   opts: Sequence[str] = (), allowed_targets: Sequence[str] = (),
                   check_overrides: Optional[Callable] = None):
    """A :class:`~dsla_d2.serving.DslaPredictor` on the CPU, loaded as serving loads it (the
    same trust checks: plain-data ``config.yaml``, model parts only, the weights must be the
    configured model's). ``config_file`` + ``weights``, or ``output_dir`` (a
    ``train_net.py`` run: its ``config.yaml`` and final or last checkpoint). ``opts``:
    ``key=value`` overrides of the config, passed through ``check_overrides(cfg, opts)``
    first if given (the tool passes ``train_net.check_overrides``).

    Returns ``(predictor, source)``, ``source`` naming the config and weights files."""
    from detectron2.config import LazyConfig

    from .serving import find_weights, predictor_from_config
    from .engine.checkpoint import CheckpointNotFoundError
    from .utils.trust import load_config

    if output_dir is not None:
        config_file = os.path.join(output_dir, "config.yaml")
        if not os.path.isfile(config_file):
            raise CheckpointNotFoundError(f"{config_file} not found: is {output_dir} a train_net.py output directory?")
        cfg = load_config(config_file, trust_python=False)
        weights = find_weights(output_dir)
    else:
        if not config_file or not weights:
            raise ExportError("give --config-file and --weights, or --output-dir")
        for what, path in (("config", config_file), ("weights", weights)):
            if not os.path.isfile(path):
                raise ExportError(f"{what} file not found: {path}")
        cfg = load_config(config_file)
    if opts:
        opts = list(opts) if check_overrides is None else check_overrides(cfg, list(opts))
        cfg = LazyConfig.apply_overrides(cfg, opts)
    predictor = predictor_from_config(cfg, weights, device="cpu", allowed_targets=allowed_targets)
    source = {"config": os.path.abspath(config_file), "weights": os.path.abspath(weights), "overrides": list(opts)}
    return predictor, source


def prepare_input(predictor, image: np.ndarray) -> Tensor:
    """The exported model's input for an image, exactly as ``DefaultPredictor`` prepares
    it: :func:`~dsla_d2.serving.as_bgr_uint8`, RGB flip if the model takes RGB, the test
    resize, float32 (3, H, W)."""
    from .serving import as_bgr_uint8

    image = as_bgr_uint8(image)
    if predictor.input_format == "RGB":
        image = image[:, :, ::-1]
    image = predictor.aug.get_transform(image).apply_image(image)
    return torch.as_tensor(image.astype("float32").transpose(2, 0, 1))


def sample_image(path: Optional[str] = None) -> np.ndarray:
    """BGR uint8 (H, W, 3): the file at ``path`` (read as the demo reads images), or a
    generated image of the embedded dataset's kind with 6 to 10 objects (deterministic)."""
    if path is not None:
        from .data import read_image_checked

        return read_image_checked(path, format="BGR")
    from .data.synthetic import render_synthetic_image

    return render_synthetic_image("export", 0, 0, num_objects_range=(6, 10))[0]


def check_inputs(image: Tensor) -> List[Tensor]:
    """The inputs the export is checked on: ``image`` (the traced sample) and its top-left
    crop to about 3/4 of the height and 5/6 of the width (another H and W, same content)."""
    h, w = image.shape[-2:]
    return [image, image[:, : max(1, (3 * h) // 4), : max(1, (5 * w) // 6)].contiguous()]


# --------------------------------------------------------------------------- tracing
def _inference(model: nn.Module, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    instances = model([{"image": image}])[0]["instances"]
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def eager_outputs(model: nn.Module, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(boxes, scores, classes) of the eager model: what the exported one must return."""
    with torch.no_grad():
        return _inference(model, image)


@contextlib.contextmanager
def _quiet_export():
    """Silence what tracing says about Python values it records as constants (the check
    that follows every export is what tells whether the trace is right) and the
    exporters' own deprecation notices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*(torch\.jit\.trace|torch\.jit\.script|dynamo=False|TorchScript-based).*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def _adapter(model: nn.Module, image: Tensor):
    from detectron2.export import TracingAdapter

    # eval, like the model: torch.onnx.export puts a module that was training back into
    # training mode afterwards, and with it the model the adapter holds
    return TracingAdapter(model, image, inference_func=_inference).eval()


def export_torchscript(model: nn.Module, image: Tensor, path: str):
    """Trace ``model`` on ``image`` and save the TorchScript module to ``path``."""
    model.eval()
    adapter = _adapter(model, image)
    # saved without requires_grad, so that its outputs need no torch.no_grad(); the traced
    # module shares the model's parameters, whose flags are restored
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with _quiet_export():
            traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
        traced.save(path)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return traced


# --------------------------------------------------------------------------- deformable convs
def deformable_layers(model: nn.Module, image: Tensor) -> List[str]:
    """Names of the modules of ``model`` that call ``torchvision::deform_conv2d`` (found
    by running the model on ``image``), e.g. ``head.cls_tower.0``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    stack: List[str] = []
    found: List[str] = []

    class _Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "torchvision" and "deform_conv2d" in func.name():
                name = stack[-1] if stack else "(the model itself)"
                if name not in found:
                    found.append(name)
            return func(*args, **(kwargs or {}))

    def enter(name):
        def hook(module, args):
            stack.append(name)

        return hook

    def leave(module, args, output):
        stack.pop()

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad(), _Watch():
            _inference(model, image)
    finally:
        for h in handles:
            h.remove()
    return found


def _deform_conv2d_symbolic(g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                            dilation_h, dilation_w, groups, offset_groups, use_mask):
    """``torchvision::deform_conv2d`` as ONNX ``DeformConv`` (opset 19): the same inputs
    (offsets in torchvision's interleaved (dy, dx) layout, which is ONNX's), bias always
    given (torchvision passes zeros when there is none), the mask only for DCNv2."""
    from torch.onnx import symbolic_helper

    kernel = symbolic_helper._get_tensor_sizes(weight)[2:]
    if kernel is None or any(k is None for k in kernel):
        raise ExportUnsupportedError("deform_conv2d with a weight of unknown kernel size cannot be written as DeformConv")
    inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op(
        "DeformConv", *inputs,
        dilations_i=[dilation_h, dilation_w], group_i=groups, offset_group_i=offset_groups,
        kernel_shape_i=list(kernel), pads_i=[pad_h, pad_w, pad_h, pad_w], strides_i=[stride_h, stride_w],
    )


@contextlib.contextmanager
def _deform_conv_symbolic(opset: int):
    from torch.onnx import register_custom_op_symbolic, symbolic_helper, unregister_custom_op_symbolic

    fn = symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")(
        _deform_conv2d_symbolic
    )
    register_custom_op_symbolic("torchvision::deform_conv2d", fn, opset)
    try:
        yield
    finally:
        unregister_custom_op_symbolic("torchvision::deform_conv2d", opset)


class _DeformProbe(nn.Module):
    """A DCNv1 and a DCNv2 3x3 layer and DW's grouped 1x1 sampling: what our models use."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w3 = nn.Parameter(torch.randn(3, 4, 3, 3, generator=g))
        self.b3 = nn.Parameter(torch.randn(3, generator=g))
        self.w1 = nn.Parameter(torch.ones(4, 1, 1, 1))

    def forward(self, x, offset, mask, shifts):
        from torchvision.ops import deform_conv2d

        v1 = deform_conv2d(x, offset, self.w3, self.b3, padding=(1, 1))
        v2 = deform_conv2d(x, offset, self.w3, self.b3, padding=(1, 1), mask=mask)
        grouped = deform_conv2d(x, shifts, self.w1)
        return v1, v2, grouped


@lru_cache(maxsize=None)
def onnx_deform_conv_support(opset: int = ONNX_DEFORM_CONV_OPSET) -> Tuple[bool, str]:
    """Whether torchvision's ``deform_conv2d`` survives the trip to ONNX ``DeformConv``
    and back through this onnxruntime (CPU): (True, "") or (False, why)."""
    import io

    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed"
    g = torch.Generator().manual_seed(1)
    inputs = (
        torch.rand(1, 4, 7, 9, generator=g),
        (torch.rand(1, 18, 7, 9, generator=g) - 0.5) * 4,
        torch.rand(1, 9, 7, 9, generator=g),
        (torch.rand(1, 8, 7, 9, generator=g) - 0.5) * 4,
    )
    probe = _DeformProbe().eval()
    buffer = io.BytesIO()
    try:
        with _quiet_export(), _deform_conv_symbolic(opset):
            torch.onnx.export(probe, inputs, buffer, dynamo=False, opset_version=opset,
                              input_names=["x", "offset", "mask", "shifts"], external_data=False)
        session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(["x", "offset", "mask", "shifts"], inputs)})
    except Exception as e:  # noqa: BLE001 (the reason is reported)
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    with torch.no_grad():
        want = probe(*inputs)
    diff = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(got, want))
    if diff > 1e-4:
        return False, f"onnxruntime's DeformConv differs from torchvision's deform_conv2d by {diff:.2g}"
    return True, ""


# --------------------------------------------------------------------------- ONNX
def onnx_opset(deformable: Sequence[str], opset: Optional[int] = None) -> int:
    """The opset to export with (``opset``, or the default: 11, 19 with deformable
    convolutions), after checking that it can hold the model: :class:`ExportError` for an
    opset out of range, :class:`ExportUnsupportedError` naming the ``deformable`` layers
    when ONNX ``DeformConv`` is out of reach (opset < 19, or an onnxruntime that does not
    run it: :func:`onnx_deform_conv_support`)."""
    if opset is None:
        opset = ONNX_DEFORM_CONV_OPSET if deformable else ONNX_DEFAULT_OPSET
    if opset < ONNX_MIN_OPSET:
        raise ExportError(f"--opset {opset}: the export needs opset {ONNX_MIN_OPSET} or later")
    max_opset = getattr(getattr(torch.onnx, "_constants", None), "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None)
    if max_opset is not None and opset > max_opset:
        raise ExportError(f"--opset {opset}: torch {torch.__version__}'s TorchScript-based ONNX exporter writes opsets up to {max_opset}")
    if deformable:
        layers = ", ".join(deformable)
        if opset < ONNX_DEFORM_CONV_OPSET:
            raise ExportUnsupportedError(
                f"ONNX export refused: the model has deformable convolutions ({layers}) and ONNX has DeformConv "
                f"from opset {ONNX_DEFORM_CONV_OPSET} on: use --opset {ONNX_DEFORM_CONV_OPSET}, or --format torchscript"
            )
        ok, why = onnx_deform_conv_support(opset)
        if not ok:
            raise ExportUnsupportedError(
                f"ONNX export refused: the model has deformable convolutions ({layers}) and "
                f"torchvision::deform_conv2d -> ONNX DeformConv does not run on this onnxruntime ({why}). "
                "Nothing was written. Export it with --format torchscript, which supports them."
            )
    return opset


def export_onnx(model: nn.Module, image: Tensor, path: str, opset: Optional[int] = None,
                deformable: Optional[Sequence[str]] = None) -> int:
    """Export ``model`` (traced on ``image``) to ONNX at ``path``, dynamic H and W; returns
    the opset used (:func:`onnx_opset`, which refuses what ONNX or onnxruntime cannot hold)."""
    model.eval()
    if deformable is None:
        deformable = deformable_layers(model, image)
    opset = onnx_opset(deformable, opset)
    symbolic = _deform_conv_symbolic(opset) if deformable else contextlib.nullcontext()
    adapter = _adapter(model, image)
    axes = {INPUT_NAME: {1: "height", 2: "width"}, **{n: {0: "detections"} for n in OUTPUT_NAMES}}
    with _quiet_export(), symbolic:
        torch.onnx.export(
            adapter, adapter.flattened_inputs, path, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=axes, external_data=False,
        )
    return opset


# --------------------------------------------------------------------------- checking
def load_exported(fmt: str, path: str) -> Callable[[Tensor], Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A function image -> (boxes, scores, classes) as numpy arrays, running the file at
    ``path`` as a user would: ``torch.jit.load`` or an onnxruntime CPU session."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
            module = torch.jit.load(path, map_location="cpu")

        def run(image):
            with torch.no_grad():
                return tuple(t.numpy() for t in module(image))

        return run
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("checking an ONNX export needs onnxruntime: pip install onnxruntime (or '.[test]')") from None
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

        def run(image):
            return tuple(session.run(list(OUTPUT_NAMES), {INPUT_NAME: image.numpy()}))

        return run
    raise ExportError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def compare(model: nn.Module, run: Callable, inputs: Sequence[Tensor]) -> List[Dict[str, Any]]:
    """Eager vs exported on each input: size, detection counts, largest box and score
    differences (None without detections to compare), whether the classes agree, ``ok``."""
    rows = []
    for image in inputs:
        eager = [t.numpy() for t in eager_outputs(model, image)]
        got = run(image)
        n_e, n_x = len(eager[0]), len(got[0])
        same = n_e == n_x
        box = float(np.abs(eager[0] - got[0]).max()) if same and n_e else None
        score = float(np.abs(eager[1] - got[1]).max()) if same and n_e else None
        classes = bool(same and np.array_equal(eager[2].astype(np.int64), got[2].astype(np.int64)))
        ok = same and classes and (box is None or box <= BOX_TOLERANCE) and (score is None or score <= SCORE_TOLERANCE)
        first = None
        if not ok:
            first = _first_difference(eager, got)
        rows.append({
            "size": [int(image.shape[1]), int(image.shape[2])],
            "detections_eager": n_e,
            "detections_exported": n_x,
            "max_box_diff": box,
            "max_score_diff": score,
            "classes_equal": classes,
            "ok": bool(ok),
            **({"first_difference": first} if first is not None else {}),
        })
    return rows


def _first_difference(eager, got) -> Dict[str, Any]:
    """Index of the first detection (in score order) that differs, with both scores."""
    n = min(len(eager[0]), len(got[0]))
    for i in range(n):
        if (int(eager[2][i]) != int(got[2][i]) or np.abs(eager[0][i] - got[0][i]).max() > BOX_TOLERANCE
                or abs(float(eager[1][i]) - float(got[1][i])) > SCORE_TOLERANCE):
            break
    else:
        i = n
    score = lambda out: float(out[1][i]) if i < len(out[1]) else None  # noqa: E731
    return {"index": i, "eager_score": score(eager), "exported_score": score(got)}


def _describe_failure(fmt: str, rows: List[Dict[str, Any]]) -> str:
    bad = []
    for r in rows:
        if r["ok"]:
            continue
        size = "x".join(map(str, r["size"]))
        if r["detections_eager"] != r["detections_exported"]:
            bad.append(f"{size}: {r['detections_exported']} detections vs {r['detections_eager']} eager")
        elif not r["classes_equal"]:
            bad.append(f"{size}: classes differ")
        else:
            bad.append(f"{size}: max box diff {r['max_box_diff']:.3g} px (limit {BOX_TOLERANCE:g}), "
                       f"max score diff {r['max_score_diff']:.3g} (limit {SCORE_TOLERANCE:g})")
        first = r.get("first_difference")
        if first and first["eager_score"] is not None and first["exported_score"] is not None:
            bad[-1] += (f" (first at detection {first['index']}: score {first['eager_score']:.6g} eager, "
                        f"{first['exported_score']:.6g} exported)")
    return f"the {fmt} export differs from eager PyTorch: " + "; ".join(bad)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions(fmt: str) -> Dict[str, str]:
    import torchvision

    import detectron2

    v = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
         "detectron2": detectron2.__version__}
    if fmt == "onnx":
        import onnxruntime

        v["onnxruntime"] = onnxruntime.__version__
    return v


def export(model: nn.Module, fmt: str, output_dir: str, image: Tensor, *, inputs: Optional[Sequence[Tensor]] = None,
           opset: Optional[int] = None, class_names: Sequence[str] = (), resize: Optional[Dict[str, int]] = None,
           source: Optional[Dict[str, Any]] = None, sample: str = "") -> Dict[str, Any]:
    """Export ``model`` (eval, on the CPU) traced on ``image`` (the model's input: see the
    module docstring) to ``output_dir``/model.ts or model.onnx, check it against eager on
    ``inputs`` (default :func:`check_inputs`), and write ``output_dir``/export.json.

    Returns the export.json content. Raises :class:`ExportParityError` if the check fails
    (the exported file is deleted; export.json keeps the numbers, ``"check": {"ok":
    false}``), :class:`ExportUnsupportedError` (nothing written) if the format cannot hold
    the model."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    model = model.eval()
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.float32:
        raise ExportError(f"the sample input must be a float32 (3, H, W) tensor; got {image.dtype} {tuple(image.shape)}")
    inputs = list(inputs) if inputs is not None else check_inputs(image)
    deformable = deformable_layers(model, image)
    extra: Dict[str, Any] = {}
    if fmt == "onnx":
        extra["opset"] = onnx_opset(deformable, opset)  # refusals before anything is written
    elif opset is not None:
        raise ExportError("--opset is for --format onnx")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FILE_NAMES[fmt])
    if fmt == "onnx":
        export_onnx(model, image, path, opset=extra["opset"], deformable=deformable)
    else:
        export_torchscript(model, image, path)
    rows = compare(model, load_exported(fmt, path), inputs)
    ok = all(r["ok"] for r in rows)
    compared = [r for r in rows if r["max_box_diff"] is not None]
    digest = _sha256(path)
    if not ok:
        os.remove(path)  # not a usable export: export.json keeps the numbers
    info = {
        "format": fmt,
        "file": os.path.basename(path) if ok else None,
        "file_sha256": digest if ok else None,
        **extra,
        "input": {
            "name": INPUT_NAME,
            "shape": [3, "H", "W"],
            "dtype": "float32",
            "layout": "CHW, one image",
            "values": "0..255 pixel values, not normalised (pixel_mean/pixel_std are applied inside)",
            "channel_order": getattr(model, "input_format", "BGR"),
            "resize": resize,
            "dynamic": ["H", "W"],
        },
        "outputs": [
            {"name": "boxes", "shape": ["N", 4], "dtype": "float32", "meaning": "XYXY in the input tensor's pixels"},
            {"name": "scores", "shape": ["N"], "dtype": "float32", "meaning": "final scores, descending"},
            {"name": "classes", "shape": ["N"], "dtype": "int64", "meaning": "0-based index into class_names"},
        ],
        "runtime": RUNTIMES[fmt],
        "max_detections": int(getattr(model, "max_detections_per_image", 0)) or None,
        "score_threshold": getattr(model, "test_score_thresh", None),
        "class_names": list(class_names),
        "input_format": getattr(model, "input_format", "BGR"),
        "pixel_mean": [round(float(v), 4) for v in model.pixel_mean.flatten()],
        "pixel_std": [round(float(v), 4) for v in model.pixel_std.flatten()],
        "deformable_layers": deformable,
        "check": {
            "ok": ok,
            "sample": sample,
            "box_tolerance": BOX_TOLERANCE,
            "score_tolerance": SCORE_TOLERANCE,
            "max_box_diff": max((r["max_box_diff"] for r in compared), default=None),
            "max_score_diff": max((r["max_score_diff"] for r in compared), default=None),
            "inputs": rows,
        },
        "source": _source_info(source),
        "versions": _versions(fmt),
    }
    with open(os.path.join(output_dir, "export.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    if not ok:
        raise ExportParityError(_describe_failure(fmt, rows) + f"; {os.path.basename(path)} was not kept")
    return info


def _source_info(source: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not source:
        return None
    out = dict(source)
    for key in ("config", "weights"):
        if out.get(key) and os.path.isfile(out[key]):
            out[f"{key}_sha256"] = _sha256(out[key])
    return out
