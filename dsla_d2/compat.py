"""Compatibility fixes that let Detectron2 v0.6 run on today's Python stack.

This is the only place in dsla_d2 that changes Detectron2's behaviour. :func:`apply` runs
when ``dsla_d2`` is imported, before anything in ``detectron2`` that needs a fix is
imported. Every fix is gated on its own symptom (a missing module, a missing attribute, or
the exact line of v0.6 source that breaks), so on a complete, compiled Detectron2 built from
a current checkout every gate is closed and this module does nothing.
:func:`applied_fixes` lists what was done in this process, with the reason.

Fixes (upstream commits that fixed the same problem in Detectron2 itself in brackets):

``missing_C``
    ``detectron2._C`` does not exist when the C++ extension was not compiled; ``layers``,
    ``structures``, ``modeling``, ``data``, ``evaluation`` and ``engine`` all import it at
    module level. A stand-in module answers ``get_compiler_version``/``get_cuda_version``/
    ``has_cuda`` (used by ``collect_env`` in ``default_setup``) and raises
    :class:`CompiledOpUnavailable` naming the op if any compiled op is used [710e7795].
``cocoeval_fast_path``
    ``COCOEvaluator(use_fast_impl=True)`` (its default) uses ``COCOeval_opt``, which needs
    ``_C``; without it we evaluate with ``pycocotools.cocoeval.COCOeval`` (same numbers,
    slower) [710e7795].
``pillow_linear``
    ``data/transforms/transform.py`` uses ``Image.LINEAR`` as a default argument; Pillow 10
    removed it, so ``detectron2.data`` fails to import. ``Image.LINEAR`` is aliased to
    ``Image.BILINEAR``, the same filter [ff53992b].
``numpy_aliases``
    ``data/build.py`` uses ``np.int``, removed in numpy 2; the AttributeError is swallowed
    there and the per-class instance histogram silently vanishes from the logs. That module
    (only) sees a numpy proxy where ``np.int`` is ``int``. Likewise ``data/datasets/pascal_voc.py``
    (``np.str``: every ``register_pascal_voc`` dataset failed to load), fix ``numpy_aliases_voc``.
``mapdataset_retry``
    ``data/common.py`` calls ``random.Random.sample`` on a ``set`` when a mapper returns
    ``None``: a TypeError on Python >= 3.11. Its RNG is given a ``sample`` that accepts sets
    (sorted, so the draw stays deterministic) [400a49c1].
``comm_gather``
    ``utils/comm.py`` serialises objects through ``torch.ByteStorage.from_buffer`` for
    ``all_gather``/``gather`` (multi-GPU evaluation), deprecated in torch 2. Both are routed
    to ``torch.distributed.all_gather_object``/``gather_object`` [7801ac3d].
``checkpoint_numpy``
    ``torch.load`` defaults to ``weights_only=True`` since torch 2.6 and fvcore's
    ``Checkpointer`` relies on the default: checkpoints holding numpy arrays or scalars
    (common in converted and older detectron2 checkpoints) fail to load. The numpy types
    are added to torch's safe globals; arbitrary objects are still refused.
``deprecation_noise``
    v0.6 calls ``torch.cuda.amp.GradScaler/autocast`` and ``torch.meshgrid`` without
    ``indexing``: correct, but they warn on every step. Those exact warnings are filtered.
    fvcore's ``nn.focal_loss`` and v0.6's ``modeling.box_regression`` call
    ``torch.jit.script`` at import time, which recent torch (2.14 here) answers with a
    FutureWarning printed by every command: those two modules are imported here with that
    one warning ignored (only during their import: a ``torch.jit.script`` call of yours
    still warns).
``export_without_caffe2``
    ``detectron2/export/__init__.py`` imports ``.api``, which imports ``caffe2`` (no longer
    shipped with torch), so ``import detectron2.export`` fails and with it
    ``TracingAdapter``, which needs no caffe2. The package is set up as upstream's does
    without caffe2: ``TracingAdapter``, ``dump_torchscript_IR``, ``scripting_with_instances``
    and ``STABLE_ONNX_OPSET_VERSION``; the Caffe2 API (``Caffe2Tracer``,
    ``export_caffe2_model``, ``export_onnx_model``, ...) raises an ImportError naming
    caffe2 [48b598b4].
``model_zoo_pkg_resources``
    ``model_zoo/model_zoo.py`` imports ``pkg_resources`` (gone from recent setuptools: 84
    here) for ``pkg_resources.resource_filename`` only, so ``import detectron2.model_zoo``
    fails.
    That module (only: no global ``pkg_resources`` is installed) gets a stand-in whose
    ``resource_filename(package, name)`` is the path of ``name`` inside the package's
    directory, which is what setuptools returns for an installed (unzipped) package.
"""
import importlib.util
import logging
import os
import sys
import types
import warnings

