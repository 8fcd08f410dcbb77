"""DW's weighting functions and loss (dsla_d2/losses/dw_weights.py, dw_loss.py) against the
hand-derived vectors (from the paper and the authors' code) and a hand-computed
batch; gradient paths; Table 5 switches; empty and large inputs; all-reduced normalisers."""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dsla_d2.assigners import DWAssigner
from dsla_d2.losses import DWLoss
from dsla_d2.losses.dw_weights import bag_rescaled_p_neg, consistency, p_neg_curve, positive_weights
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import gt_instances

OBJ = QualityCoupling(branch="objectness", threshold_on="score")


# ---------------------------------------------------------------- weighting functions
def test_consistency_spec_vectors():
    # Paper form t = s·u^β: 0.6·0.7^5 = 0.6·0.16807 = 0.100842; e^{5t}·t = 1.655712·0.100842 = 0.166962.
    # Code form, GIoU = IoU = 0.7 → L = 0.3: p_loc = e^{−1.5} = 0.223130, t = 0.6·0.223130 = 0.133878;
    # e^{5t}t = e^{0.669390}·0.133878 = 1.953045·0.133878 = 0.261470; e^{3t}t = 1.494260·0.133878 = 0.200049.
    s, L, u = torch.tensor([0.6]), torch.tensor([0.3]), torch.tensor([0.7])
    paper = consistency(s, L, u, 5.0, "paper")
    code = consistency(s, L, u, 5.0, "code")
    assert paper.item() == pytest.approx(0.100842, abs=1e-6) and code.item() == pytest.approx(0.133878, abs=1e-6)
    assert (torch.exp(5 * paper) * paper).item() == pytest.approx(0.166962, abs=1e-6)
    # A one-member bag (G = 1): code w_pos = e^{5t}t / e^{3t}t = 0.261470/0.200049 = 1.307030;
    # paper w_pos = 1 (normalised to sum 1).
    one = torch.zeros(1, dtype=torch.long)
    assert positive_weights(code, torch.ones(1), one, 1).item() == pytest.approx(1.307030, abs=1e-5)
    assert positive_weights(paper, torch.ones(1), one, 1, form="paper").item() == pytest.approx(1.0)


def test_bag_normalisation_spec_vectors():
    # Bag t = [0.5, 0.2, 0.05], G = [1, 0.6, 0.3]:
    #   e^{3t}tG = [4.481689·0.5, 1.822119·0.12, 1.161834·0.015] = [2.240845, 0.218654, 0.017428],
    #   denominator 2.476926;
    #   e^{5t}tG = [12.182494·0.5, 2.718282·0.12, 1.284025·0.015] = [6.091247, 0.326194, 0.019260];
    #   code w_pos = e^{5t}tG / 2.476926 = [2.459196, 0.131693, 0.007776] (sum 2.60, not 1: on purpose).
    #   paper w_pos = e^{5t}tG / Σ e^{5t}tG = / 6.436701 = [0.946331, 0.050677, 0.002992].
    # A second bag (id 1, one member) is interleaved and must not leak into bag 0's sums.
    t = torch.tensor([0.5, 0.3, 0.2, 0.05])
    g = torch.tensor([1.0, 1.0, 0.6, 0.3])
    bag = torch.tensor([0, 1, 0, 0])
    code = positive_weights(t, g, bag, 2)
    assert code[[0, 2, 3]].tolist() == pytest.approx([2.459196, 0.131693, 0.007776], abs=1e-6)
    # bag 1 alone: e^{5·0.3}/e^{3·0.3} = e^{0.6} = 1.822119
    assert code[1].item() == pytest.approx(1.822119, abs=1e-6)
    paper = positive_weights(t, g, bag, 2, form="paper")
    assert paper[[0, 2, 3]].tolist() == pytest.approx([0.946331, 0.050677, 0.002992], abs=1e-6)
    # A bag whose t are all 0 (denominator clamped at 1e-12): weights 0, never NaN.
    assert positive_weights(torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.long), 1).tolist() == [0.0, 0.0]


