"""Checkpoints that are written atomically, say which model they hold, and are refused
when loaded into another model.

Every checkpoint written by :class:`RunCheckpointer` carries, under
:data:`DESCRIPTION_KEY`, the model's lazy config node (YAML, ``_target_`` as import paths)
and a summary: meta-architecture, assigner, number of classes and class names. Loading
compares that summary with the model being loaded into:

* ``--resume`` and evaluation / serving (:func:`load_for_inference`) refuse a checkpoint of
  another meta-architecture, assigner or class count, naming both sides; a checkpoint
  without a description (an ImageNet backbone, a run from before this) can only be checked
  by its weights: evaluation and serving refuse it if any weight of the model is missing
  from it or has another shape (e.g. ``cls_logits`` of another class count).
* ``train.init_checkpoint`` of a new training run may be another model's (fine-tuning
  FCOS weights into an FCOS-DSLA config is legitimate): a mismatch is only logged.

Checkpoint files and ``last_checkpoint`` are written to a temporary file and renamed, so
a kill leaves the previous good checkpoint. Beside each checkpoint ``X.pth`` a checksum file
``X.pth.sha256`` (``sha256sum -c`` reads it) is written; loading verifies it, so a file
changed after it was written (a bit flip, a copy cut short) is found. If the newest
checkpoint cannot be read or fails its checksum, ``--resume`` falls back to the newest good
one with a warning; evaluation and serving refuse it.

Following ``last_checkpoint`` (``--resume``, serving a run directory) only ever opens a
``.pth`` file of that directory: ``.pth`` files are read with ``torch.load(weights_only=True)``,
which builds tensors and plain data only, while Detectron2's ``.pkl`` files are unpickled
(which can run code) and are loaded only when the user names the file
(``train.init_checkpoint=...pkl``, ``--weights ...pkl``).
"""
import hashlib
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.registry import _convert_target_to_string

from ..errors import UserInputError
from .atomic import atomic_open

__all__ = [
    "DESCRIPTION_KEY",
    "CHECKSUM_SUFFIX",
    "ModelMismatchError",
    "CheckpointReadError",
    "CheckpointNotFoundError",
    "file_sha256",
    "verify_checksum",
    "pointed_checkpoint",
    "resume_candidates",
    "resume_description",
    "model_description",
    "describe_mismatch",
    "RunCheckpointer",
    "load_for_inference",
]

logger = logging.getLogger(__name__)

DESCRIPTION_KEY = "dsla_d2_model"
COMPARED = ("meta_architecture", "assigner", "num_classes", "class_names")
CHECKSUM_SUFFIX = ".sha256"


class ModelMismatchError(UserInputError, ValueError):
    """A checkpoint holds another model than the one it is loaded into."""


class CheckpointReadError(UserInputError, ValueError):
    """A file that is not a readable checkpoint (truncated, corrupt, failing its checksum,
    not a checkpoint at all), or a pointer to one that may not be followed."""


class CheckpointNotFoundError(CheckpointReadError, FileNotFoundError):
    """A checkpoint path that names no file."""


# --------------------------------------------------------------------------- checksums
def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path: str) -> str:
    """Write ``path + ".sha256"`` (``sha256sum`` format) atomically; return the digest."""
    digest = file_sha256(path)
    with atomic_open(path + CHECKSUM_SUFFIX, "w") as f:
        f.write(f"{digest}  {os.path.basename(path)}\n")
    return digest


def verify_checksum(path: str) -> Optional[bool]:
    """True if ``path`` matches its ``.sha256`` file, None if it has none; raises
    :class:`CheckpointReadError` if it does not match (the file changed after it was
    written)."""
    sidecar = path + CHECKSUM_SUFFIX
    if not os.path.isfile(sidecar):
        return None
    with open(sidecar, encoding="utf-8", errors="replace") as f:
        expected = f.read().split(maxsplit=1)[0:1]
    actual = file_sha256(path)
    if expected != [actual]:
        raise CheckpointReadError(
            f"{path} does not match its checksum file {os.path.basename(sidecar)}: it changed after it was "
            "written (corrupt copy or disk); it is not loaded"
        )
    return True


def read_checkpoint(path: str, load: Any) -> Dict[str, Any]:
    """``load(path)`` after the checksum check, with any read failure as one
    :class:`CheckpointReadError` that names the file (never advice to unpickle unsafely)."""
    if verify_checksum(path) is None and path.endswith(".pth"):
        logger.debug("%s has no checksum file: loaded unverified", path)
    try:
        return load(path)
    except CheckpointReadError:
        raise
    except Exception as e:
        raise CheckpointReadError(
            f"{path} is not a readable checkpoint: it is truncated or corrupt, or not a checkpoint at all "
            f"({type(e).__name__} while reading it)"
        ) from None


