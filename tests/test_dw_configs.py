"""The DW configs (projects/DW/configs/): every ablation row flips exactly the paper's switch,
the COCO recipes match the authors' (their public code), and the
embedded-dataset configs share the FCOS budget and train a step."""
import functools
import glob
import os

import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.config import LazyConfig, instantiate

from dsla_d2.assigners import DWAssigner
from dsla_d2.heads import DWHead
from dsla_d2.losses import DWLoss
from dsla_d2.solver import mmdet_param_groups

from tiny import make_inputs

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ROOT = os.path.join(REPO, "projects", "DW", "configs")

# Rows typed from the paper (Tables 4-5) and the code options:
# row -> (assigner.bag, distance_threshold or topk or None, loss.negative_weights,
#         loss.neg_normalizer, loss.pos_weight_form, loss.p_neg_form)
DEFAULT_LOSS = ("dual", "one_minus_p_neg", "code", "code")
ROWS = {
    "table4_threshold_1.0": ("threshold", 1.0) + DEFAULT_LOSS,
    "table4_threshold_1.3": ("threshold", 1.3) + DEFAULT_LOSS,
    "table4_threshold_1.7": ("threshold", 1.7) + DEFAULT_LOSS,
    "table4_threshold_2.0": ("threshold", 2.0) + DEFAULT_LOSS,
    "table4_threshold_2.5": ("threshold", 2.5) + DEFAULT_LOSS,
    "table4_topk_9": ("topk", 9) + DEFAULT_LOSS,
    "table4_topk_12": ("topk", 12) + DEFAULT_LOSS,
    "table4_topk_15": ("topk", 15) + DEFAULT_LOSS,
    "table4_soft_prior": ("soft_prior", None) + DEFAULT_LOSS,
    "hard_prior": ("hard_prior", None) + DEFAULT_LOSS,
    "table5_pos_only": ("soft_prior", None, "pos_only", "num_gts", "code", "code"),
    "table5_no_p_neg": ("soft_prior", None, "no_p_neg", "num_gts", "code", "code"),
    "table5_no_i_neg": ("soft_prior", None, "no_i_neg", "one_minus_p_neg", "code", "code"),
    "table5_one_minus_pos": ("soft_prior", None, "one_minus_pos", "one_minus_p_neg", "code", "code"),
    "table5_dw": ("soft_prior", None) + DEFAULT_LOSS,
    "paper_pos_weight": ("soft_prior", None, "dual", "one_minus_p_neg", "paper", "code"),
    "paper_p_neg": ("soft_prior", None, "dual", "one_minus_p_neg", "code", "paper"),
    "paper_forms": ("soft_prior", None, "dual", "one_minus_p_neg", "paper", "paper"),
}
MAIN = [
    "fcos_dw_R_50_FPN_1x",
    "fcos_dw_refine_R_50_FPN_1x",
    "fcos_dw_refine_R_50_FPN_ms_2x",
    "fcos_dw_r18_synth",
    "fcos_dw_refine_r18_synth",
]


def load(rel):
    return LazyConfig.load(os.path.join(ROOT, rel))


@functools.lru_cache(maxsize=None)
def load_base(rel):
    return load(rel)


def test_every_row_has_a_file_and_every_file_a_row():
    names = {os.path.basename(f)[:-3] for f in glob.glob(os.path.join(ROOT, "ablations", "*.py"))}
    assert names == set(ROWS)
    for name in MAIN:
        assert os.path.exists(os.path.join(ROOT, name + ".py"))


@pytest.mark.parametrize("row", sorted(ROWS))
def test_ablation_rows(row):
    cfg = load(f"ablations/{row}.py")
    bag, size, negative, normalizer, pos_form, p_neg_form = ROWS[row]
    a, loss = cfg.model.assigner, cfg.model.loss
    assert a.bag == bag
    if bag == "threshold":
        assert a.distance_threshold == size
    if bag == "topk":
        assert a.topk == size
    assert (loss.negative_weights, loss.neg_normalizer, loss.pos_weight_form, loss.p_neg_form) == (
        negative, normalizer, pos_form, p_neg_form,
    )
    base = load_base("fcos_dw_R_50_FPN_1x.py")
    # Nothing else differs from the base (no box refinement, as the paper's ablations).
    for key in ("head", "prior_generator", "box_coder", "backbone", "quality"):
        assert cfg.model[key] == base.model[key], key
    other_a = {k: v for k, v in a.items() if k not in ("bag", "distance_threshold", "topk")}
    assert other_a == {k: v for k, v in base.model.assigner.items() if k in other_a}
    changed = {"negative_weights", "neg_normalizer", "pos_weight_form", "p_neg_form"}
    assert {k: v for k, v in loss.items() if k not in changed} == {k: v for k, v in base.model.loss.items() if k not in changed}
    assert cfg.train == base.train and cfg.optimizer == base.optimizer and cfg.lr_multiplier == base.lr_multiplier
    assert cfg.model.head.box_refinement is False
    asg, lo = instantiate(cfg.model.assigner), instantiate(cfg.model.loss)
    assert isinstance(asg, DWAssigner) and asg.bag == bag and isinstance(lo, DWLoss) and lo.negative_weights == negative


