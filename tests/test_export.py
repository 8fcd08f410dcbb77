"""Export (dsla_d2.export, tools/export_model.py): every embedded detector to TorchScript and
ONNX, checked against eager; dynamic H and W; deformable convolutions; the command's files
and refusals; and the compat fixes the export needs (detectron2.export without caffe2,
detectron2.model_zoo without pkg_resources, no torch.jit.script noise at import)."""
import glob
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import dsla_d2  # noqa: F401  (applies dsla_d2.compat first)
from detectron2.config import LazyConfig, instantiate

from dsla_d2 import compat
from dsla_d2 import export as ex
from dsla_d2.data.synthetic import SYNTH_CLASSES
from dsla_d2.engine.checkpoint import RunCheckpointer, file_sha256, model_description
from dsla_d2.errors import run_cli
from dsla_d2.utils.trust import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*_r18_synth.py"))) + sorted(
    glob.glob(os.path.join(ROOT, "projects", "*", "configs", "*_r18_synth.py"))
)
FCOS = os.path.join(ROOT, "configs", "fcos_r18_synth.py")
DDOD = os.path.join(ROOT, "projects", "DDOD", "configs", "ddod_r18_synth.py")
DW_REFINE = os.path.join(ROOT, "projects", "DW", "configs", "fcos_dw_refine_r18_synth.py")
SIZE = (128, 160)
#: Untrained heads score everything alike (NMS between near-equal scores is then decided by
#: the last bits) and start deformable offsets at zero: noise on the head's weights.
HEAD_NOISE = 0.05


def _label(path):
    return os.path.relpath(path, ROOT)


def noisy_model(config):
    cfg = load_config(config)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.head.parameters():
            if p.dim() > 1:
                p.add_(torch.randn(p.shape, generator=g) * HEAD_NOISE)
    return cfg, model


def image(h, w, seed=0):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


_MODELS = {}


def model_of(config):
    if config not in _MODELS:
        _MODELS[config] = noisy_model(config)[1]
    return _MODELS[config]


# --------------------------------------------------------------------------- every detector
@pytest.mark.parametrize("fmt", ex.FORMATS)
@pytest.mark.parametrize("config", CONFIGS, ids=[os.path.basename(c)[: -len("_r18_synth.py")] for c in CONFIGS])
def test_every_detector_exports_and_matches_eager(config, fmt, tmp_path):
    model = model_of(config)
    info = ex.export(model, fmt, str(tmp_path), image(*SIZE))
    assert not model.training and all(p.requires_grad for p in model.parameters())  # left as it was
    check = info["check"]
    assert check["ok"] and len(check["inputs"]) == 2
    sizes = [tuple(r["size"]) for r in check["inputs"]]
    assert sizes[0] == SIZE and sizes[1] != SIZE  # traced at one size, checked at another H and W
    for r in check["inputs"]:
        assert r["detections_eager"] == r["detections_exported"] > 0
        assert r["max_box_diff"] <= 1e-3 and r["max_score_diff"] <= 1e-4 and r["classes_equal"]
    # the files: exported model and export.json agree
    path = tmp_path / ex.FILE_NAMES[fmt]
    assert info["file_sha256"] == file_sha256(str(path))
    assert json.loads((tmp_path / "export.json").read_text()) == json.loads(json.dumps(info))
    deformable = bool(info["deformable_layers"])
    assert deformable == any(k in config for k in ("DDOD", "dw_refine"))
    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        assert info["opset"] == (19 if deformable else 11)
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == info["opset"]
        dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert [i.name for i in proto.graph.input] == ["image"] and dims[1:] == ["height", "width"]
        assert [o.name for o in proto.graph.output] == list(ex.OUTPUT_NAMES)
        assert ("DeformConv" in {n.op_type for n in proto.graph.node}) == deformable


@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_one_trace_serves_every_size(fmt, tmp_path):
    """Traced at 128x160, run at 64x64 (fewer candidates on every level than the top-k
    keeps), 200x256, 33x47 and 1x1: the per-level top-k count is recorded, not baked."""
    model = model_of(FCOS)
    sizes = [(64, 64), (200, 256), (33, 47), (1, 1)]
    inputs = [image(*SIZE)] + [image(h, w, seed=i + 1) for i, (h, w) in enumerate(sizes)]
    info = ex.export(model, fmt, str(tmp_path), inputs[0], inputs=inputs)
    rows = info["check"]["inputs"]
    assert info["check"]["ok"] and [tuple(r["size"]) for r in rows] == [SIZE, *sizes]
    assert all(r["detections_eager"] > 0 for r in rows[:3])  # something was compared