def test_p_neg_curves():
    # Code curve f(u) = (1 − u²)/(1 − 0.25) = 4/3·(1 − u²), 1 below 0.5:
    #   P(0.7) = 4/3·0.51 = 0.68, P(0.4) = 1, P(1.0) = 0; I_neg(0.6) = 0.36; w_neg = 0.68·0.36 = 0.2448.
    u = torch.tensor([0.7, 0.4, 1.0])
    code = p_neg_curve(u, 2.0, "code")
    assert code.tolist() == pytest.approx([0.68, 1.0, 0.0], abs=1e-6)
    assert (code[0] * 0.6**2).item() == pytest.approx(0.2448, abs=1e-6)
    # Paper curve (eq. 6) −k·u² + b through (0.5, 1) and (0.95, 0): k = 1/(0.9025 − 0.25) = 1.532567,
    # b = 0.9025·k = 1.383142; P(0.7) = 1.383142 − 0.49·1.532567 = 0.632184; P(0.5) = 1; P(0.3) = 1;
    # P(0.95) = 0 and 0 beyond (P(0.99) = 0).
    paper = p_neg_curve(torch.tensor([0.7, 0.5, 0.3, 0.95, 0.99]), 2.0, "paper")
    assert paper.tolist() == pytest.approx([0.632184, 1.0, 1.0, 0.0, 0.0], abs=1e-6)


def test_p_neg_bag_rescaling_spec_vectors():
    # Bag A, IoUs [0.3, 0.55, 0.7, 0.9]: f = 4/3·(1 − u²) = [1.213333, 0.93, 0.68, 0.253333];
    #   t1 = 0.253333, t2 = min(1, 1.213333) = 1; P = (f − t1)/(1 − t1) = [·, 0.676667/0.746667,
    #   0.426667/0.746667, 0] = [1 (u < 0.5), 0.90625, 0.571429, ≈0].
    # Bag B, IoUs [0.6, 0.7, 0.9]: f = [0.853333, 0.68, 0.253333], t1 = 0.253333, t2 = 0.853333:
    #   P = [1, 0.426667/0.6, 0] = [1, 0.711111, ≈0].
    # Bag C, a single point (u 0.8): ε/ε = 1.
    iou = torch.tensor([0.3, 0.55, 0.6, 0.7, 0.7, 0.9, 0.9, 0.8])
    bag = torch.tensor([0, 0, 1, 0, 1, 0, 1, 2])
    p = bag_rescaled_p_neg(iou, bag, 3)
    assert p[bag == 0].tolist() == pytest.approx([1.0, 0.90625, 0.571429, 0.0], abs=1e-6)
    assert p[bag == 1].tolist() == pytest.approx([1.0, 0.711111, 0.0], abs=1e-6)
    assert p[bag == 2].tolist() == [1.0]
    # A bag with every IoU below 0.5: all 1, finite.
    assert bag_rescaled_p_neg(torch.tensor([0.1, 0.4]), torch.zeros(2, dtype=torch.long), 1).tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- a hand-computed batch
def hand_batch():
    """One image, s 8, points p0..p3 at (4, 4), (12, 4), (20, 4), (28, 4); 2 classes.

    gt (0, 0, 24, 8), class 0: bag {p0, p1, p2} (28 is outside), centre (12, 4), offsets
    −1, 0, 1 strides → G = [0.666436, 1, 0.666436]. Predicted boxes inside the gt (GIoU =
    IoU): p0 (0, 0, 24, 4.4) IoU 105.6/192 = 0.55, p1 = the gt (IoU 1), p2 (0, 0, 24, 5.6) IoU
    0.7. Class-0 logits ln 3 (σ 0.75) at p0-p2, ln(5/3) (σ 0.625) at p3; objectness ln 4 (σ 0.8)
    everywhere → s = 0.6 at p0-p2, 0.5 at p3; class-1 logits −30 (s ≈ 7e-14: negligible).
    """
    priors = PriorGenerator([8], offset=0.5)([torch.zeros(1, 1, 1, 4)])
    a = DWAssigner()(priors, [gt_instances([[0, 0, 24, 8]], [0], (8, 32))], 2)
    cls = torch.full((1, 4, 2), -30.0)
    cls[0, :3, 0] = math.log(3.0)
    cls[0, 3, 0] = math.log(5 / 3)
    out = {
        "cls_logits": cls.requires_grad_(),
        "quality": torch.full((1, 4, 1), math.log(4.0), requires_grad=True),
        "pred_boxes": torch.tensor([[[0, 0, 24, 4.4], [0, 0, 24, 8], [0, 0, 24, 5.6], [20, 0, 36, 8]]], requires_grad=True),
    }
    out["box_reg"] = out["pred_boxes"]
    return priors, a, out