def test_r50_recipes():
    cfg = load("fcos_dw_R_50_FPN_1x.py")
    m = cfg.model
    h = m.head
    assert h._target_ is DWHead and h.box_refinement is False
    assert (h.channels, h.num_convs, h.norm, h.conv_bias, h.prior_prob) == (256, 4, "GN", True, 0.02)
    assert (h.quality_branch, h.box_activation, h.box_bias_init) == ("reg", "relu", 4.0)
    assert m.prior_generator.offset == 0.5 and list(m.prior_generator.strides) == [8, 16, 32, 64, 128]
    assert m.box_coder.normalize_by_stride is True
    assert (m.assigner.bag, m.assigner.sigma, m.assigner.hard_prior_threshold) == ("soft_prior", 1.11, 0.3)
    assert (m.quality.branch, m.quality.threshold_on) == ("objectness", "score")
    l = m.loss
    assert (l.beta, l.mu, l.mu_norm, l.gamma_p_neg, l.gamma_i_neg, l.pos_loss_weight) == (5, 5, 3, 2, 2, 0.25)
    assert (m.test_score_thresh, m.test_topk_candidates, m.test_topk_mode) == (0.05, 1000, "pairs")
    assert (m.test_nms_thresh, m.max_detections_per_image) == (0.6, 100)
    assert m.backbone.bottom_up.stages.depth == 50
    # SGD 0.01 at batch 16, wd 1e-4 but none on norms, biases like weights; 12 epochs of
    # 7,330 iterations, steps at epochs 8 and 11, linear warm-up 1000 iterations from 0.001.
    o = cfg.optimizer
    assert (o.lr, o.momentum, o.weight_decay) == (0.01, 0.9, 1e-4)
    assert o.params._target_ is mmdet_param_groups
    assert (o.params.norm_decay_mult, o.params.bias_lr_mult, o.params.bias_decay_mult) == (0.0, 1.0, 1.0)
    assert cfg.dataloader.train.total_batch_size == 16 and cfg.train.clip_grad_norm == 0
    assert cfg.train.max_iter == 87960
    s = cfg.lr_multiplier
    assert list(s.scheduler.milestones) == [58640, 80630]
    assert (s.warmup_method, s.warmup_factor) == ("linear", 0.001) and s.warmup_length * 87960 == pytest.approx(1000)
    refine = load("fcos_dw_refine_R_50_FPN_1x.py")
    assert refine.model.head.box_refinement is True
    assert {k: v for k, v in refine.model.head.items() if k != "box_refinement"} == {
        k: v for k, v in h.items() if k != "box_refinement"
    }
    ms = load("fcos_dw_refine_R_50_FPN_ms_2x.py")
    resize = ms.dataloader.train.mapper.augmentations[0]
    assert (tuple(resize.short_edge_length), resize.sample_style, resize.max_size) == ((480, 960), "range", 1333)
    assert ms.train.max_iter == 175920 and list(ms.lr_multiplier.scheduler.milestones) == [117280, 161260]
    assert ms.model.head.box_refinement is True
    # the R-50 model builds, and its head places points where the priors are
    model = instantiate(refine.model)
    assert model.head.strides == [8.0, 16.0, 32.0, 64.0, 128.0] and model.head.point_offset == 0.5


@pytest.mark.parametrize("name, refine", [("fcos_dw_r18_synth", False), ("fcos_dw_refine_r18_synth", True)])
def test_synth_configs_share_the_fcos_budget_and_train(name, refine):
    cfg = load(name + ".py")
    base = LazyConfig.load(os.path.join(REPO, "configs", "fcos_r18_synth.py"))
    for key in ("train", "optimizer", "lr_multiplier", "dataloader"):
        assert cfg[key] == base[key], key
    assert cfg.model.backbone == base.model.backbone and cfg.model.pixel_std == base.model.pixel_std
    h = cfg.model.head
    assert (h.channels, h.num_convs, h.in_channels) == (base.model.head.channels, base.model.head.num_convs, base.model.head.in_channels)
    assert h.box_refinement is refine and cfg.model.num_classes == 6
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    losses = model(make_inputs([[[4, 6, 40, 44], [20, 10, 60, 50]], [[8, 8, 30, 56]]], [[0, 2], [5]]))
    assert set(losses) == {"loss_cls_pos", "loss_loc", "loss_cls_neg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.head.quality.weight.grad.abs().sum() > 0