def test_locations_topk_mode_traces(tmp_path):
    """DDOD's test_topk_mode="locations" (index_fill_ with a bool) traces; a larger image
    than the sample has more locations than test_topk_candidates on its first level."""
    model = model_of(DDOD)
    assert model.test_topk_mode == "locations"
    inputs = [image(*SIZE), image(320, 416, seed=3)]
    assert (320 // 8) * (416 // 8) > model.test_topk_candidates
    assert ex.export(model, "torchscript", str(tmp_path), inputs[0], inputs=inputs)["check"]["ok"]


def test_topk_count_is_min_of_ints_and_a_clamp_of_traced_sizes():
    from dsla_d2.meta_arch.base import _topk_count

    assert _topk_count(1000, 560) == 560 and _topk_count(1000, 44800) == 1000  # ints: min
    assert int(_topk_count(5, torch.tensor(9))) == 5 and int(_topk_count(5, torch.tensor(3))) == 3  # sizes: clamp


# --------------------------------------------------------------------------- deformable convs
def test_deformable_layers_are_found():
    assert ex.deformable_layers(model_of(DDOD), image(64, 80)) == ["head.cls_tower.0", "head.reg_tower.0"]
    assert ex.deformable_layers(model_of(DW_REFINE), image(64, 80)) == ["head.refinement"]
    assert ex.deformable_layers(model_of(FCOS), image(64, 80)) == []


def test_onnxruntime_runs_deform_conv():
    """onnxruntime (the pinned test extra) runs ONNX DeformConv as torchvision computes it:
    so DCN models are exported to ONNX (test_every_detector_...) rather than refused."""
    assert ex.onnx_deform_conv_support() == (True, "")


def test_dcn_onnx_is_refused_when_the_runtime_cannot_run_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "onnx_deform_conv_support", lambda opset=19: (False, "no DeformConv kernel"))
    out = tmp_path / "out"
    with pytest.raises(ex.ExportUnsupportedError) as e:
        ex.export(model_of(DDOD), "onnx", str(out), image(*SIZE))
    msg = str(e.value)
    assert "head.cls_tower.0, head.reg_tower.0" in msg and "--format torchscript" in msg and "no DeformConv kernel" in msg
    assert not out.exists()  # nothing written


def test_dcn_onnx_needs_opset_19(tmp_path):
    with pytest.raises(ex.ExportUnsupportedError, match=r"head\.cls_tower\.0.*--opset 19"):
        ex.export(model_of(DDOD), "onnx", str(tmp_path / "out"), image(*SIZE), opset=17)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the check
def test_a_difference_is_refused_and_nothing_usable_is_left(tmp_path, monkeypatch):
    real = ex.load_exported

    def shifted(fmt, path):
        run = real(fmt, path)

        def run_shifted(x):
            boxes, scores, classes = run(x)
            return boxes + 0.01, scores, classes

        return run_shifted

    monkeypatch.setattr(ex, "load_exported", shifted)
    with pytest.raises(ex.ExportParityError, match=r"128x160: max box diff 0\.01 px \(limit 0\.001\)"):
        ex.export(model_of(FCOS), "torchscript", str(tmp_path), image(*SIZE))
    assert not (tmp_path / "model.ts").exists()
    info = json.loads((tmp_path / "export.json").read_text())
    assert info["file"] is None and info["check"]["ok"] is False


def test_compare_reports_counts_and_classes():
    model = model_of(FCOS)
    x = image(*SIZE)
    boxes, scores, classes = (t.numpy() for t in ex.eager_outputs(model, x))
    fewer = ex.compare(model, lambda _: (boxes[:-1], scores[:-1], classes[:-1]), [x])[0]
    assert not fewer["ok"] and fewer["detections_exported"] == len(boxes) - 1 and fewer["max_box_diff"] is None
    other = classes.copy()
    other[3] = (other[3] + 1) % 6
    wrong = ex.compare(model, lambda _: (boxes, scores, other), [x])[0]
    assert not wrong["ok"] and not wrong["classes_equal"] and wrong["first_difference"]["index"] == 3
    assert "128x160: classes differ (first at detection 3" in ex._describe_failure("onnx", [wrong])


# --------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A train_net.py-like run directory: config.yaml and model_final.pth (noisy head)."""
    run = tmp_path_factory.mktemp("run")
    cfg, model = noisy_model(FCOS)
    LazyConfig.save(cfg, str(run / "config.yaml"))
    RunCheckpointer(model, str(run), description=model_description(cfg.model, SYNTH_CLASSES)).save("model_final")
    return run


