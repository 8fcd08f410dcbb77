"""DDOD's per-level counters as training state: the same across processes (all-reduced,
gloo) as on one process with the whole batch, and carried through a killed and resumed
``train_net.py`` run (the authors' code keeps them per GPU and loses them on resume)."""
import json
import os
import signal
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dsla_d2  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog

from dsla_d2.assigners import Assignment, GTBatch
from dsla_d2.priors import PriorGenerator
from dsla_d2.losses import LevelWeighting

from test_ddod_loss import IOU_BRANCH, ddod_loss
from tiny import gt_instances

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_net  # noqa: E402


# ---------------------------------------------------------------------- two processes
def combined_batch():
    """4 images, 2 levels (8×8 + 4×4 = 80 priors), separate cls / reg matchings with very
    different positive counts per image (0 to 9), random predictions and logits."""
    g = torch.Generator().manual_seed(0)
    priors = PriorGenerator([8, 16], offset=0.0)([torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    gts = [gt_instances([[0, 0, 30, 30], [20, 20, 60, 60]], [0, 1], (64, 64)) for _ in range(4)]
    gt = GTBatch.from_instances(gts)
    cls = torch.full((4, 80), -1, dtype=torch.long)
    reg = torch.full((4, 80), -1, dtype=torch.long)
    for i, (n_cls, n_reg) in enumerate([(9, 7), (0, 1), (3, 0), (6, 8)]):  # per image, to fill
        cls[i, torch.randperm(80, generator=g)[:n_cls]] = torch.randint(0, 2, (n_cls,), generator=g)
        reg[i, torch.randperm(80, generator=g)[:n_reg]] = torch.randint(0, 2, (n_reg,), generator=g)
    a = Assignment.from_matches(gt, cls, 2, reg_matched=reg)
    xy = torch.rand(4, 80, 2, generator=g) * 40
    outputs = {
        "cls_logits": torch.randn(4, 80, 2, generator=g),
        "box_reg": torch.zeros(4, 80, 4),
        "pred_boxes": torch.cat([xy, xy + 5 + torch.rand(4, 80, 2, generator=g) * 30], -1),
        "quality": torch.randn(4, 80, 1, generator=g),
    }
    return priors, a, outputs


def half(a: Assignment, sl) -> Assignment:
    gt = GTBatch(a.gt.boxes[sl], a.gt.classes[sl], a.gt.valid[sl])
    return Assignment.from_matches(gt, a.matched_gt[sl], 2, reg_matched=a.reg_matched_gt[sl])


def losses_and_counts(priors, a, outputs):
    loss = ddod_loss(LevelWeighting(num_levels=2))
    out = loss(outputs, priors, a, box_coder=None, quality=IOU_BRANCH)
    lw = loss.level_weighting
    return torch.stack([out["loss_cls"], out["loss_box_reg"], out["loss_quality"]]), lw.cls_counts, lw.reg_counts


def _worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        priors, a, outputs = combined_batch()
        sl = slice(2 * rank, 2 * rank + 2)
        result = losses_and_counts(priors, half(a, sl), {k: v[sl] for k, v in outputs.items()})
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process_on_the_combined_batch(tmp_path):
    priors, a, outputs = combined_batch()
    losses, cls_counts, reg_counts = losses_and_counts(priors, a, outputs)
    # Hand count of the combined batch: cls positives per image 9, 0, 3, 6 → 18, reg 16.
    assert int(cls_counts.sum()) == 18 and int(reg_counts.sum()) == 16
    # Computed locally per half (no all-reduce), the counts and so the level weights and
    # normalisers differ between halves: their mean loss is not the combined loss.
    halves = [
        losses_and_counts(priors, half(a, s), {k: v[s] for k, v in outputs.items()}) for s in (slice(0, 2), slice(2, 4))
    ]
    assert not torch.equal(halves[0][1], cls_counts)
    assert not torch.allclose((halves[0][0] + halves[1][0]) / 2, losses, rtol=1e-3)
    # Two gloo processes, one half each: every process ends with the counters of the whole
    # batch, and the mean of their losses (what DDP's gradient averaging optimises) is the
    # single-process loss: N = all-reduce-mean of Σ_images max(#pos, 1), same weights.
    args = (2, str(tmp_path / "init"), str(tmp_path))
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r_losses, r_cls, r_reg in ranks:
        assert torch.equal(r_cls, cls_counts) and torch.equal(r_reg, reg_counts)
    assert torch.allclose((ranks[0][0] + ranks[1][0]) / 2, losses, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- killed and resumed
CONFIG = os.path.join(ROOT, "projects", "DDOD", "configs", "ddod_r18_synth.py")
TINY = [
    "dataloader.train.total_batch_size=1",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "dataloader.train.mapper.augmentations=[]",  # the same input at every iteration
    "model.head.num_convs=1",
    "model.head.channels=32",
    "train.log_period=1",
    "train.device=cpu",
    "train.checkpointer.period=2",
    "train.checkpointer.max_to_keep=100",
]


def one_image_json(tmp_path):
    """A 1-image COCO json from the tiny split: every batch is that image, unflipped, so a
    resumed run sees exactly the inputs an uninterrupted one sees."""
    DatasetCatalog.get("dsla_synth_tiny")  # generate the split on disk if needed
    meta = MetadataCatalog.get("dsla_synth_tiny")
    data = json.load(open(meta.json_file))
    image = next(im for im in data["images"] if sum(a["image_id"] == im["id"] for a in data["annotations"]) >= 3)
    data["images"] = [image]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(data))
    images = meta.image_root
    return ["--train-json", str(path), "--train-images", images, "--test-json", str(path), "--test-images", images]


def counters(path):
    state = torch.load(path)["model"]
    return state["loss.level_weighting.cls_counts"].tolist(), state["loss.level_weighting.reg_counts"].tolist()


def test_killed_and_resumed_run_ends_with_the_uninterrupted_counters(tmp_path):
    flags = one_image_json(tmp_path)
    whole = tmp_path / "whole"
    run = ["--config-file", CONFIG, *flags, *TINY, "train.max_iter=6"]
    train_net.main(train_net.get_parser().parse_args([*run, f"train.output_dir={whole}"]))
    # Killed (SIGKILL from inside) right after iteration 3, whose checkpoint is written ...
    out = tmp_path / "resumed"
    cmd = [sys.executable, os.path.join(ROOT, "tests", "kill_at_iteration.py"), "3", *run, f"train.output_dir={out}"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    at_kill = counters(out / "model_0000003.pth")
    # ... then resumed to the same 6 iterations.
    train_net.main(train_net.get_parser().parse_args(["--resume", *run, f"train.output_dir={out}"]))
    final, resumed = counters(whole / "model_final.pth"), counters(out / "model_final.pth")
    assert resumed == final
    # The counters grew after the resume (iterations 4 and 5 were counted on top of the
    # restored ones, not from zero as in the authors' code).
    assert all(f > k for f, k in zip(final[0] + final[1], at_kill[0] + at_kill[1]) if k > 0)
    assert sum(final[0]) > sum(at_kill[0]) > 0