# Hand values of this batch:
#   L = 1 − GIoU = [0.45, 0, 0.3]; t = 0.6·e^{−5L} = [0.6·0.105399, 0.6, 0.6·0.223130] = [0.063240, 0.6, 0.133878]
#   e^{5t}tG = [1.372343·0.063240·0.666436, e^3·0.6, 1.953045·0.133878·0.666436] = [0.057819, 12.051322, 0.174253]
#   e^{3t}tG = [1.208826·0.063240·0.666436, e^{1.8}·0.6, 1.494260·0.133878·0.666436] = [0.050950, 3.629788, 0.133320]
#   denominator 3.814058 → w_pos = [0.015159, 3.159711, 0.045687], Σ = 3.220558
#   N_gt = 1: loss_cls_pos = 0.25·3.220558·(−ln 0.6 = 0.510826) = 0.411286
#             loss_loc = 0.25·5·(0.015159·0.45 + 0 + 0.045687·0.3) = 0.025660
#   P_neg: f = 4/3·(1 − u²) = [0.93, 0, 0.68], t1 = 0, t2 = 0.93 → P = [1, ≈0, 0.731183]
#   cells (s²·(−ln(1 − s)) · P): p0 0.36·0.916291·1 = 0.329865, p1 ≈ 0, p2 ·0.731183 = 0.241191,
#   p3 (outside, P = 1) 0.25·0.693147 = 0.173287 → Σ 0.744343;  N_neg = Σ(1 − P) = 1.268817
#   loss_cls_neg = 0.744343/1.268817 = 0.586643
W_POS = [0.015159, 3.159711, 0.045687]
N_NEG = 1.268817


def test_loss_elements_spec_vectors():
    # −ln(1 − 0.6)·0.68·0.36 = 0.916291·0.2448 = 0.224308; −ln 0.6 = 0.510826.
    assert -math.log(0.4) * 0.68 * 0.36 == pytest.approx(0.224308, abs=1e-6)
    priors, a, out = hand_batch()
    terms = DWLoss().terms(out, a, OBJ)
    assert (-terms.log_score).tolist() == pytest.approx([0.510826] * 3, abs=1e-6)
    assert terms.neg_bce[0, :3, 0].tolist() == pytest.approx([0.916291] * 3, abs=1e-6)


def test_hand_batch_losses():
    priors, a, out = hand_batch()
    loss = DWLoss()
    terms = loss.terms(out, a, OBJ)
    assert terms.pos_weight.tolist() == pytest.approx(W_POS, abs=1e-6)
    assert terms.neg_factor[0, :, 0].tolist() == pytest.approx([1.0, 0.0, 0.731183, 1.0], abs=1e-6)
    assert (terms.neg_factor[0, :, 1] == 1).all()  # other classes: 1
    losses = loss(out, priors, a, box_coder=None, quality=OBJ)
    assert losses["loss_cls_pos"].item() == pytest.approx(0.411286, abs=1e-5)
    assert losses["loss_loc"].item() == pytest.approx(0.025660, abs=1e-5)
    assert losses["loss_cls_neg"].item() == pytest.approx(0.586643, abs=1e-5)


