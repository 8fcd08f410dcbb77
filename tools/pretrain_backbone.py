#!/usr/bin/env python
"""Pre-train the embedded detectors' small ResNet-18-style backbone on the synthetic
classification set (:mod:`dsla_d2.data.synthetic_classification`, the stand-in for
ImageNet), and write it as an initial checkpoint for ``train.init_checkpoint``.

    python tools/pretrain_backbone.py                 # the shipped weights (seed 0)
    python tools/pretrain_backbone.py --iters 200 --output /tmp/w.pth   # a quick try

The network is the ``bottom_up`` ResNet of ``configs/common/models/small_backbone.py`` (the
same stem and stages, BatchNorm) with global average pooling and a linear classifier on
res5, the way ImageNet ResNets are trained. Recipe: SGD (momentum 0.9, Nesterov), batch
128, weight decay 5e-4 (not on norms and biases), linear warm-up then cosine decay of the
learning rate, random horizontal flips and 64 × 64 crops of the images padded by 4 px; the
BGR inputs are normalised by the embedded detectors' pixel mean and std, so the detectors
see what the backbone was trained on. The classifier is dropped.

Output: ``<output>`` (``{"model": backbone.bottom_up.* tensors, "__author__": ...}``, the
keys of the detectors' backbone, so Detectron2's ``DetectionCheckpointer`` loads it as it
loads converted ImageNet weights; BatchNorm statistics load into ``FrozenBN``), its
``.sha256``, and ``<output minus .pth>.json``: the record (recipe, seed, data, accuracy on a
held-out set of the same distribution, time, versions, command).
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dsla_d2.data.synthetic_classification import IMAGE_SIZE, SHAPE_CLASSES, make_shape_set  # noqa: E402
from dsla_d2.engine.checkpoint import write_checksum  # noqa: E402
from dsla_d2.pretrained import EMBEDDED_BACKBONE_FILE, PRETRAINED_DIR  # noqa: E402

TRAIN_SEED, VAL_SEED = 100, 101  # the sets' seeds (the detection splits use 0-3)


def build_classifier(num_classes: int):
    """The embedded backbone (``small_fpn.bottom_up``, BatchNorm) + avgpool + linear."""
    from detectron2.config import instantiate
    from detectron2.modeling.backbone import ResNet

    from dsla_d2.model_zoo import get_config

    bottom_up = get_config("configs/common/models/small_backbone.py").small_fpn.bottom_up
    stem, stages = instantiate(bottom_up.stem), instantiate(bottom_up.stages)
    return ResNet(stem, stages, num_classes=num_classes, out_features=None, freeze_at=0)  # None: ["linear"]


def pixel_stats():
    """The embedded detectors' (pixel_mean, pixel_std), BGR."""
    from dsla_d2.model_zoo import get_config

    model = get_config("configs/fcos_r18_synth.py").model
    return [float(v) for v in model.pixel_mean], [float(v) for v in model.pixel_std]


def batches(images, labels, batch, rng, pad=4):
    """Endless shuffled epochs of (uint8 (B, H, W, 3), labels) with flips and padded crops."""
    n, size = len(images), images.shape[1]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            idx = order[start:start + batch]
            dy, dx = rng.integers(0, 2 * pad + 1, size=2)
            x = padded[idx, dy:dy + size, dx:dx + size]
            flip = rng.random(batch) < 0.5
            x[flip] = x[flip, :, ::-1]
            yield x, labels[idx]


