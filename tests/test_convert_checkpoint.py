"""tools/convert_checkpoint.py: an mmdetection checkpoint becomes a run directory that serves
mmdetection's detections; torchvision's ResNet becomes a backbone checkpoint; anything that
does not convert completely is refused before a file is written."""
import os
import sys

import pytest
import torch

import dsla_d2
from detectron2.config import LazyConfig, instantiate

from dsla_d2.convert import ConversionError
from dsla_d2.convert.zoo import MMDET_ZOO, published_hash
from test_mmdet_parity import CASES, FIXTURES, ROOT, batched_input

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
import convert_checkpoint  # noqa: E402
from seeded_weights import seeded_state_dict  # noqa: E402


def mmdet_checkpoint(tmp_path, name, edit=None):
    """The fixture's seeded weights saved as mmdetection saves a checkpoint."""
    fx = torch.load(os.path.join(FIXTURES, f"{name}.pt"), weights_only=True)
    state = seeded_state_dict(fx["spec"], fx["seed"])
    if edit:
        edit(state)
    path = tmp_path / f"{name}_mmdet.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0", "epoch": 12}, "state_dict": state}, path)
    return fx, path


def convert(*argv):
    return convert_checkpoint.main(convert_checkpoint.get_parser().parse_args(list(argv)))


def test_converted_run_directory_serves_mmdetections_detections(tmp_path):
    fx, ckpt = mmdet_checkpoint(tmp_path, "atss")
    out = tmp_path / "atss_run"
    convert("mmdet", "--config", os.path.join(ROOT, CASES["atss"]), "--checkpoint", str(ckpt), "--output", str(out))
    assert {"config.yaml", "model_final.pth", "model_final.pth.sha256", "conversion.json", "last_checkpoint"} <= set(os.listdir(out))
    predictor = dsla_d2.predictor_from_output_dir(str(out), device="cpu")
    assert len(predictor.metadata.thing_classes) == 80 and predictor.cfg.INPUT.FORMAT == "RGB"
    with torch.no_grad():  # the predictor's model on the fixture's (unresized) input
        got = predictor.model(batched_input(fx, predictor.model))[0]["instances"]
    ref = fx["detections"]
    assert torch.equal(got.pred_classes.sort().values, ref["labels"].sort().values)
    assert torch.allclose(got.scores.sort().values, ref["scores"].sort().values, atol=1e-5)
    record = torch.load(out / "model_final.pth", weights_only=True)["converted_from"]
    assert record["format"] == "mmdetection ATSSHead" and len(record["sha256"]) == 64


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("bbox_head.atss_centerness.weight"), r"1 tensor\(s\) of the model are not in the checkpoint: head.quality.weight"),
    (lambda sd: sd.__setitem__("bbox_head.extra_conv.weight", torch.zeros(3)), r"1 tensor\(s\) of the checkpoint have no place in the model: bbox_head.extra_conv.weight"),
    (lambda sd: sd.__setitem__("bbox_head.atss_cls.weight", torch.zeros(81, 256, 3, 3)), r"\(81, 256, 3, 3\) -> head.cls_logits.weight \(80, 256, 3, 3\): shapes differ"),
])
def test_incomplete_conversion_is_refused_and_writes_nothing(tmp_path, damage, message):
    _, ckpt = mmdet_checkpoint(tmp_path, "atss", damage)
    out = tmp_path / "run"
    with pytest.raises(ConversionError, match=message):
        convert("mmdet", "--config", os.path.join(ROOT, CASES["atss"]), "--checkpoint", str(ckpt), "--output", str(out))
    assert not out.exists()


def test_a_checkpoint_of_another_head_is_refused(tmp_path):
    _, ckpt = mmdet_checkpoint(tmp_path, "fcos")
    with pytest.raises(ConversionError, match="holds an mmdetection FCOSHead, the config builds ATSSHead"):
        convert("mmdet", "--config", os.path.join(ROOT, CASES["atss"]), "--checkpoint", str(ckpt), "--output", str(tmp_path / "x"))


def torchvision_resnet50(path):
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.resnet50().state_dict()
    torch.save(state, path)
    return state


def test_torchvision_backbone_converts_for_fine_tuning(tmp_path):
    state = torchvision_resnet50(tmp_path / "resnet50.pth")
    out = tmp_path / "R-50-torchvision.pth"
    convert("torchvision", "--config", os.path.join(ROOT, CASES["atss"]), "--checkpoint", str(tmp_path / "resnet50.pth"), "--output", str(out))
    converted = torch.load(out, weights_only=True)["model"]
    assert torch.equal(converted["backbone.bottom_up.res3.0.conv2.weight"], state["layer2.0.conv2.weight"])
    assert torch.equal(converted["backbone.bottom_up.stem.conv1.norm.running_var"], state["bn1.running_var"])
    model = instantiate(LazyConfig.load(os.path.join(ROOT, CASES["atss"])).model)
    missing = model.load_state_dict(converted, strict=False).missing_keys
    assert missing and not any(k.startswith("backbone.bottom_up.") for k in missing)  # the whole ResNet
    with pytest.raises(Exception, match="caffe-style"):  # torchvision weights into a caffe-style ResNet
        convert("torchvision", "--config", os.path.join(ROOT, CASES["fcos"]), "--checkpoint", str(tmp_path / "resnet50.pth"), "--output", str(out))


def test_torchvision_scheme_for_init_checkpoint(tmp_path, monkeypatch):
    # train.init_checkpoint=torchvision://resnet50 (the PyTorch-style configs' default):
    # downloaded once by torch.hub (offline here: its download is replaced), converted once
    from detectron2.utils.file_io import PathManager

    state = torchvision_resnet50(tmp_path / "resnet50.pth")
    calls = []

    def from_url(url, **kwargs):
        calls.append(url)
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", from_url)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path = PathManager.get_local_path("torchvision://resnet50")
    assert PathManager.get_local_path("torchvision://resnet50") == path and len(calls) == 1
    assert calls[0].endswith("resnet50-0676ba61.pth")
    assert torch.equal(torch.load(path, weights_only=True)["model"]["backbone.bottom_up.res5.2.conv3.weight"], state["layer4.2.conv3.weight"])
    cfg = LazyConfig.load(os.path.join(ROOT, CASES["atss"]))
    assert cfg.train.init_checkpoint == "torchvision://resnet50"


def test_model_zoo_entries():
    for name, entry in MMDET_ZOO.items():
        assert os.path.isfile(os.path.join(ROOT, entry["config"])), name
        assert len(published_hash(entry["url"])) == 8
    # every zoo entry is covered by a parity fixture of its mmdetection config
    sources = {torch.load(os.path.join(FIXTURES, f"{n}.pt"), weights_only=True)["source"]["config"] for n in CASES}
    assert {e["mmdet_config"].removeprefix("configs/") for e in MMDET_ZOO.values()} == sources
    assert {e["config"] for e in MMDET_ZOO.values()} == set(CASES.values())