__all__ = ["apply", "applied_fixes", "CompiledOpUnavailable", "has_compiled_ops"]

logger = logging.getLogger(__name__)

_APPLIED = {}


class CompiledOpUnavailable(AttributeError):
    """A compiled Detectron2 op was requested but ``detectron2._C`` was not built.

    Subclasses AttributeError so that ``hasattr(_C, name)`` answers False.
    """


def applied_fixes():
    """Return {fix name: reason} for the fixes applied in this process."""
    return dict(_APPLIED)


def has_compiled_ops():
    """True if Detectron2's C++ extension is really installed (not our stand-in)."""
    mod = sys.modules.get("detectron2._C")
    if mod is not None:
        return not getattr(mod, "_dsla_d2_standin", False)
    return importlib.util.find_spec("detectron2._C") is not None


def _source_of(module_name):
    """Text of a detectron2 module's source file, read without importing anything from it.

    ``importlib.util.find_spec`` of a submodule imports its parent packages, which is what
    must not happen before the fixes are in place, so the path is built from the top-level
    package's directory. A package's source is its ``__init__.py``. Returns '' if the file
    does not exist.
    """
    top, *rest = module_name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return ""
    for root in spec.submodule_search_locations:
        for path in (os.path.join(root, *rest) + ".py", os.path.join(root, *rest, "__init__.py")):
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    return f.read()
    return ""


def _record(name, reason):
    _APPLIED[name] = reason
    logger.debug("dsla_d2.compat: %s (%s)", name, reason)


# --------------------------------------------------------------------------- missing _C
def _make_c_standin():
    mod = types.ModuleType("detectron2._C")
    mod.__file__ = __file__
    mod._dsla_d2_standin = True
    mod.get_compiler_version = lambda: "not compiled (dsla_d2.compat stand-in for detectron2._C)"
    mod.get_cuda_version = lambda: "not compiled"
    mod.has_cuda = lambda: False

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise CompiledOpUnavailable(
            f"detectron2._C.{name} is a compiled Detectron2 op, but Detectron2 was installed "
            "without its C++ extension. Box detection in dsla_d2 never needs it; for rotated "
            "boxes or Detectron2's own deformable conv, build Detectron2 from source."
        )

    mod.__getattr__ = __getattr__
    return mod


def _fix_missing_c():
    if importlib.util.find_spec("detectron2") is None:
        return False
    import detectron2

    if "detectron2._C" in sys.modules or importlib.util.find_spec("detectron2._C") is not None:
        return False
    standin = _make_c_standin()
    sys.modules["detectron2._C"] = standin
    detectron2._C = standin
    _record("missing_C", "detectron2._C is not built; installed a stand-in module")
    return True


def _fix_cocoeval_fast_path():
    if has_compiled_ops():
        return
    from pycocotools.cocoeval import COCOeval

    from detectron2.evaluation import coco_evaluation, fast_eval_api

    fast_eval_api.COCOeval_opt = COCOeval
    coco_evaluation.COCOeval_opt = COCOeval
    _record("cocoeval_fast_path", "COCOeval_opt needs detectron2._C; using pycocotools COCOeval")


# --------------------------------------------------------------------------- Pillow
def _fix_pillow_linear():
    from PIL import Image

    if hasattr(Image, "LINEAR"):
        return
    if "Image.LINEAR" not in _source_of("detectron2.data.transforms.transform"):
        return
    Image.LINEAR = Image.BILINEAR
    _record("pillow_linear", "Pillow >= 10 has no Image.LINEAR; aliased to Image.BILINEAR")


# --------------------------------------------------------------------------- numpy 2
class _NumpyWithAliases(types.ModuleType):
    """numpy, plus the builtin-type aliases numpy 2 removed (``np.int`` is ``int``)."""

    _ALIASES = {"int": int, "bool": bool, "float": float, "object": object, "str": str}

    def __init__(self, numpy_module):
        super().__init__("numpy")
        self._np = numpy_module

    def __getattr__(self, name):
        if name in self._ALIASES:
            return self._ALIASES[name]
        return getattr(self._np, name)


def _fix_numpy_aliases():
    import numpy as np

    if hasattr(np, "int"):
        return
    if "dtype=np.int)" in _source_of("detectron2.data.build"):
        import detectron2.data.build as build

        build.np = _NumpyWithAliases(np)
        _record("numpy_aliases", "numpy 2 removed np.int used by detectron2.data.build")
    if "dtype=np.str)" in _source_of("detectron2.data.datasets.pascal_voc"):
        import detectron2.data.datasets.pascal_voc as pascal_voc

        pascal_voc.np = _NumpyWithAliases(np)
        _record("numpy_aliases_voc", "numpy 2 removed np.str used by detectron2.data.datasets.pascal_voc")


