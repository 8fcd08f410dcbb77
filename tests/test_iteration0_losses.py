"""Regression guard: every embedded-dataset config's losses at iteration 0 on a fixed batch.

Refactors of the part contracts (assigner → loss → quality) must not change any number:
the losses of each config's freshly initialised model (``torch.manual_seed(0)``) on the
same two images of ``dsla_synth_tiny`` are compared **bit for bit** with
``tests/data/iteration0_losses.json``.

That file is a snapshot, not a derivation: the formulas themselves are tested against
hand-derived numbers elsewhere. Regenerate it only for a change that is *meant* to change
a config's numbers, and say which and why in the commit message::

    python tests/test_iteration0_losses.py --write
"""
import glob
import json
import os
import sys

import pytest
import torch

import dsla_d2  # noqa: F401
import detectron2.data.transforms as T
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

from dsla_d2.data import CheckedDatasetMapper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "tests", "data", "iteration0_losses.json")
PATTERNS = (
    "configs/*_r18_synth.py",
    "projects/*/configs/*_r18_synth.py",
    "projects/*/configs/synth_ablations/*.py",
)


def embedded_configs():
    found = set()
    for pattern in PATTERNS:
        found.update(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    return sorted(found)


def fixed_batch():
    """The first two images of the tiny split, resized to a shorter side of 192, no flip."""
    mapper = CheckedDatasetMapper(
        is_train=True, augmentations=[T.ResizeShortestEdge(192, max_size=288)], image_format="BGR", use_instance_mask=False
    )
    dicts = DatasetCatalog.get("dsla_synth_tiny")
    return [mapper(d) for d in dicts[:2]]


def iteration0_losses(config, batch):
    cfg = LazyConfig.load(os.path.join(ROOT, config))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    with EventStorage(0):
        losses = model(batch)
    return {k: v.detach().item() for k, v in sorted(losses.items())}


@pytest.fixture(scope="module")
def batch():
    return fixed_batch()


@pytest.fixture(scope="module")
def snapshot():
    with open(SNAPSHOT) as f:
        return json.load(f)


def test_snapshot_covers_every_embedded_config(snapshot):
    assert sorted(snapshot) == embedded_configs()


@pytest.mark.parametrize("config", embedded_configs())
def test_iteration0_losses_are_unchanged(config, batch, snapshot):
    assert iteration0_losses(config, batch) == snapshot[config]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    torch.set_num_threads(1)
    b = fixed_batch()
    out = {c: iteration0_losses(c, b) for c in embedded_configs()}
    with open(SNAPSHOT, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(out)} configs to {SNAPSHOT}")
