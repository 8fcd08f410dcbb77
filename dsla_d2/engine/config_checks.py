"""Config values checked at start-up, before the model or data are built.

Overrides are parsed by Hydra's grammar, so ``train.max_iter=abc`` arrives as the string
``'abc'`` and ``train.max_iter=-5`` as a number that Detectron2 would accept (``range(0,
-5)`` is empty: the run "finishes" at once and writes an untrained model_final.pth).
:func:`validate_config` rejects such values with the key, the value and the rule.
Integer keys refuse floats and booleans (``train.max_iter=1e3`` is a float: write 1000).

Besides the training numbers (:data:`RULES`), it checks what would otherwise fail late
with an error that names no key:

* the inference settings of the dense detectors (``model.test_score_thresh``,
  ``model.test_nms_thresh``, ``model.test_topk_candidates``, ``model.test_topk_mode``, ``model.test_topk_rank``, ``model.test_box_clip``,
  ``model.max_detections_per_image``: the arguments of
  :class:`dsla_d2.meta_arch.AssignedDenseDetector`) and the head's sizes
  (``model.head.in_channels``, ``channels``, ``num_convs``, ``num_levels``,
  ``num_classes``, ``prior_prob``), plus the head keys that must agree with each other
  (:func:`check_head_agrees`);
* ``train.device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, and ``"mps"`` only where this
  torch build can use it (``torch.backends.mps.is_available()``; train_net.py falls back
  from CUDA to the CPU, not from MPS, so an unusable ``mps`` is refused here);
* ``train.init_checkpoint``: a local path must be a file that looks like a whole checkpoint
  (:func:`check_checkpoint_file`, which reads bytes and never unpickles); URLs
  (``detectron2://...``, ``https://...``) are left to Detectron2.

Keys absent from a config are skipped unless a rule says ``required``.
"""
import math
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from omegaconf import OmegaConf

from ..errors import UserInputError
from ..meta_arch.base import BOX_CLIPS, TOPK_MODES, TOPK_RANKS

__all__ = [
    "ConfigValueError",
    "Rule",
    "RULES",
    "validate_config",
    "check_checkpoint_file",
    "check_head_agrees",
    "frozen_parts",
    "check_initial_weights",
]

_MISSING = object()


class ConfigValueError(UserInputError, ValueError):
    """A config value that train_net.py cannot run with; the message names the key."""


class _Refused(Exception):
    """Raised by a check that explains itself: the value is invalid because of ``reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(minimum: int) -> Callable:
    def check(v):
        return _is_int(v) and v >= minimum

    check.describe = f"an integer >= {minimum}"
    return check


def any_int(v) -> bool:
    return _is_int(v)


any_int.describe = "an integer"


def number_at_least(minimum: float, strict: bool = False) -> Callable:
    def check(v):
        return _is_number(v) and (v > minimum if strict else v >= minimum)

    check.describe = f"a finite number {'>' if strict else '>='} {minimum}"
    return check


def number_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable:
    """A finite number in the interval [low, high], ends open as asked: ``(0, 1]`` etc."""

    def check(v):
        return (
            _is_number(v)
            and (v > low if low_open else v >= low)
            and (v < high if high_open else v <= high)
        )

    check.describe = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return check


def one_of(choices: Sequence[str]) -> Callable:
    def check(v):
        return isinstance(v, str) and v in choices

    check.describe = "one of " + ", ".join(repr(c) for c in choices)
    return check


def optional(check: Callable) -> Callable:
    def wrapped(v):
        return v is None or check(v)

    wrapped.describe = f"None or {check.describe}"
    return wrapped


def non_empty_str(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


non_empty_str.describe = "a non-empty string"


# --------------------------------------------------------------------------- device
_CUDA_DEVICE = re.compile(r"cuda:[0-9]+")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def allowed_devices() -> List[str]:
    """The values ``train.device`` may take on this machine's torch build."""
    return ["cpu", "cuda", "cuda:N"] + (["mps"] if _mps_available() else [])


def device(v) -> bool:
    if isinstance(v, str) and (v in ("cpu", "cuda") or _CUDA_DEVICE.fullmatch(v) or (v == "mps" and _mps_available())):
        return True
    allowed = ", ".join(repr(d) for d in allowed_devices())
    note = " (N an integer >= 0, the GPU's index)"
    if v == "mps":
        note += "; 'mps' only where torch.backends.mps.is_available(), which it is not here"
    raise _Refused(f"expected one of {allowed}{note}")


