"""A small ResNet-18-style FPN (half width, one block per stage, BatchNorm, random init)
sized for 2 CPU cores and the embedded dataset: P3-P7 with 64 channels.

Built only from Detectron2's own ResNet/FPN blocks; swap it into any detector with
``model.backbone = small_fpn`` (and the head's ``in_channels=64``).
"""
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from dsla_d2.backbones import basic_block_stages

WIDTHS = [32, 64, 128, 256]
FPN_CHANNELS = 64

small_fpn = L(FPN)(
    bottom_up=L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=WIDTHS[0], norm="BN"),
        stages=L(basic_block_stages)(widths=WIDTHS, blocks=[1, 1, 1, 1], stem_channels=WIDTHS[0], norm="BN"),
        out_features=["res3", "res4", "res5"],
        freeze_at=0,
    ),
    in_features=["res3", "res4", "res5"],
    out_channels=FPN_CHANNELS,
    top_block=L(LastLevelP6P7)(in_channels=FPN_CHANNELS, out_channels=FPN_CHANNELS, in_feature="p5"),
)