@pytest.mark.parametrize(
    "variant, normalizer, expected",
    [
        # positive weights only: in-bag cells 0, p3 0.173287; N_gt = 1
        ("pos_only", "num_gts", 0.173287),
        # without P_neg: every cell s²: 3·0.329865 + 0.173287 = 1.162881; N_gt = 1
        ("no_p_neg", "num_gts", 1.162881),
        # without I_neg: in-bag P·(−ln 0.4) = 0.916291 + 0 + 0.669976, p3 0.173287 → 1.759554/1.268817
        ("no_i_neg", "one_minus_p_neg", 1.386767),
        # w_neg = 1 − w_pos in the bag: [0.984841, 0 (clamped), 0.954313]·0.916291 + 0.173287 = 1.950115;
        # N_neg = Σ w_pos clamped to 1 = 0.015159 + 1 + 0.045687 = 1.060846 → 1.838263
        ("one_minus_pos", "one_minus_p_neg", 1.838263),
    ],
)
def test_table5_negative_weight_variants(variant, normalizer, expected):
    priors, a, out = hand_batch()
    losses = DWLoss(negative_weights=variant, neg_normalizer=normalizer)(out, priors, a, box_coder=None, quality=OBJ)
    assert losses["loss_cls_neg"].item() == pytest.approx(expected, abs=1e-5)
    assert losses["loss_cls_pos"].item() == pytest.approx(0.411286, abs=1e-5)  # positives unchanged


def test_same_class_overlaps_take_the_minimum_p_neg():
    # gt 0 as in the hand batch: P = [1, ≈0, 0.731183] on p0-p2. gt 1 = (0, 0, 24, 6) (area
    # 144), the same bag {p0, p1, p2}; IoUs of the same predictions: p0 105.6/144 = 0.733333,
    # p1 144/192 = 0.75 (the prediction contains gt 1), p2 134.4/144 = 0.933333;
    # f = 4/3·(1 − u²) = [0.616296, 0.583333, 0.171852], t1 = 0.171852, t2 = 0.616296
    # → P = [1, 0.411481/0.444444 = 0.925833, ≈0].
    # Same class: each cell takes the minimum → [1, ≈0, ≈0]; p3 (no bag) stays 1.
    priors, _, out = hand_batch()
    boxes = [[0, 0, 24, 8], [0, 0, 24, 6]]
    a = DWAssigner()(priors, [gt_instances(boxes, [0, 0], (8, 32))], 2)
    terms = DWLoss().terms(out, a, OBJ)
    assert terms.neg_factor[0, :, 0].tolist() == pytest.approx([1.0, 0.0, 0.0, 1.0], abs=1e-6)
    # Different classes: each gt writes into its own class's column.
    b = DWAssigner()(priors, [gt_instances(boxes, [0, 1], (8, 32))], 2)
    t2 = DWLoss().terms(out, b, OBJ)
    assert t2.neg_factor[0, :, 0].tolist() == pytest.approx([1.0, 0.0, 0.731183, 1.0], abs=1e-6)
    assert t2.neg_factor[0, :, 1].tolist() == pytest.approx([1.0, 0.925833, 0.0, 1.0], abs=1e-6)


# ---------------------------------------------------------------- gradients
def test_positive_weights_are_detached():
    # ∂loss_cls_pos/∂c at p2 (class 0) = 0.25·w2·∂(−ln s)/∂c = −0.25·w2·(1 − σ(c))
    #   = −0.25·0.045687·0.25 = −0.0028554: exactly the weighted log-loss, no term through w_pos.
    # loss_loc has no gradient to the class or objectness logits (t is detached).
    priors, a, out = hand_batch()
    losses = DWLoss()(out, priors, a, box_coder=None, quality=OBJ)
    g_cls, = torch.autograd.grad(losses["loss_cls_pos"], out["cls_logits"], retain_graph=True)
    assert g_cls[0, 2, 0].item() == pytest.approx(-0.0028554, abs=1e-6)
    g = torch.autograd.grad(losses["loss_loc"], [out["cls_logits"], out["quality"]], retain_graph=True, allow_unused=True)
    assert all(x is None or (x == 0).all() for x in g)
    # P_neg is detached too: the negative term has no gradient to the boxes.
    g_box = torch.autograd.grad(losses["loss_cls_neg"], out["pred_boxes"], allow_unused=True)[0]
    assert g_box is None or (g_box == 0).all()