device.describe = "'cpu', 'cuda' or 'cuda:N' (N an integer >= 0), or 'mps' where torch can use it"


# --------------------------------------------------------------------------- checkpoints
PICKLE_STOP = b"."  # the last opcode of every complete pickle
# torch.save's legacy (pre-zip, ``_use_new_zipfile_serialization=False``) files begin with a
# pickle of this magic number, pickled as LONG1 (opcode 0x8a, 10 bytes).
_TORCH_LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def _is_url(path: str) -> bool:
    return "://" in path


def _torch_zip_problem(path: str) -> Optional[str]:
    """None if ``path`` opens as torch.save's zip archive (its central directory reads and
    it holds ``<name>/data.pkl``), else why not (a clause)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as e:
        return f"its zip directory cannot be read ({e})"
    if not any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
        return "it is a zip archive, but holds no */data.pkl"
    return None


def _checkpoint_problem(path: str) -> Optional[str]:
    """Why the local file ``path`` is not a readable checkpoint, or None. Reads bytes only."""
    if not os.path.exists(path):
        where = "" if os.path.isabs(path) else f" (relative to the working directory {os.getcwd()})"
        return (
            f"checkpoint file not found: {path}{where}; expected '' (no checkpoint), a URL "
            "(detectron2://..., https://...) or the path of an existing checkpoint file"
        )
    if os.path.isdir(path):
        return f"{path} is a directory, not a checkpoint file (e.g. {os.path.join(path, 'model_final.pth')})"
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(32)
            f.seek(max(size - 1, 0))
            last = f.read(1)
    except OSError as e:
        return f"the checkpoint file cannot be read: {e.strerror or e}"
    unreadable = "not a readable checkpoint (truncated or not a checkpoint)"
    again = "; copy or download it again, or set another checkpoint"
    if size == 0:
        return f"{unreadable}: the file is empty{again}"
    legacy = head.startswith(b"\x80") and _TORCH_LEGACY_MAGIC in head
    complete_pickle = last == PICKLE_STOP
    if path.endswith(".pkl"):  # Detectron2 reads *.pkl (case-sensitive) with pickle, else torch.load
        if complete_pickle:
            return None
        return (
            f"{unreadable}: a .pkl checkpoint is a pickle, which ends with the STOP byte b'.', "
            f"and this one ends with {last!r} ({size} bytes){again}"
        )
    zip_problem = _torch_zip_problem(path)
    if zip_problem is None or legacy:
        return None
    if path.endswith((".pth", ".pt")):
        return f"{unreadable}: a .pth/.pt file written by torch.save is a zip archive, and {zip_problem}{again}"
    if complete_pickle:
        return None
    return (
        f"{unreadable}: neither torch.save's zip archive ({zip_problem}) nor a complete pickle "
        f"(it ends with {last!r}, not the STOP byte b'.'){again}"
    )


def check_checkpoint_file(path, key: str = "train.init_checkpoint") -> None:
    """Raise :class:`ConfigValueError` naming ``key`` unless the local file ``path`` looks
    like a whole checkpoint. Nothing is unpickled or loaded; only bytes are read.

    * a URL (``detectron2://...``, ``http(s)://...``: anything with ``://``) is not
      checked: Detectron2's PathManager fetches it;
    * the file must exist, be a file and be readable;
    * ``*.pth`` / ``*.pt`` (``torch.load``): torch.save's zip format must open as a zip
      archive whose central directory reads and that holds ``<name>/data.pkl``. The
      central directory is the file's last bytes, so a truncated file (an interrupted copy
      or download) fails. Files of torch's legacy format (before the zip format) are
      recognised by their leading magic number and accepted; truncation of those is not
      detected here.
    * ``*.pkl`` (Detectron2 / Caffe2 model-zoo pickles, read with ``pickle``): the file
      must be non-empty and end with the pickle STOP opcode ``b"."``. This is a heuristic:
      a pickle truncated at an arbitrary byte almost never ends with ``b"."`` (a cut
      through raw array bytes does about one time in 256), and a file that is no pickle
      but happens to end with ``b"."`` passes.
    * any other name: accepted if it is torch.save's zip archive (or legacy format) or ends
      with ``b"."``; refused otherwise.

    Args:
        path: the path as configured (str or os.PathLike).
        key: the config key (or other name) to show in the message.
    """
    path = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(path, str) or path == "":
        raise ConfigValueError(f"{key}={path!r} is invalid: expected the path of a checkpoint file")
    if _is_url(path):
        return
    problem = _checkpoint_problem(path)
    if problem:
        raise ConfigValueError(f"{key}={path!r} is invalid: {problem}")


def checkpoint_setting(v) -> bool:
    """``train.init_checkpoint``: '' or None (no checkpoint), a URL, or a readable file."""
    if v is None or v == "":
        return True
    if not isinstance(v, str):
        return False
    if _is_url(v):
        return True
    problem = _checkpoint_problem(v)
    if problem:
        raise _Refused(problem)
    return True


checkpoint_setting.describe = (
    "'' (no checkpoint), a URL (detectron2://..., https://...) or the path of a checkpoint file"
)


@dataclass(frozen=True)
class Rule:
    key: str
    check: Callable
    required: bool = False


RULES: List[Rule] = [
    Rule("train.max_iter", int_at_least(1), required=True),
    Rule("train.output_dir", non_empty_str, required=True),
    Rule("train.checkpointer.period", int_at_least(1), required=True),
    Rule("train.checkpointer.max_to_keep", optional(int_at_least(1))),
    Rule("train.eval_period", int_at_least(0)),
    Rule("train.log_period", int_at_least(1)),
    Rule("train.seed", any_int),
    Rule("train.clip_grad_norm", number_at_least(0.0)),
    Rule("train.device", device),
    Rule("dataloader.train.total_batch_size", int_at_least(1)),
    Rule("dataloader.train.num_workers", int_at_least(0)),
    Rule("dataloader.test.num_workers", int_at_least(0)),
    Rule("optimizer.lr", number_at_least(0.0, strict=True)),
    Rule("model.num_classes", int_at_least(1)),
    # inference (AssignedDenseDetector's arguments)
    Rule("model.test_score_thresh", number_in(0.0, 1.0)),
    Rule("model.test_nms_thresh", number_in(0.0, 1.0, low_open=True)),
    Rule("model.test_topk_candidates", int_at_least(1)),
    Rule("model.test_topk_mode", one_of(TOPK_MODES)),
    Rule("model.test_topk_rank", one_of(TOPK_RANKS)),
    Rule("model.test_box_clip", one_of(BOX_CLIPS)),
    Rule("model.test_min_box_size", optional(number_at_least(0.0))),
    Rule("model.max_detections_per_image", int_at_least(1)),
    # the dense head (TowerHead's arguments)
    Rule("model.head.in_channels", int_at_least(1)),
    Rule("model.head.num_classes", int_at_least(1)),
    Rule("model.head.num_levels", int_at_least(1)),
    Rule("model.head.channels", int_at_least(1)),
    Rule("model.head.num_convs", int_at_least(0)),
    Rule("model.head.prior_prob", number_in(0.0, 1.0, low_open=True, high_open=True)),
    # last: reads the file
    Rule("train.init_checkpoint", checkpoint_setting),
]

GN_GROUPS = 32  # Detectron2's get_norm("GN", C) is GroupNorm(32, C)


def _select(cfg, key):
    try:
        return OmegaConf.select(cfg, key, default=_MISSING)
    except Exception as e:  # an interpolation that does not resolve
        raise ConfigValueError(f"config key {key} cannot be read: {e}") from e


def check_head_agrees(cfg) -> None:
    """Head keys that must agree with each other (run after :data:`RULES`, so each value
    on its own is valid; keys absent from ``cfg`` are skipped):

    * ``model.head.channels`` divisible by 32 with ``model.head.norm="GN"``;
    * ``model.head.num_convs=0`` (no tower convs) needs ``channels == in_channels``: the
      output convs then read the input features directly;
    * ``model.head.num_levels`` equal to the number of ``model.head_in_features``.

    Values of the wrong type are left to the rules (nothing is compared).
    """
    channels = _select(cfg, "model.head.channels")
    norm = _select(cfg, "model.head.norm")
    if _is_int(channels) and norm == "GN" and channels % GN_GROUPS != 0:
        raise ConfigValueError(
            f"model.head.channels={channels} is invalid with model.head.norm='GN': GroupNorm splits the "
            f"channels into {GN_GROUPS} groups, so channels must be a multiple of {GN_GROUPS} (or set another norm)"
        )
    num_convs = _select(cfg, "model.head.num_convs")
    in_channels = _select(cfg, "model.head.in_channels")
    if _is_int(num_convs) and num_convs == 0 and _is_int(channels) and _is_int(in_channels) and channels != in_channels:
        raise ConfigValueError(
            f"model.head.num_convs=0 is invalid with model.head.in_channels={in_channels} and "
            f"model.head.channels={channels}: without tower convs the output convs read the "
            "input features, so channels must equal in_channels"
        )
    num_levels = _select(cfg, "model.head.num_levels")
    features = _select(cfg, "model.head_in_features")
    if _is_int(num_levels) and (OmegaConf.is_list(features) or isinstance(features, (list, tuple))):
        features = list(features)
        if num_levels != len(features):
            raise ConfigValueError(
                f"model.head.num_levels={num_levels} is invalid: model.head_in_features={features} "
                f"gives the head {len(features)} levels"
            )


def validate_config(cfg, world_size: int = 1, rules: Optional[List[Rule]] = None) -> None:
    """Raise :class:`ConfigValueError` for the first value in ``cfg`` that breaks a rule.

    Args:
        cfg: the lazy config (after command-line overrides).
        world_size: number of training processes; the total batch size must divide.
        rules: defaults to :data:`RULES`. Keys absent from ``cfg`` are skipped unless the
            rule says ``required``. The head keys are then checked against each other
            (:func:`check_head_agrees`), and the batch size against ``world_size``.
    """
    for rule in RULES if rules is None else rules:
        value = _select(cfg, rule.key)
        if value is _MISSING:
            if rule.required:
                raise ConfigValueError(f"config key {rule.key} is missing: train_net.py needs {rule.check.describe}")
            continue
        try:
            ok = rule.check(value)
        except _Refused as e:
            raise ConfigValueError(f"{rule.key}={value!r} is invalid: {e.reason}") from None
        if not ok:
            raise ConfigValueError(f"{rule.key}={value!r} is invalid: expected {rule.check.describe}")
    check_head_agrees(cfg)
    batch = _select(cfg, "dataloader.train.total_batch_size")
    if batch is not _MISSING and batch % world_size != 0:
        raise ConfigValueError(
            f"dataloader.train.total_batch_size={batch} is invalid: it must be divisible by the "
            f"number of processes ({world_size})"
        )


def frozen_parts(model_cfg) -> List[str]:
    """What the ``model.backbone`` config keeps at its initial values during training:
    ``freeze_at > 0`` (the stem and the first stages) and ``FrozenBN`` norms."""
    found = []

    def visit(node, path):
        if OmegaConf.is_dict(node) or isinstance(node, dict):
            for key, value in node.items():
                sub = f"{path}.{key}"
                if key == "freeze_at" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    found.append(f"{sub}={value}")
                elif key == "norm" and value == "FrozenBN":
                    found.append(f"{sub}=FrozenBN")
                else:
                    visit(value, sub)
        elif OmegaConf.is_list(node) or isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, f"{path}[{i}]")

    visit(OmegaConf.select(model_cfg, "backbone", default=None), "model.backbone")
    return sorted(set(found))


def check_initial_weights(cfg, resuming: bool = False) -> None:
    """Refuse to train a backbone that freezes layers from random weights: the frozen stem,
    stages and BatchNorm would stay random for the whole run (the COCO recipes assume
    ImageNet weights). ``train.allow_frozen_random_init=True`` allows it on purpose."""
    if resuming or OmegaConf.select(cfg, "train.init_checkpoint", default="") or OmegaConf.select(
        cfg, "train.allow_frozen_random_init", default=False
    ):
        return
    frozen = frozen_parts(cfg.model)
    if frozen:
        raise ConfigValueError(
            f"train.init_checkpoint is empty, but the backbone keeps layers at their initial values ({', '.join(frozen)}): "
            "trained from random weights, they would stay random. Set train.init_checkpoint to ImageNet weights "
            "(the COCO configs' default, detectron2://ImageNetPretrained/MSRA/R-50.pkl, or a local copy), or pass "
            "train.allow_frozen_random_init=True to train so on purpose."
        )
