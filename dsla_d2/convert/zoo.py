"""The published mmdetection checkpoints that ``tools/convert_checkpoint.py --zoo`` knows:
where each is, its published hash and COCO AP, the mmdetection config that produced it, and
the dsla_d2 config its weights are converted for (docs/MODEL_ZOO.md lists the same).

mmdetection names each file ``<name>-<first 8 hex digits of its SHA-256>.pth``; :func:`fetch`
downloads a file once into torch.hub's cache and checks that prefix.
"""
import os
import re
from typing import Dict

__all__ = ["MMDET_ZOO", "fetch", "published_hash"]

_OPENMMLAB = "https://download.openmmlab.com/mmdetection/v2.0"

MMDET_ZOO: Dict[str, Dict[str, object]] = {
    "fcos_r50-caffe_fpn_gn-head_1x_coco": {
        "url": f"{_OPENMMLAB}/fcos/fcos_r50_caffe_fpn_gn-head_1x_coco/fcos_r50_caffe_fpn_gn-head_1x_coco-821213aa.pth",
        "box_ap": 36.6,
        "mmdet_config": "configs/fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
        "config": "configs/mmdet/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    },
    "atss_r50_fpn_1x_coco": {
        "url": f"{_OPENMMLAB}/atss/atss_r50_fpn_1x_coco/atss_r50_fpn_1x_coco_20200209-985f7bd0.pth",
        "box_ap": 39.4,
        "mmdet_config": "configs/atss/atss_r50_fpn_1x_coco.py",
        "config": "configs/mmdet/atss_r50_fpn_1x_coco.py",
    },
    "fovea_r50_fpn_4xb4-1x_coco": {
        "url": f"{_OPENMMLAB}/foveabox/fovea_r50_fpn_4x4_1x_coco/fovea_r50_fpn_4x4_1x_coco_20200219-ee4d5303.pth",
        "box_ap": 36.5,
        "mmdet_config": "configs/foveabox/fovea_r50_fpn_4xb4-1x_coco.py",
        "config": "configs/mmdet/fovea_r50_fpn_4xb4-1x_coco.py",
    },
    "ddod_r50_fpn_1x_coco": {
        "url": f"{_OPENMMLAB}/ddod/ddod_r50_fpn_1x_coco/ddod_r50_fpn_1x_coco_20220523_223737-29b2fc67.pth",
        "box_ap": 41.7,
        "mmdet_config": "configs/ddod/ddod_r50_fpn_1x_coco.py",
        "config": "configs/mmdet/ddod_r50_fpn_1x_coco.py",
    },
}


def published_hash(url: str) -> str:
    """The SHA-256 prefix in an mmdetection file name (``...-985f7bd0.pth``)."""
    m = re.search(r"-([0-9a-f]{8})\.pth$", url)
    if m is None:
        raise ValueError(f"{url} carries no hash in its name")
    return m[1]


def fetch(entry: Dict[str, object]) -> str:
    """The local path of a zoo entry's checkpoint: downloaded once into torch.hub's
    checkpoint cache, its SHA-256 checked against the published prefix."""
    import torch.hub

    url = str(entry["url"])
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, hash_prefix=published_hash(url))
    return path