# --------------------------------------------------------------------------- Python 3.11
class _SetTolerantRandom(__import__("random").Random):
    def sample(self, population, k, **kwargs):
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


def _fix_mapdataset_retry():
    if sys.version_info < (3, 11):
        return
    if "self._rng.sample(self._fallback_candidates" not in _source_of("detectron2.data.common"):
        return
    from detectron2.data import common

    original_init = common.MapDataset.__init__

    def __init__(self, dataset, map_func):
        original_init(self, dataset, map_func)
        self._rng = _SetTolerantRandom(42)

    __init__.__wrapped__ = original_init
    common.MapDataset.__init__ = __init__
    _record("mapdataset_retry", "random.sample on a set raises TypeError on Python >= 3.11")


# --------------------------------------------------------------------------- comm
def _fix_comm_gather():
    if "ByteStorage.from_buffer" not in _source_of("detectron2.utils.comm"):
        return
    import torch.distributed as dist

    from detectron2.utils import comm

    def all_gather(data, group=None):
        if comm.get_world_size() == 1:
            return [data]
        if group is None:
            group = comm._get_global_gloo_group()
        world_size = dist.get_world_size(group)
        if world_size == 1:
            return [data]
        output = [None] * world_size
        dist.all_gather_object(output, data, group=group)
        return output

    def gather(data, dst=0, group=None):
        if comm.get_world_size() == 1:
            return [data]
        if group is None:
            group = comm._get_global_gloo_group()
        world_size = dist.get_world_size(group=group)
        if world_size == 1:
            return [data]
        rank = dist.get_rank(group=group)
        if rank == dst:
            output = [None] * world_size
            dist.gather_object(data, output, dst=dst, group=group)
            return output
        dist.gather_object(data, None, dst=dst, group=group)
        return []

    comm.all_gather = all_gather
    comm.gather = gather
    _record("comm_gather", "torch.ByteStorage.from_buffer is deprecated; use *_object collectives")


# --------------------------------------------------------------------------- torch.load
def _fix_checkpoint_numpy():
    import numpy as np
    import torch

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4: torch.load is not weights_only by default
        return
    reconstruct = getattr(getattr(np, "_core", np.core), "multiarray")._reconstruct
    scalar = getattr(getattr(np, "_core", np.core), "multiarray").scalar
    dtypes = [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "uint8", "bool")]
    add_safe_globals([reconstruct, scalar, np.ndarray, np.dtype, *dtypes])
    _record(
        "checkpoint_numpy",
        "torch.load defaults to weights_only=True; numpy arrays in checkpoints allowed",
    )


# --------------------------------------------------------------------------- warnings
#: The FutureWarning of ``torch.jit.script`` in recent torch ("is not supported" on Python 3.14).
_JIT_SCRIPT_WARNING = r"`torch\.jit\.script` is (deprecated|not supported)"
#: Third-party modules that call ``torch.jit.script`` when they are imported.
_JIT_SCRIPT_AT_IMPORT = ("fvcore.nn.focal_loss", "detectron2.modeling.box_regression")


def _fix_deprecation_noise():
    done = []
    if "torch.cuda.amp" in _source_of("detectron2.engine.train_loop"):
        warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release")
        done.append("torch.cuda.amp / meshgrid deprecation warnings of v0.6")
    # torch.jit.script at import time: only if torch warns, and only for the modules that
    # call it and are not imported yet (once imported, the warning has been given).
    if "`torch.jit.script` is" in _source_of("torch.jit._script"):
        pending = [
            m for m in _JIT_SCRIPT_AT_IMPORT
            if m not in sys.modules and "torch.jit.script" in _source_of(m)
        ]
        if pending:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_JIT_SCRIPT_WARNING, category=FutureWarning)
                for m in pending:
                    importlib.import_module(m)
            done.append("torch.jit.script FutureWarning while importing " + ", ".join(pending))
    if done:
        _record("deprecation_noise", "filtered " + "; ".join(done))


# --------------------------------------------------------------------------- caffe2
#: Names of v0.6's ``detectron2.export`` that come from ``.api`` and need caffe2.
_CAFFE2_EXPORT_API = (
    "add_export_config",
    "export_caffe2_model",
    "Caffe2Model",
    "export_onnx_model",
    "Caffe2Tracer",
)


def _caffe2_importable():
    try:
        from caffe2.proto import caffe2_pb2  # noqa: F401
        from caffe2.python import core  # noqa: F401
    except ImportError:
        return False
    return True