# --------------------------------------------------------------------------- pointers
def pointed_checkpoint(save_dir: str) -> Optional[str]:
    """The checkpoint that ``save_dir/last_checkpoint`` names, if it may be followed: a
    ``.pth`` file directly in ``save_dir``. None if there is no pointer; raises
    :class:`CheckpointReadError` for a pointer to anything else (a ``.pkl`` would be
    unpickled, a path elsewhere leaves the run directory)."""
    pointer = os.path.join(save_dir, "last_checkpoint")
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8", errors="replace") as f:
        name = f.read().strip()
    if not name:
        return None
    if os.path.basename(name) != name or name in (".", "..") or not name.endswith(".pth"):
        raise CheckpointReadError(
            f"{pointer} names {name!r}: only a .pth file in the same directory is followed from a pointer "
            "(a .pkl is unpickled, which can run code: load one only by naming it, e.g. "
            "train.init_checkpoint=PATH.pkl or --weights PATH.pkl)"
        )
    return os.path.join(save_dir, name)


def resume_candidates(save_dir: str) -> List[str]:
    """Checkpoint files to resume from, best first: the ``.pth`` named in
    ``last_checkpoint`` (if it may be followed), then every other ``.pth`` of ``save_dir`` by
    modification time, newest first."""
    if not os.path.isdir(save_dir):
        return []
    try:
        named = pointed_checkpoint(save_dir)
    except CheckpointReadError as e:
        logger.warning("%s; the pointer is ignored", e)
        named = None
    if named and not os.path.isfile(named):
        logger.warning("Cannot resume from %s (named in last_checkpoint): no such file; trying an older checkpoint", named)
    files = [os.path.join(save_dir, n) for n in os.listdir(save_dir) if n.endswith(".pth")]
    others = sorted((p for p in files if p != named and os.path.isfile(p)), key=os.path.getmtime, reverse=True)
    return ([named] if named and os.path.isfile(named) else []) + others


def _torch_load(path: str) -> Dict[str, Any]:
    return DetectionCheckpointer(None)._load_file(path)


def resume_description(save_dir: str) -> Optional[Tuple[str, Optional[Dict[str, Any]]]]:
    """(path, stored model description) of the checkpoint ``--resume`` would continue
    from (the first of :func:`resume_candidates` that reads), or None if there is none.
    Read before anything is written, so that a refused resume changes nothing."""
    for candidate in resume_candidates(save_dir):
        try:
            checkpoint = read_checkpoint(candidate, _torch_load)
        except CheckpointReadError:
            continue
        return candidate, checkpoint.get(DESCRIPTION_KEY)
    return None


def _target_name(node) -> Optional[str]:
    target = node.get("_target_") if isinstance(node, (dict, DictConfig)) else None
    if target is None:
        return None
    return target if isinstance(target, str) else _convert_target_to_string(target)


def model_description(model_cfg, class_names: Optional[List[str]] = None) -> Dict[str, Any]:
    """What a checkpoint records about its model, from the lazy ``model`` config node
    (``_target_`` as classes or as import strings)."""
    from ..serving import lazy_model_yaml

    num_classes = OmegaConf.select(model_cfg, "num_classes", default=None)
    return {
        "meta_architecture": _target_name(model_cfg),
        "assigner": _target_name(OmegaConf.select(model_cfg, "assigner", default=None)),
        "num_classes": None if num_classes is None else int(num_classes),
        "class_names": None if class_names is None else [str(c) for c in class_names],
        "config": lazy_model_yaml(model_cfg),
    }


def _summary(d: Dict[str, Any]) -> str:
    arch = (d.get("meta_architecture") or "?").rsplit(".", 1)[-1]
    assigner = (d.get("assigner") or "?").rsplit(".", 1)[-1]
    return f"{arch} with {assigner}, {d.get('num_classes')} classes"


def describe_mismatch(stored: Dict[str, Any], expected: Dict[str, Any]) -> Optional[str]:
    """None if the two descriptions agree on :data:`COMPARED`, else what differs."""
    diffs = [
        f"{key}: checkpoint {stored.get(key)!r} vs config {expected.get(key)!r}"
        for key in COMPARED
        if stored.get(key) is not None and expected.get(key) is not None and stored.get(key) != expected.get(key)
    ]
    if not diffs:
        return None
    return f"the checkpoint holds {_summary(stored)}, the config builds {_summary(expected)} ({'; '.join(diffs)})"


class RunCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` with atomic writes, a model description in every
    checkpoint, a description check on load, and a resume that falls back to the newest
    loadable checkpoint.

    Args:
        model, save_dir, checkpointables: as DetectionCheckpointer.
        description: :func:`model_description` of ``model`` (None: nothing is recorded
            or checked).
    """

    def __init__(self, model, save_dir: str = "", *, description: Optional[Dict[str, Any]] = None, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.description = description
        self._on_mismatch = "warn"  # "error" while resuming or loading for inference
        self._preloaded = None  # (path, checkpoint dict) read while looking for a loadable file
        self.last_incompatible = None  # fvcore's _IncompatibleKeys of the last load
        self.loaded_description = None  # the description stored in the last loaded file
        self.resumed_from = None  # the checkpoint resume_or_load resumed from, if it did

    # ------------------------------------------------------------------ writing
    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        if self.description is not None:
            data[DESCRIPTION_KEY] = self.description
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", path)
        with atomic_open(path, "wb") as f:
            torch.save(data, f)
        write_checksum(path)
        self.tag_last_checkpoint(basename)
        self._remove_orphan_checksums()

    def _remove_orphan_checksums(self) -> None:
        """Checksum files whose checkpoint is gone (``max_to_keep`` deleted it)."""
        for name in os.listdir(self.save_dir):
            if name.endswith(".pth" + CHECKSUM_SUFFIX) and not os.path.exists(os.path.join(self.save_dir, name[: -len(CHECKSUM_SUFFIX)])):
                os.remove(os.path.join(self.save_dir, name))

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    # ------------------------------------------------------------------ reading
    def _load_file(self, filename: str) -> Dict[str, Any]:
        if self._preloaded is not None and self._preloaded[0] == filename:
            checkpoint = self._preloaded[1]
            self._preloaded = None
        else:
            checkpoint = read_checkpoint(filename, super()._load_file)
        self._check_description(checkpoint, filename)
        return checkpoint

    def _load_model(self, checkpoint: Dict[str, Any]):
        self.last_incompatible = super()._load_model(checkpoint)
        return self.last_incompatible

    def _check_description(self, checkpoint: Dict[str, Any], filename: str) -> None:
        stored = checkpoint.pop(DESCRIPTION_KEY, None)
        self.loaded_description = stored
        if self.description is None or stored is None:
            return
        problem = describe_mismatch(stored, self.description)
        if problem is None:
            return
        message = f"{filename}: {problem}"
        if self._on_mismatch == "error":
            raise ModelMismatchError(message)
        logger.warning("Loading weights of another model (fine-tuning?): %s", message)

    def _candidates(self) -> List[str]:
        return resume_candidates(self.save_dir) if self.save_dir else []

    def remove_stale_temporaries(self) -> List[str]:
        """Delete the temporary files of writes that a kill interrupted (main process)."""
        if not (self.save_to_disk and self.save_dir and os.path.isdir(self.save_dir)):
            return []
        stale = [n for n in os.listdir(self.save_dir) if n.startswith(".") and n.endswith(".tmp")]
        for name in stale:
            os.remove(os.path.join(self.save_dir, name))
        return stale

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """As DetectionCheckpointer; resuming uses the newest checkpoint that can be
        read, and refuses one of another model."""
        if resume and self.remove_stale_temporaries():
            logger.info("Removed temporary files of interrupted checkpoint writes in %s", self.save_dir)
        if not resume:
            return self._load_initial(path)
        for candidate in self._candidates():
            try:
                self._preloaded = (candidate, read_checkpoint(candidate, super()._load_file))
            except CheckpointReadError as e:  # truncated, corrupt, or not a checkpoint at all
                logger.warning("Cannot resume from it: %s; trying an older checkpoint", e)
                continue
            self._on_mismatch = "error"
            try:
                extra = self.load(candidate)
                self.resumed_from = candidate
                return extra
            finally:
                self._on_mismatch = "warn"
                self._preloaded = None
        if self._candidates():
            raise CheckpointReadError(f"--resume: none of the checkpoints in {self.save_dir} can be read: {self._candidates()}")
        return self._load_initial(path)

    def _load_initial(self, path: str) -> Dict[str, Any]:
        """The weights a new run starts from (``train.init_checkpoint``; may be another
        model's: fine-tuning)."""
        if path and "://" not in path and not os.path.isfile(path):
            raise CheckpointNotFoundError(f"train.init_checkpoint={path}: no such file")
        self._on_mismatch = "warn"
        return self.load(path, checkpointables=[])


def load_for_inference(model, path: str, description: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Load ``path`` into ``model`` for evaluation or serving, or refuse.

    Raises :class:`CheckpointReadError` (a ValueError) for an empty path (the model would
    keep its random weights) or a file that is not a readable checkpoint,
    :class:`CheckpointNotFoundError` for a missing file,
    :class:`ModelMismatchError` for a checkpoint of another model (by its description, or
    by weights of the model that are missing from it or have another shape). Returns the
    checkpoint's remaining entries (with the stored description under
    :data:`DESCRIPTION_KEY`).
    """
    if not path:
        raise CheckpointReadError(
            "No weights to evaluate: set train.init_checkpoint=PATH (a model_final.pth or "
            "model_XXXXXXX.pth of a training run)"
        )
    if "://" not in path and not os.path.isfile(path):
        raise CheckpointNotFoundError(f"Checkpoint to evaluate not found: {path}")
    checkpointer = RunCheckpointer(model, description=description)
    checkpointer._on_mismatch = "error"
    extra = checkpointer.load(path)
    if checkpointer.loaded_description is not None:
        extra[DESCRIPTION_KEY] = checkpointer.loaded_description
    keys = checkpointer.last_incompatible
    problems = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in keys.incorrect_shapes]
    problems += [f"{k}: missing from the checkpoint" for k in keys.missing_keys]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        expected = f" (the config builds {_summary(description)})" if description else ""
        raise ModelMismatchError(f"{path} does not hold the weights of this model{expected}: {shown}")
    return extra
