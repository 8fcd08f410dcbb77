"""mmdetection detectors (3.x and 2.x checkpoints share these key names) for dsla_d2's
dense detectors.

Layout of mmdetection's single-stage detectors with ResNet + FPN (``start_level=1``, 5
outputs) and a two-tower head:

* ``backbone.*``: torchvision's ResNet names (:func:`.torchvision.resnet_rules`), caffe or
  PyTorch style alike (the style is where the stride sits, a config setting, not a key);
* ``neck.lateral_convs.{0,1,2}.conv`` / ``neck.fpn_convs.{0,1,2}.conv``: Detectron2's
  ``fpn_lateral{3,4,5}`` / ``fpn_output{3,4,5}``; ``neck.fpn_convs.{3,4}.conv``: P6 and P7
  (``top_block.p6``/``p7``);
* ``bbox_head.{cls,reg}_convs.{i}.conv`` (+ ``.gn`` with a GroupNorm head): our
  ``head.{cls,reg}_tower`` Sequential of [conv, (norm), ReLU] per layer; a DCN layer's offset
  conv ``conv.conv_offset`` is our ``offset_conv``;
* the output convs, named per head (:data:`MMDET_HEADS`), and ``bbox_head.scales.{l}.scale``.
"""
from typing import Dict, List

from .mapping import KeyRule
from .torchvision import resnet_rules

__all__ = ["MMDET_HEADS", "OUR_HEADS", "mmdet_rules", "head_type_of", "check_head_matches"]

#: Output convs of each supported mmdetection head: {mmdetection name: our name}.
MMDET_HEADS: Dict[str, Dict[str, str]] = {
    "FCOSHead": {"conv_cls": "cls_logits", "conv_reg": "box_reg", "conv_centerness": "quality"},
    "ATSSHead": {"atss_cls": "cls_logits", "atss_reg": "box_reg", "atss_centerness": "quality"},
    "FoveaHead": {"conv_cls": "cls_logits", "conv_reg": "box_reg"},
    "DDODHead": {"atss_cls": "cls_logits", "atss_reg": "box_reg", "atss_iou": "quality"},
}


#: The head class of ours that computes what each mmdetection head computes.
OUR_HEADS: Dict[str, str] = {"FCOSHead": "FCOSHead", "ATSSHead": "ATSSHead", "FoveaHead": "FoveaBoxHead", "DDODHead": "ATSSHead"}


def check_head_matches(head_type: str, model_cfg) -> None:
    """Refuse converting ``head_type`` weights for a config whose head computes something
    else (FCOS weights in an ATSS config have the same shapes, not the same meaning)."""
    from .mapping import ConversionError

    target = model_cfg.head._target_
    ours = target if isinstance(target, str) else target.__name__
    ours = ours.rsplit(".", 1)[-1]
    if ours != OUR_HEADS[head_type]:
        raise ConversionError(
            f"the checkpoint holds an mmdetection {head_type}, the config builds {ours}: "
            f"convert it with a config whose head is {OUR_HEADS[head_type]} (docs/MODEL_ZOO.md)"
        )


def _tower_rules(tower_norm: bool) -> List[KeyRule]:
    step = 3 if tower_norm else 2  # [conv, norm, ReLU] or [conv, ReLU] per layer

    def conv(m):
        return f"head.{m[1]}_tower.{int(m[2]) * step}.{m[3]}"

    def offset(m):
        return f"head.{m[1]}_tower.{int(m[2]) * step}.offset_conv.{m[3]}"

    def norm(m):
        return f"head.{m[1]}_tower.{int(m[2]) * step + 1}.{m[3]}"

    return [
        KeyRule(r"bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.conv_offset\.(weight|bias)", offset),
        KeyRule(r"bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.(weight|bias)", conv),
        KeyRule(r"bbox_head\.(cls|reg)_convs\.(\d+)\.gn\.(weight|bias)", norm),
    ]


def mmdet_rules(head_type: str, tower_norm: bool = True) -> List[KeyRule]:
    """Rules from an mmdetection ``head_type`` detector (a key of :data:`MMDET_HEADS`) to
    our model; ``tower_norm``: the head's towers have a norm layer."""
    if head_type not in MMDET_HEADS:
        raise ValueError(f"head type {head_type!r}: supported are {sorted(MMDET_HEADS)}")
    outputs = [
        KeyRule(rf"bbox_head\.{src}\.(weight|bias)", rf"head.{dst}.\1") for src, dst in MMDET_HEADS[head_type].items()
    ]
    fpn = {0: "fpn_output3", 1: "fpn_output4", 2: "fpn_output5", 3: "top_block.p6", 4: "top_block.p7"}
    return [
        *resnet_rules("backbone.", "backbone.bottom_up."),
        KeyRule(r"neck\.lateral_convs\.(\d)\.conv\.(weight|bias)", lambda m: f"backbone.fpn_lateral{int(m[1]) + 3}.{m[2]}"),
        KeyRule(r"neck\.fpn_convs\.(\d)\.conv\.(weight|bias)", lambda m: f"backbone.{fpn[int(m[1])]}.{m[2]}"),
        *_tower_rules(tower_norm),
        *outputs,
        KeyRule(r"bbox_head\.scales\.(\d+)\.scale", r"head.scales.\1.scale"),
    ]


def head_type_of(state_dict) -> str:
    """The mmdetection head whose output convs ``state_dict`` holds."""
    names = {k.split(".")[1] for k in state_dict if k.startswith("bbox_head.")}
    for head_type, outputs in MMDET_HEADS.items():
        if set(outputs) <= names and not (set().union(*MMDET_HEADS.values()) - set(outputs)) & names:
            return head_type
    from .mapping import ConversionError

    raise ConversionError(f"no supported mmdetection head has the output convs {sorted(names)}; supported: {sorted(MMDET_HEADS)}")