def test_i_neg_is_not_detached():
    # p3 (outside the bag, P = 1), class 0: s = 0.5, σ(c) = 0.625, ∂s/∂c = s(1 − σ(c)) = 0.1875.
    # d/ds [s²·(−ln(1 − s))] = 2s·(−ln(1 − s)) + s²/(1 − s) = 0.693147 + 0.5 = 1.193147
    # → ∂loss_cls_neg/∂c = 1.193147·0.1875/1.268817 = 0.176318. (With s² detached it would be
    # 0.5·0.1875/1.268817 = 0.073888.)
    priors, a, out = hand_batch()
    losses = DWLoss()(out, priors, a, box_coder=None, quality=OBJ)
    g, = torch.autograd.grad(losses["loss_cls_neg"], out["cls_logits"])
    assert g[0, 3, 0].item() == pytest.approx(0.176318, abs=1e-6)


def test_objectness_learns_only_through_the_score():
    # s_c = σ(c_c)·σ(o): ∂L/∂c_c = ∂L/∂s_c·s_c(1 − σ(c_c)) and ∂L/∂o = Σ_c ∂L/∂s_c·s_c(1 − σ(o)),
    # so ∂L/∂o = Σ_c ∂L/∂c_c·(1 − σ(o))/(1 − σ(c_c)) holds iff o enters the loss only via s.
    g = torch.Generator().manual_seed(0)
    priors = PriorGenerator([8, 16], offset=0.5)([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)])
    a = DWAssigner()(priors, [gt_instances([[2, 3, 30, 22], [10, 5, 26, 31]], [0, 2], (32, 32))], 3)
    out = {
        "cls_logits": torch.randn(1, 20, 3, generator=g).requires_grad_(),
        "quality": torch.randn(1, 20, 1, generator=g).requires_grad_(),
        "pred_boxes": (priors.anchors[None] * 0.3 + torch.rand(1, 20, 4, generator=g) * 4).requires_grad_(),
    }
    losses = DWLoss()(out, priors, a, box_coder=None, quality=OBJ)
    assert set(losses) == {"loss_cls_pos", "loss_loc", "loss_cls_neg"}  # no objectness target
    g_c, g_o = torch.autograd.grad(sum(losses.values()), [out["cls_logits"], out["quality"]])
    sc, so = out["cls_logits"].sigmoid(), out["quality"].sigmoid()
    expect = (g_c * (1 - so) / (1 - sc)).sum(-1, keepdim=True)
    assert torch.allclose(g_o, expect, atol=1e-6) and g_o.abs().sum() > 0


