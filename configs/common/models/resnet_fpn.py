"""ResNet + FPN P3-P7 for the COCO detectors (Detectron2's MSRA ImageNet weights: caffe
style, BGR, FrozenBN, ``stride_in_1x1``, pixel_std 1; res2 and the stem frozen)."""
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from dsla_d2.backbones import LastLevelP6P7NoReLU


def imagenet_weights(depth: int = 50) -> str:
    """Detectron2's MSRA ImageNet weights of a ResNet-``depth`` (caffe style, BGR,
    pixel_std 1), the default ``train.init_checkpoint`` of every COCO config. Detectron2's
    ``PathManager`` downloads and caches them (``~/.torch/iopath_cache``); offline, point
    ``train.init_checkpoint`` at a local copy."""
    return f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl"


def resnet_fpn(depth: int = 50, p6_from: str = "p5", relu_before_p7: bool = True):
    """ResNet-``depth`` + FPN with 256 channels on P3-P7.

    ``p6_from="p5"``: P6 from the P5 output (FCOS, ATSS, DSLA); ``"res5"``: from C5
    (mmdetection's ``add_extra_convs="on_input"``, its FoveaBox recipe).
    ``relu_before_p7``: P7 = conv(ReLU(P6)) (Detectron2's ``LastLevelP6P7``; the FCOS and
    ATSS authors' code; mmdetection's ``relu_before_extra_convs=True``: its FCOS) or
    P7 = conv(P6) (False: ``LastLevelP6P7NoReLU``; mmdetection's ATSS, DDOD and FoveaBox,
    which leave ``relu_before_extra_convs`` at its default False).
    """
    top_block = LastLevelP6P7 if relu_before_p7 else LastLevelP6P7NoReLU
    return L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(ResNet.make_default_stages)(depth=depth, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        top_block=L(top_block)(in_channels=256 if p6_from == "p5" else 2048, out_channels=256, in_feature=p6_from),
    )