def _main(argv):
    import export_model

    args = export_model.get_parser().parse_args(argv)
    return run_cli(lambda: export_model.main(args), "export_model.py")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_command_exports_a_run_directory(run_dir, tmp_path, capsys):
    out, report = tmp_path / "ts", tmp_path / "report.json"
    info = _main(["--output-dir", str(run_dir), "--format", "torchscript", "--output", str(out),
                  "--report", str(report), "model.test_score_thresh=0.04"])
    printed = capsys.readouterr().out
    assert "exported torchscript" in printed and "max box diff 0 px" in printed
    saved = json.loads((out / "export.json").read_text())
    assert saved["class_names"] == SYNTH_CLASSES and saved["input_format"] == "BGR"
    assert saved["score_threshold"] == 0.04 and saved["source"]["overrides"] == ["model.test_score_thresh=0.04"]
    assert saved["pixel_mean"] == [103.53, 116.28, 123.675]
    assert saved["input"]["resize"]["short_edge_length"] == [192, 192] and saved["input"]["resize"]["interp"] == "bilinear"
    assert saved["source"]["weights_sha256"] == file_sha256(str(run_dir / "model_final.pth"))
    assert saved["source"]["config_sha256"] == file_sha256(str(run_dir / "config.yaml"))
    assert saved["source"]["run_dir"] == str(run_dir)
    assert saved["check"]["sample"].startswith("generated") and saved["check"]["inputs"][0]["detections_eager"] > 0
    entry = json.loads(report.read_text())["exports"][str(run_dir)]["torchscript"]
    assert entry["ok"] and entry["max_box_diff"] == 0.0
    # what a user does with it: torch.jit.load, prepare an image as the predictor does
    predictor, _ = ex.load_predictor(output_dir=str(run_dir), opts=["model.test_score_thresh=0.04"])
    bgr = ex.sample_image()
    x = ex.prepare_input(predictor, bgr)
    loaded = torch.jit.load(str(out / "model.ts"))
    boxes, scores, classes = loaded(x)
    served = predictor(bgr)["instances"]
    # the predictor scales the boxes back to the original image
    scale = torch.tensor([bgr.shape[1] / x.shape[2], bgr.shape[0] / x.shape[1]] * 2)
    assert len(boxes) == len(served) > 0 and torch.equal(classes, served.pred_classes)
    assert torch.allclose(boxes * scale, served.pred_boxes.tensor, atol=1e-3) and torch.allclose(scores, served.scores)
    assert info["file"] == "model.ts"


def test_command_exports_config_and_weights_to_onnx(run_dir, tmp_path):
    png = tmp_path / "sample.png"
    import cv2

    cv2.imwrite(str(png), ex.sample_image()[:150, :170])
    info = _main(["--config-file", FCOS, "--weights", str(run_dir / "model_final.pth"), "--format", "onnx",
                  "--output", str(tmp_path / "onnx"), "--sample-image", str(png)])
    assert info["check"]["ok"] and info["opset"] == 11 and info["check"]["sample"] == str(png)
    assert (tmp_path / "onnx" / "model.onnx").is_file()


def test_command_refusals_exit_2(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _main(["--config-file", DDOD, "--weights", str(run_dir / "model_final.pth"), "--format", "onnx", "--output", str(tmp_path / "x")])
    assert e.value.code == 2 and "the config builds DslaATSS" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        _main(["--output-dir", str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "y"), "--opset", "13"])
    assert e.value.code == 2 and "--opset is for --format onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        _main(["--output-dir", str(run_dir), "--format", "onnx", "--output", str(tmp_path / "z"), "model.no_such_key=1"])
    assert e.value.code == 2 and "no_such_key" in capsys.readouterr().err


def test_exported_files_run_without_dsla_d2(tmp_path):
    """A fresh interpreter with torch + torchvision only (TorchScript) or onnxruntime only
    (ONNX) runs the files of a DCN model and gets eager's detections."""
    model, x = model_of(DDOD), image(*SIZE)
    for fmt in ex.FORMATS:
        ex.export(model, fmt, str(tmp_path / fmt), x)
    np.save(tmp_path / "x.npy", x.numpy())
    code = (
        "import sys, numpy as np\n"
        "x = np.load(sys.argv[1] + '/x.npy')\n"
        "import torch, torchvision\n"
        "ts = [t.numpy() for t in torch.jit.load(sys.argv[1] + '/torchscript/model.ts')(torch.from_numpy(x))]\n"
        "import onnxruntime\n"
        "ox = onnxruntime.InferenceSession(sys.argv[1] + '/onnx/model.onnx').run(None, {'image': x})\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('dsla_d2', 'detectron2', 'fvcore')]\n"
        "assert not loaded, loaded\n"
        "np.savez(sys.argv[1] + '/out.npz', *ts, *ox)\n"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(tmp_path)], capture_output=True, text=True,
                         cwd=str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    got = np.load(tmp_path / "out.npz")
    eager = [t.numpy() for t in ex.eager_outputs(model, x)]
    assert len(eager[0]) > 0
    for i, tol in enumerate((1e-3, 1e-4, 0)):
        assert np.abs(got[f"arr_{i}"] - eager[i]).max() <= tol  # TorchScript
        assert np.abs(got[f"arr_{i + 3}"] - eager[i]).max() <= tol  # ONNX


