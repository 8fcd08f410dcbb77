"""dsla_d2.compat: Detectron2 v0.6 imports and runs on this stack; each fix is gated."""
import importlib
import os
import pickle

import numpy as np
import pytest
import torch

import dsla_d2
from dsla_d2 import compat

D2_PACKAGES = [
    "detectron2.layers",
    "detectron2.structures",
    "detectron2.modeling",
    "detectron2.modeling.meta_arch.dense_detector",
    "detectron2.data",
    "detectron2.data.transforms",
    "detectron2.evaluation",
    "detectron2.engine",
    "detectron2.checkpoint",
    "detectron2.config",
    "detectron2.solver",
    "detectron2.utils.visualizer",
    "detectron2.utils.comm",
    "detectron2.utils.events",
]


@pytest.mark.parametrize("name", D2_PACKAGES)
def test_detectron2_package_imports(name):
    assert importlib.import_module(name) is not None


def test_our_meta_architectures_are_registered():
    from detectron2.modeling import META_ARCH_REGISTRY

    for name in ("DslaFCOS", "DslaATSS", "DslaFoveaBox"):
        assert META_ARCH_REGISTRY.get(name).__module__.startswith("dsla_d2.")
    assert "RetinaNet" in META_ARCH_REGISTRY  # detectron2's own, untouched


def test_default_setup_runs(tmp_path):
    from detectron2.config import LazyConfig
    from detectron2.engine import default_argument_parser, default_setup

    cfg = LazyConfig.load(os.path.join(os.path.dirname(__file__), "..", "configs", "fcos_r18_synth.py"))
    cfg.train.output_dir = str(tmp_path)
    args = default_argument_parser().parse_args(["--config-file", "configs/fcos_r18_synth.py"])
    default_setup(cfg, args)
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "log.txt").is_file()


def test_missing_c_standin_gives_clear_error():
    if compat.has_compiled_ops():
        pytest.skip("a compiled detectron2._C is installed; the stand-in is not used")
    from detectron2 import _C

    assert "missing_C" in compat.applied_fixes()
    assert not _C.has_cuda() and "not compiled" in _C.get_compiler_version()
    assert not hasattr(_C, "deform_conv_forward")
    with pytest.raises(compat.CompiledOpUnavailable, match="compiled Detectron2 op"):
        _C.deform_conv_forward


def test_coco_evaluator_default_uses_pycocotools():
    from pycocotools.cocoeval import COCOeval

    from detectron2.evaluation import coco_evaluation

    if not compat.has_compiled_ops():
        assert coco_evaluation.COCOeval_opt is COCOeval


def test_pillow_numpy_and_mapdataset_fixes():
    from detectron2.data import build, common

    from PIL import Image

    assert Image.LINEAR == Image.BILINEAR
    assert build.np.int is int and build.np.zeros is np.zeros
    # a mapper that returns None for even indices: MapDataset retries on other indices
    ds = common.MapDataset(list(range(10)), lambda x: None if x % 2 == 0 else x)
    assert ds[0] % 2 == 1 and ds[3] == 3


def test_checkpoint_with_numpy_arrays_loads(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ckpt.pth"
    state = {"model": model.state_dict(), "iteration": 7, "__extra__": np.arange(3, dtype=np.float32), "np_scalar": np.float64(0.5)}
    torch.save(state, path)
    other = torch.nn.Linear(2, 2)
    extra = DetectionCheckpointer(other).load(str(path))
    assert torch.equal(other.weight, model.weight) and extra["iteration"] == 7
    # arbitrary objects are still refused by torch's weights_only loader

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"model": {}, "evil": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pth")


def test_fixes_are_gated_on_their_symptom(monkeypatch):
    """With sources that no longer contain the v0.6 lines (a current, compiled Detectron2),
    the source-gated fixes do nothing."""
    monkeypatch.setattr(compat, "_source_of", lambda name: "")
    before = dict(compat._APPLIED)
    compat._APPLIED.clear()
    try:
        compat._fix_pillow_linear()  # Image.LINEAR already exists now: gate closed anyway
        compat._fix_numpy_aliases()
        compat._fix_mapdataset_retry()
        compat._fix_comm_gather()
        compat._fix_deprecation_noise()
        assert compat.applied_fixes() == {}
    finally:
        compat._APPLIED.update(before)


def test_apply_is_idempotent():
    assert compat.apply() == compat.applied_fixes()
    assert dsla_d2.__version__
