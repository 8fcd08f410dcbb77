"""End-to-end tiny DslaATSS: ATSS / Dynamic ATSS with the centerness or IoU branch and
focal / QFL / VFL, forward + backward + inference; and the meta-architecture's wiring of
the Dynamic ATSS soft targets (y = PIoU) and IoU-branch targets."""
import pytest
import torch

import dsla_d2  # noqa: F401
from detectron2.utils.events import EventStorage

from dsla_d2.assigners.atss import ATSSAssigner, DynamicATSSAssigner
from dsla_d2.box_ops import aligned_box_iou
from dsla_d2.box_coders import DeltaBoxCoder
from dsla_d2.heads import ATSSHead
from dsla_d2.losses import DenseDetectionLoss
from dsla_d2.meta_arch import DslaATSS
from dsla_d2.priors import PriorGenerator
from dsla_d2.quality import QualityCoupling

from tiny import TwoLevelBackbone, make_inputs

BOXES = [[[4, 6, 40, 30], [30, 20, 60, 62]], [[10, 10, 30, 50]]]
CLASSES = [[0, 2], [1]]


def tiny_atss(assigner, branch="centerness", cls_target="static", cls_loss="focal", box_coder=None):
    torch.manual_seed(0)
    return DslaATSS(
        backbone=TwoLevelBackbone(),
        head=ATSSHead(in_channels=16, num_classes=3, num_levels=2, channels=16, num_convs=1, norm=""),
        head_in_features=["p3", "p4"],
        prior_generator=PriorGenerator([8, 16], offset=0.5, anchor_scale=4),
        box_coder=box_coder or DeltaBoxCoder(),
        assigner=assigner,
        quality=QualityCoupling(branch=branch, cls_target=cls_target),
        loss=DenseDetectionLoss(cls_loss=cls_loss, box_loss="giou", box_weight=2.0, box_normalizer="sum_weights"),
        num_classes=3,
        pixel_std=[57.0, 57.0, 57.0],
    )


VARIANTS = [
    # (assigner, branch, cls_target, cls_loss)
    ("atss", "centerness", "static", "focal"),  # ATSS
    ("dynamic", "centerness", "static", "focal"),  # Table 1 ATSS+CIoUs
    ("dynamic", "centerness", "iou", "qfl"),  # Table 2 row 4
    ("dynamic", "centerness", "iou", "vfl"),  # Table 2 row 5
    ("dynamic", "iou", "iou", "qfl"),  # Table 2 row 6 (Dynamic ATSS)
    ("dynamic", "iou", "iou", "vfl"),  # Table 2 row 7
    ("schedule", "centerness", "static", "focal"),  # Table 3 D_up / D_down
]


@pytest.mark.parametrize("kind, branch, cls_target, cls_loss", VARIANTS)
def test_forward_backward_inference(kind, branch, cls_target, cls_loss):
    if kind == "atss":
        assigner = ATSSAssigner()
    elif kind == "dynamic":
        assigner = DynamicATSSAssigner()
    else:
        assigner = DynamicATSSAssigner(pred_iou_weight="up", anchor_iou_weight="down")
    model = tiny_atss(assigner, branch, cls_target, cls_loss)
    model.set_training_progress(30, 100)
    model.train()
    inputs = make_inputs(BOXES, CLASSES)
    with EventStorage(30):
        losses = model(inputs)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_quality"}
    for name, value in losses.items():
        assert torch.isfinite(value) and value.item() > 0, name
    sum(losses.values()).backward()
    head_grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in head_grads)
    assert model.head.quality.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([{"image": inputs[0]["image"], "height": 64, "width": 64}])
    assert len(out) == 1 and len(out[0]["instances"]) <= 100


def test_empty_batch_trains():
    model = tiny_atss(DynamicATSSAssigner(), "iou", "iou", "vfl")
    model.train()
    losses = model(make_inputs([[], []]))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


class AnchorCoder(DeltaBoxCoder):
    """Decodes every prediction to its anchor (zero deltas), keeping the graph: the
    predicted box of a prior is known, PIoU = AIoU."""

    def decode(self, pred, priors):
        return super().decode(pred * 0.0, priors)


def test_meta_arch_feeds_piou_to_soft_targets_and_iou_branch():
    # With predicted boxes = anchors, PIoU = AIoU, and with Dynamic ATSS (1:1) the matched
    # CIoU is 2·AIoU: the soft target y and the IoU-branch target of each positive must
    # both equal IoU(predicted box, assigned gt) = matched CIoU / 2.
    model = tiny_atss(DynamicATSSAssigner(), branch="iou", cls_target="iou", cls_loss="qfl", box_coder=AnchorCoder())
    model.train()
    seen = {}
    loss_forward = model.loss.forward
    classification = model.loss.classification
    branch_loss = model.quality.branch_loss

    def capture_loss(outputs, priors, assignment, **parts):
        seen.update(assignment=assignment, pred_boxes=outputs["pred_boxes"].detach(), priors=priors)
        return loss_forward(outputs, priors, assignment, **parts)

    def capture_targets(logits, assignment, target_scores, weights=None):
        seen["targets"] = target_scores
        return classification(logits, assignment, target_scores, weights)

    def capture_branch(quality_logits, priors, assignment, ious, **kwargs):
        seen["branch_targets"] = model.quality.branch_targets(priors, assignment, ious)
        return branch_loss(quality_logits, priors, assignment, ious, **kwargs)

    model.loss.forward = capture_loss
    model.loss.classification = capture_targets
    model.quality.branch_loss = capture_branch
    model(make_inputs(BOXES, CLASSES))
    a = seen["assignment"]
    pos = a.pos_mask
    assert pos.any()
    assert torch.allclose(seen["pred_boxes"], seen["priors"].anchors[None].expand_as(seen["pred_boxes"]))
    piou = aligned_box_iou(seen["pred_boxes"], a.box_targets)
    assert torch.allclose(seen["targets"][pos], piou[pos], atol=1e-6)
    assert torch.allclose(seen["targets"][pos], a.extras["matched_iou"][pos] / 2, atol=1e-6)
    assert (seen["targets"][~pos] == 0).all()
    assert torch.allclose(seen["branch_targets"][pos], piou[pos], atol=1e-6)
