"""The crowded embedded variant (issue 13): a split with hundreds of small objects per
image and a config that trains on it with ``train_net.py``."""
import json
import os
import sys
from collections import Counter

import torch

import dsla_d2  # noqa: F401
from dsla_d2.data.synthetic import SYNTH_SPLITS, ensure_synthetic_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_net  # noqa: E402


def test_crowd_split_has_hundreds_of_small_objects():
    with open(ensure_synthetic_split("crowd")) as f:
        data = json.load(f)
    assert len(data["images"]) == SYNTH_SPLITS["crowd"]["num_images"] == 8
    objects = [a for a in data["annotations"] if not a["iscrowd"]]
    per_image = Counter(a["image_id"] for a in objects)
    assert len(per_image) == 8 and all(300 <= n <= 1000 for n in per_image.values()), per_image
    sides = torch.tensor([a["bbox"][2:] for a in objects])
    assert sides.max() <= 20 and sides.median() <= 10  # 5–16 px objects, visible boxes


def test_crowd_config_trains_with_train_net(tmp_path):
    args = train_net.get_parser().parse_args(
        [
            "--config-file",
            os.path.join(ROOT, "configs", "crowd_r18_synth.py"),
            f"train.output_dir={tmp_path}",
            "train.max_iter=2",
            "train.log_period=1",
            "train.device=cpu",
            "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0",
        ]
    )
    train_net.main(args)
    with open(tmp_path / "metrics.json") as f:
        rows = [json.loads(line) for line in f]
    steps = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in steps] == [0, 1]
    assert all(torch.isfinite(torch.tensor(r["total_loss"])) for r in steps)
    assert any("bbox/AP" in r for r in rows)
