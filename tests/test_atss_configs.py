"""Every ATSS / Dynamic ATSS config loads, maps to the paper's table rows, and the synthetic
ones train one step."""
import os

import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from dsla_d2.assigners.atss import ATSSAssigner, DynamicATSSAssigner

from tiny import make_inputs

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs")

# file -> (assigner class, w_a, w_p, quality branch, cls_target, cls_loss); paper AP in the
# config docstrings.
EXPECTED = {
    # Table 2 (and Table 1)
    "../projects/DynamicATSS/configs/aiou_only_R_50_FPN_1x.py": (ATSSAssigner, 1.0, 0.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/piou_only_R_50_FPN_1x.py": (DynamicATSSAssigner, 0.0, 1.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, 1.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_qfl_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, 1.0, "centerness", "iou", "qfl"),
    "../projects/DynamicATSS/configs/ciou_vfl_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, 1.0, "centerness", "iou", "vfl"),
    "../projects/DynamicATSS/configs/ciou_qfl_iou_branch_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, 1.0, "iou", "iou", "qfl"),
    "../projects/DynamicATSS/configs/ciou_vfl_iou_branch_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, 1.0, "iou", "iou", "vfl"),
    # Table 1 extra rows
    "../projects/DynamicATSS/configs/atss_qfl_R_50_FPN_1x.py": (ATSSAssigner, 1.0, 0.0, "centerness", "iou", "qfl"),
    "../projects/DynamicATSS/configs/atss_vfl_R_50_FPN_1x.py": (ATSSAssigner, 1.0, 0.0, "centerness", "iou", "vfl"),
    # Table 3 (PIoU weight w_p, AIoU weight w_a)
    "../projects/DynamicATSS/configs/ciou_p05_a1_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, 0.5, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_p15_a1_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, 1.5, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_p1_a05_R_50_FPN_1x.py": (DynamicATSSAssigner, 0.5, 1.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_p1_a15_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.5, 1.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_pup_a1_R_50_FPN_1x.py": (DynamicATSSAssigner, 1.0, "up", "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_p1_adown_R_50_FPN_1x.py": (DynamicATSSAssigner, "down", 1.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/ciou_pup_adown_R_50_FPN_1x.py": (DynamicATSSAssigner, "down", "up", "centerness", "static", "focal"),
    # baselines and the embedded-dataset configs
    "atss_R_50_FPN_1x.py": (ATSSAssigner, 1.0, 0.0, "centerness", "static", "focal"),
    "atss_r18_synth.py": (ATSSAssigner, 1.0, 0.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/dynamic_atss_r18_synth.py": (DynamicATSSAssigner, 1.0, 1.0, "centerness", "static", "focal"),
    "../projects/DynamicATSS/configs/dynamic_atss_qfl_r18_synth.py": (DynamicATSSAssigner, 1.0, 1.0, "centerness", "iou", "qfl"),
    "../projects/DynamicATSS/configs/dynamic_atss_vfl_r18_synth.py": (DynamicATSSAssigner, 1.0, 1.0, "centerness", "iou", "vfl"),
    "../projects/DynamicATSS/configs/dynamic_atss_qfl_iou_branch_r18_synth.py": (DynamicATSSAssigner, 1.0, 1.0, "iou", "iou", "qfl"),
    "../projects/DynamicATSS/configs/dynamic_atss_vfl_iou_branch_r18_synth.py": (DynamicATSSAssigner, 1.0, 1.0, "iou", "iou", "vfl"),
}


def load(rel):
    return LazyConfig.load(os.path.join(ROOT, rel))


def test_every_config_in_the_folder_is_listed():
    folder = sorted(f for f in os.listdir(os.path.join(ROOT, "..", "projects", "DynamicATSS", "configs")) if f.endswith(".py"))
    assert folder == sorted(k.split("/")[-1] for k in EXPECTED if k.startswith("../projects/DynamicATSS/configs/"))


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_config_rows(rel):
    cls, w_a, w_p, branch, cls_target, cls_loss = EXPECTED[rel]
    cfg = load(rel)
    m = cfg.model
    assigner = instantiate(m.assigner)
    assert type(assigner) is cls
    assert (assigner.anchor_iou_weight, assigner.pred_iou_weight) == (w_a, w_p)
    assert assigner.topk == 9 and assigner.regression_weight == "centerness"
    assert (m.quality.branch, m.quality.cls_target, m.loss.cls_loss) == (branch, cls_target, cls_loss)
    assert m._target_.__name__ == "DslaATSS" and m.head._target_.__name__ == "ATSSHead"
    assert m.head.quality_branch == "reg"
    assert (m.loss.box_loss, m.loss.box_weight, m.loss.box_normalizer) == ("giou", 2.0, "sum_weights")
    assert list(m.box_coder.weights) == [10.0, 10.0, 5.0, 5.0]
    if "synth" in rel:
        assert m.prior_generator.anchor_scale == 4
        fcos = load("fcos_r18_synth.py")  # same budget and schedule as the FCOS synth config
        assert cfg.train.max_iter == fcos.train.max_iter
        assert cfg.lr_multiplier == fcos.lr_multiplier and cfg.optimizer.lr == fcos.optimizer.lr
    else:
        assert m.prior_generator.anchor_scale == 8
        assert cfg.train.max_iter == 90000 and cfg.optimizer.lr == 0.01
        assert cfg.dataloader.train.total_batch_size == 16
        assert list(cfg.lr_multiplier.scheduler.milestones) == [60000, 80000]
        assert m.head.num_convs == 4 and m.head.norm == "GN" and m.head.channels == 256


def test_common_model_builds_r50():
    cfg = LazyConfig.load(os.path.join(ROOT, "common", "models", "atss.py"))
    model = instantiate(cfg.model)
    assert type(model.assigner) is ATSSAssigner
    assert model.prior_generator.anchor_scale == 8.0 and model.head.quality is not None


def test_synth_configs_instantiate():
    for rel in ("atss_r18_synth.py", "../projects/DynamicATSS/configs/dynamic_atss_r18_synth.py"):
        model = instantiate(load(rel).model)
        assert model.num_classes == 6 and model.prior_generator.anchor_scale == 4.0


def test_synth_config_trains_one_step():
    # The full Dynamic ATSS (CIoU + QFL + IoU branch) on one 128-px image.
    torch.manual_seed(0)
    cfg = load("../projects/DynamicATSS/configs/dynamic_atss_qfl_iou_branch_r18_synth.py")
    model = instantiate(cfg.model)
    model.train()
    inputs = make_inputs([[[10, 12, 60, 50], [70, 30, 120, 110], [5, 5, 20, 40]]], [[0, 5, 3]], size=128)
    with EventStorage(0):
        losses = model(inputs)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_quality"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