def _fix_export_without_caffe2():
    if "detectron2.export" in sys.modules:
        return
    init = _source_of("detectron2.export")
    if "from .api import *" not in init or "caffe2" not in _source_of("detectron2.export.api"):
        return  # upstream's __init__ (caffe2 optional) or another layout
    if _caffe2_importable():
        return
    import detectron2

    spec = importlib.util.find_spec("detectron2.export")
    package = importlib.util.module_from_spec(spec)  # the package, without running __init__
    sys.modules["detectron2.export"] = package
    try:
        from detectron2.export.flatten import TracingAdapter
        from detectron2.export.torchscript import dump_torchscript_IR, scripting_with_instances
    except Exception as e:  # noqa: BLE001 (another layout: leave detectron2.export as it is)
        for name in [m for m in sys.modules if m == "detectron2.export" or m.startswith("detectron2.export.")]:
            del sys.modules[name]
        logger.debug("dsla_d2.compat: detectron2.export left as it is (%s)", e)
        return

    def __getattr__(name):
        if name in _CAFFE2_EXPORT_API:
            raise ImportError(
                f"detectron2.export.{name} is Detectron2's Caffe2 export, which needs caffe2 (not "
                "shipped with torch 2). Use detectron2.export.TracingAdapter with torch.jit.trace "
                "(tools/export_model.py does: TorchScript and ONNX)."
            )
        raise AttributeError(f"module 'detectron2.export' has no attribute {name!r}")

    package.TracingAdapter = TracingAdapter
    package.dump_torchscript_IR = dump_torchscript_IR
    package.scripting_with_instances = scripting_with_instances
    package.STABLE_ONNX_OPSET_VERSION = 11
    package.__getattr__ = __getattr__
    package.__all__ = ["TracingAdapter", "dump_torchscript_IR", "scripting_with_instances", "STABLE_ONNX_OPSET_VERSION"]
    package._dsla_d2_without_caffe2 = True
    detectron2.export = package
    _record("export_without_caffe2", "detectron2.export imports caffe2, which is not installed; set up without its Caffe2 API")


# --------------------------------------------------------------------------- pkg_resources
def _resource_filename(package_or_requirement, resource_name):
    """``pkg_resources.resource_filename`` for an installed, unzipped package."""
    spec = importlib.util.find_spec(package_or_requirement)
    if spec is None or spec.origin is None:
        raise ImportError(f"no package {package_or_requirement!r}")
    return os.path.join(os.path.dirname(spec.origin), *resource_name.split("/"))


def _make_pkg_resources_standin():
    mod = types.ModuleType("pkg_resources")
    mod.__doc__ = "dsla_d2.compat stand-in: resource_filename only (for detectron2.model_zoo)"
    mod.resource_filename = _resource_filename
    mod._dsla_d2_standin = True
    return mod


def _fix_model_zoo_pkg_resources():
    if "detectron2.model_zoo.model_zoo" in sys.modules:
        return
    source = _source_of("detectron2.model_zoo.model_zoo")
    if "import pkg_resources" not in source:
        return
    if importlib.util.find_spec("pkg_resources") is not None:
        return
    # Every use in the module must be resource_filename: otherwise the stand-in would
    # turn an ImportError into an AttributeError later.
    uses = {line.split("pkg_resources.", 1)[1].split("(", 1)[0] for line in source.splitlines() if "pkg_resources." in line}
    if uses != {"resource_filename"}:
        return
    # What model_zoo.py imports, first, so that only that module sees the stand-in.
    for name in ("detectron2.checkpoint", "detectron2.config", "detectron2.modeling"):
        importlib.import_module(name)
    sys.modules["pkg_resources"] = _make_pkg_resources_standin()
    try:
        importlib.import_module("detectron2.model_zoo")
    except Exception as e:  # noqa: BLE001 (fails for another reason: as without the fix)
        for name in [m for m in sys.modules if m.startswith("detectron2.model_zoo")]:
            del sys.modules[name]
        logger.debug("dsla_d2.compat: detectron2.model_zoo left as it is (%s)", e)
        return
    finally:
        del sys.modules["pkg_resources"]
    _record("model_zoo_pkg_resources", "pkg_resources is not installed; detectron2.model_zoo got a resource_filename stand-in")


_done = False


def apply():
    """Apply every fix whose symptom is present. Idempotent; returns applied_fixes()."""
    global _done
    if _done:
        return applied_fixes()
    _done = True
    if importlib.util.find_spec("detectron2") is None:
        raise ImportError(
            "dsla_d2 needs Detectron2. Install it with `make install` (or "
            "`python tools/install_detectron2.py`), or build it from source."
        )
    # Order matters: _C and Pillow must be fixed before any detectron2 submodule imports.
    _fix_missing_c()
    _fix_pillow_linear()
    _fix_checkpoint_numpy()
    _fix_deprecation_noise()
    _fix_numpy_aliases()
    _fix_mapdataset_retry()
    _fix_comm_gather()
    _fix_cocoeval_fast_path()
    _fix_export_without_caffe2()
    _fix_model_zoo_pkg_resources()
    return applied_fixes()