def to_tensor(x, mean, std):
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    return (t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def accuracy(model, images, labels, mean, std, batch=500):
    model.eval()
    correct = 0
    for start in range(0, len(images), batch):
        logits = model(to_tensor(images[start:start + batch], mean, std))["linear"]
        correct += int((logits.argmax(1) == torch.from_numpy(labels[start:start + batch])).sum())
    model.train()
    return correct / len(images)


def lr_at(it, iters, base_lr, warmup):
    if it < warmup:
        return base_lr * (it + 1) / warmup
    return 0.5 * base_lr * (1 + math.cos(math.pi * (it - warmup) / max(iters - warmup, 1)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join(PRETRAINED_DIR, EMBEDDED_BACKBONE_FILE))
    parser.add_argument("--train-images", type=int, default=50000)
    parser.add_argument("--val-images", type=int, default=5000)
    parser.add_argument("--iters", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    parser.add_argument("--log-period", type=int, default=200)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    train_x, train_y = make_shape_set(TRAIN_SEED, args.train_images)
    val_x, val_y = make_shape_set(VAL_SEED, args.val_images)
    data_s = time.time() - t0
    print(f"data: {len(train_x)} train / {len(val_x)} val images of {IMAGE_SIZE} px in {data_s:.0f} s", flush=True)

    mean, std = pixel_stats()
    model = build_classifier(len(SHAPE_CLASSES))
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, momentum=0.9, nesterov=True,
    )
    stream = batches(train_x, train_y, args.batch, rng)
    curve = []
    t1 = time.time()
    for it in range(args.iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, args.iters, args.lr, args.warmup)
        x, y = next(stream)
        loss = F.cross_entropy(model(to_tensor(x, mean, std))["linear"], torch.from_numpy(y))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at iteration {it}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (it + 1) % args.log_period == 0 or it + 1 == args.iters:
            row = {"iteration": it + 1, "loss": round(float(loss.detach()), 4), "lr": round(opt.param_groups[0]["lr"], 5)}
            if (it + 1) % (args.log_period * 5) == 0 or it + 1 == args.iters:
                row["val_top1"] = round(accuracy(model, val_x, val_y, mean, std), 4)
            curve.append(row)
            print(json.dumps(row), f"{time.time() - t1:.0f} s", flush=True)
    train_s = time.time() - t1
    top1 = accuracy(model, val_x, val_y, mean, std)
    train_top1 = accuracy(model, train_x[: args.val_images], train_y[: args.val_images], mean, std)

    state = {f"backbone.bottom_up.{k}": v.detach().clone() for k, v in model.state_dict().items()
             if not k.startswith("linear.") and not k.endswith("num_batches_tracked")}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    torch.save({"model": state, "__author__": "dsla_d2 tools/pretrain_backbone.py", "matching_heuristics": False}, args.output)
    digest = write_checksum(args.output)
    record = {
        "weights": os.path.basename(args.output),
        "sha256": digest,
        "task": "synthetic shape classification (dsla_d2.data.synthetic_classification)",
        "classes": SHAPE_CLASSES,
        "data": {"train_images": args.train_images, "train_seed": TRAIN_SEED, "val_images": args.val_images,
                 "val_seed": VAL_SEED, "image_size": IMAGE_SIZE},
        "recipe": {"iters": args.iters, "batch": args.batch, "epochs": round(args.iters * args.batch / args.train_images, 2),
                   "optimizer": "SGD momentum 0.9 nesterov", "lr": args.lr, "schedule": f"linear warm-up {args.warmup}, cosine",
                   "weight_decay": args.weight_decay, "augmentation": "flip, 4-px padded crops", "pixel_mean": mean, "pixel_std": std},
        "seed": args.seed,
        "val_top1": round(top1, 4),
        "train_top1_first_val_images": round(train_top1, 4),
        "chance_top1": round(1 / len(SHAPE_CLASSES), 4),
        "curve": curve,
        "parameters": sum(v.numel() for v in state.values() if v.is_floating_point()),
        "time_s": {"data": round(data_s, 1), "train": round(train_s, 1)},
        "env": {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
                "machine": platform.machine()},
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + (argv if argv is not None else sys.argv[1:])),
    }
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"val top-1 {top1:.4f} (chance {1 / len(SHAPE_CLASSES):.2f}); wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