def test_docs_resize_recipe_is_prepare_input(run_dir):
    """docs/export.md's resize without dsla_d2 gives the tensor prepare_input gives."""
    from PIL import Image

    from dsla_d2.data.synthetic import render_synthetic_image

    predictor, _ = ex.load_predictor(output_dir=str(run_dir))
    short, max_size = predictor.aug.short_edge_length[0], predictor.aug.max_size
    bgrs = [render_synthetic_image("val", 0, i)[0] for i in range(3)] + [np.zeros((40, 500, 3), np.uint8)]
    for bgr in bgrs:
        h0, w0 = bgr.shape[:2]
        scale = short / min(h0, w0)
        h, w = (short, scale * w0) if h0 < w0 else (scale * h0, short)
        if max(h, w) > max_size:
            h, w = h * max_size / max(h, w), w * max_size / max(h, w)
        h, w = int(h + 0.5), int(w + 0.5)
        x = np.asarray(Image.fromarray(bgr).resize((w, h), Image.BILINEAR)).astype(np.float32).transpose(2, 0, 1)
        assert np.array_equal(x, ex.prepare_input(predictor, bgr).numpy())


# --------------------------------------------------------------------------- compat
def test_detectron2_export_imports():
    import detectron2.export as d2export
    from detectron2.export import TracingAdapter, dump_torchscript_IR, scripting_with_instances  # noqa: F401
    from detectron2.export.flatten import TracingAdapter as Same

    assert TracingAdapter is Same
    if "export_without_caffe2" in compat.applied_fixes():
        with pytest.raises(ImportError, match="needs caffe2"):
            d2export.Caffe2Tracer  # noqa: B018
        with pytest.raises(AttributeError):
            d2export.no_such_name  # noqa: B018


def test_detectron2_model_zoo_imports():
    from detectron2 import model_zoo
    from detectron2.model_zoo import model_zoo as mz

    url = model_zoo.get_checkpoint_url("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    assert url.startswith("https://") and url.endswith(".pkl")
    if "model_zoo_pkg_resources" in compat.applied_fixes():
        assert "pkg_resources" not in sys.modules or not getattr(sys.modules["pkg_resources"], "_dsla_d2_standin", False)
        where = mz.pkg_resources.resource_filename("detectron2.model_zoo", "configs/A/b.yaml")
        assert where == os.path.join(os.path.dirname(mz.__file__), "configs", "A", "b.yaml")


def test_new_fixes_are_gated_on_their_symptom(monkeypatch):
    """Upstream's export/__init__ (caffe2 optional), a model_zoo without pkg_resources, or
    caffe2 / pkg_resources importable: the gates stay closed."""
    monkeypatch.delitem(sys.modules, "detectron2.export", raising=False)
    monkeypatch.delitem(sys.modules, "detectron2.model_zoo.model_zoo", raising=False)
    before = dict(compat._APPLIED)
    compat._APPLIED.clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(compat, "_source_of", lambda name: "")
            compat._fix_export_without_caffe2()
            compat._fix_model_zoo_pkg_resources()
        with monkeypatch.context() as m:
            m.setattr(compat, "_caffe2_importable", lambda: True)
            compat._fix_export_without_caffe2()
        real_find_spec = importlib.util.find_spec
        with monkeypatch.context() as m:
            m.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "pkg_resources" else real_find_spec(name, *a))
            compat._fix_model_zoo_pkg_resources()
        assert compat.applied_fixes() == {}
        assert "detectron2.export" not in sys.modules and "detectron2.model_zoo.model_zoo" not in sys.modules
    finally:
        compat._APPLIED.update(before)


def test_no_jit_script_warning_at_import_and_no_global_filter():
    """``import dsla_d2`` prints no torch.jit.script FutureWarning (fvcore, detectron2 call it
    at import), and leaves no filter behind: a torch.jit.script call of yours still warns."""
    code = (
        "import warnings, dsla_d2, torch\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    torch.jit.script(torch.nn.Identity())\n"
        "print('USER_WARNED', any('torch.jit.script' in str(x.message) for x in w))\n"
        "print('FILTERS', [f[1].pattern for f in warnings.filters if f[1] is not None and 'script' in f[1].pattern])\n"
    )
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.jit.script" not in out.stderr, out.stderr
    with open(torch.jit._script.__file__, encoding="utf-8") as f:
        warns = "`torch.jit.script` is" in f.read()
    assert f"USER_WARNED {warns}" in out.stdout and "FILTERS []" in out.stdout