# ---------------------------------------------------------------- robustness
def test_empty_images_one_point_bags_and_many_gts():
    priors = PriorGenerator([8, 16], offset=0.5)([torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    r = len(priors)

    def run(gts, c=3):
        a = DWAssigner()(priors, gts, c)
        gen = torch.Generator().manual_seed(1)
        out = {
            "cls_logits": torch.randn(len(gts), r, c, generator=gen).requires_grad_(),
            "quality": torch.randn(len(gts), r, 1, generator=gen).requires_grad_(),
            "pred_boxes": (priors.anchors[None] * 0.4 + 2).expand(len(gts), r, 4).clone().requires_grad_(),
        }
        losses = DWLoss()(out, priors, a, box_coder=None, quality=OBJ)
        sum(losses.values()).backward()
        assert all(torch.isfinite(v) for v in losses.values())
        return a, losses

    # No gt anywhere: the positive terms are 0, the negative term is Σ s²·(−ln(1 − s))/1.
    _, losses = run([gt_instances([], [], (64, 64))] * 2)
    assert losses["loss_cls_pos"].item() == 0 and losses["loss_loc"].item() == 0 and losses["loss_cls_neg"].item() > 0
    # A one-point bag: w_pos = e^{5t}t/e^{3t}t = e^{2t} > 1, P_neg = 1 (ε/ε).
    a, _ = run([gt_instances([[11, 11, 13, 13]], [1], (64, 64)), gt_instances([], [], (64, 64))])
    assert len(a.pairs) == 1
    # 1000 gts (random, many overlapping, all classes): finite, pairs ≪ R × G.
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(1000, 2, generator=gen) * 60
    boxes = torch.cat([xy, xy + 1 + torch.rand(1000, 2, generator=gen) * 30], 1)
    a, _ = run([gt_instances(boxes, torch.randint(0, 3, (1000,), generator=gen), (64, 64))])
    assert 0 < len(a.pairs) < r * 1000


def test_describe_targets_follow_the_loss_weights():
    priors, a, out = hand_batch()
    d = DWLoss().describe_targets(out, priors, a, box_coder=None, quality=OBJ)
    assert d["cls_target"][0].tolist() == pytest.approx(W_POS + [0.0], abs=1e-6)
    assert torch.equal(d["reg_weight"], d["cls_target"]) and d["reg_mask"][0].tolist() == [True, True, True, False]
    assert d["cls_target_static"][0].tolist() == pytest.approx([0.666436, 1.0, 0.666436, 0.0], abs=1e-6)
    assert d["p_neg"][0].tolist() == pytest.approx([1.0, 0.0, 0.731183, 1.0], abs=1e-6)
    assert d["neg_weight"][0, 3].item() == pytest.approx(0.25, abs=1e-6)  # s² at p3


def test_bad_configuration_is_a_clear_error():
    priors, a, out = hand_batch()
    with pytest.raises(ValueError, match="negative_weights='neither'"):
        DWLoss(negative_weights="neither")
    with pytest.raises(ValueError, match="objectness"):
        DWLoss()(out, priors, a, box_coder=None, quality=QualityCoupling(branch="centerness"))
    a.pairs = None
    with pytest.raises(ValueError, match="candidate bags"):
        DWLoss()(out, priors, a, box_coder=None, quality=OBJ)


# ---------------------------------------------------------------- all-reduced normalisers
def _batch4():
    """Four images; the halves (images 0-1 vs 2-3) have 2 and 4 gts."""
    priors = PriorGenerator([8, 16], offset=0.5)([torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 3, 3)])
    boxes = [[[2, 2, 30, 26]], [[5, 9, 21, 40]], [[1, 1, 47, 47], [3, 30, 20, 46], [24, 2, 44, 18]], [[20, 20, 44, 44]]]
    gts = [gt_instances(b, [i % 3 for i in range(len(b))], (48, 48)) for b in boxes]
    gen = torch.Generator().manual_seed(3)
    r = len(priors)
    out = {
        "cls_logits": torch.randn(4, r, 3, generator=gen),
        "quality": torch.randn(4, r, 1, generator=gen) + 1,
        "pred_boxes": priors.anchors[None] * 0.6 + torch.rand(4, r, 4, generator=gen) * 6 + 3,
    }
    return priors, gts, out


def _losses(priors, gts, out, sl):
    a = DWAssigner()(priors, gts[sl], 3)
    part = {k: v[sl] for k, v in out.items()}
    return torch.stack(list(DWLoss()(part, priors, a, box_coder=None, quality=OBJ).values()))


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        priors, gts, out = _batch4()
        torch.save(_losses(priors, gts, out, slice(2 * rank, 2 * rank + 2)), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_normalisers_all_reduced_match_single_process(tmp_path):
    # N_gt and N_neg are all-reduced means, so the mean of the two processes' losses (one
    # half of the batch each) equals the single-process loss of the whole batch; with local
    # normalisers the halves (1 + 1 gts vs 3 + 1 gts) would disagree.
    priors, gts, out = _batch4()
    whole = _losses(priors, gts, out, slice(0, 4))
    halves = [_losses(priors, gts, out, s) for s in (slice(0, 2), slice(2, 4))]
    assert not torch.allclose((halves[0] + halves[1]) / 2, whole, rtol=1e-3)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, whole, rtol=1e-5, atol=1e-7)
