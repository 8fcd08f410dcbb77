#!/usr/bin/env python
"""Object sizes of the embedded dataset vs the levels a detector assigns them to.

    DSLA_D2_SYNTH_ROOT=/work/data/dsla_synth python benchmarks/assignment_stats.py \\
        --variants fcos=configs/fcos_r18_synth.py atss=configs/atss_r18_synth.py \\
                   "fcos_cs=configs/fcos_r18_synth.py;model.assigner.center_sampling_radius=1.5" \\
        --images 400 --out benchmarks/results/fcos_diagnosis/assignment_stats

Takes the first ``--images`` training images, resizes their (non-crowd) boxes as the test
loader does (shorter side 192, longer ≤ 288), builds each config's priors for the padded
image (FPN size divisibility 128) and runs the config's **own assigner** on them. For
every gt size bin (sqrt(w·h) in input pixels) it writes the number of gts, the mean number
of positives per gt, the share of gts with no positive at all, and the share of the bin's
positives on each level (P3…P7); for the positives, the median regression distance
max(l, t, r, b) in pixels and in strides. Output: ``OUT.json`` and ``OUT.md``.
"""
import argparse
import json
import os
import statistics

import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from tool_common import load_config  # noqa: E402  (train_net.py's override checks)
from detectron2.config import instantiate  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from dsla_d2.box_ops import aligned_ltrb  # noqa: E402

SIZE_BINS = [0, 8, 16, 32, 64, 128, 1e8]
SHORT, LONG, DIVISIBILITY = 192, 288, 128


def resized_gts(records):
    """Per image: (H, W) padded input size, (G, 4) boxes resized as the test mapper does."""
    out = []
    for r in records:
        h, w = r["height"], r["width"]
        scale = min(SHORT / min(h, w), LONG / max(h, w))
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        boxes = [a["bbox"] for a in r["annotations"] if not a.get("iscrowd", 0)]
        b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        b = torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1) * torch.tensor([nw / w, nh / h, nw / w, nh / h])
        ph, pw = -(-nh // DIVISIBILITY) * DIVISIBILITY, -(-nw // DIVISIBILITY) * DIVISIBILITY
        out.append(((ph, pw), b))
    return out


def load_variant(spec):
    name, _, rest = spec.partition("=")
    config, *overrides = rest.split(";")
    cfg = load_config(config, overrides)
    return name, config, overrides, instantiate(cfg.model.prior_generator), instantiate(cfg.model.assigner), cfg.model.num_classes


def stats_for(prior_gen, assigner, num_classes, images):
    per_gt_pos, per_gt_levels, sizes, dist_px, dist_strides = [], [], [], [], []
    for (ph, pw), boxes in images:  # a loop over images (each has its own size)
        feats = [torch.zeros(1, 1, -(-ph // s), -(-pw // s)) for s in prior_gen.strides]
        priors = prior_gen(feats)
        inst = Instances((ph, pw), gt_boxes=Boxes(boxes), gt_classes=torch.zeros(len(boxes), dtype=torch.long))
        a = assigner(priors, [inst], num_classes)  # static assigners: no predictions needed
        matched = a.matched_gt[0]
        g = len(boxes)
        onehot = torch.zeros(len(priors), g + 1)
        onehot[torch.arange(len(priors)), torch.where(matched >= 0, matched, torch.full_like(matched, g))] = 1
        levels = torch.stack([c[:, :g].sum(0) for c in priors.split(onehot, 0)], 1)  # (G, L)
        per_gt_levels.append(levels)
        per_gt_pos.append(levels.sum(1))
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
        sizes.append((wh[:, 0] * wh[:, 1]).sqrt())
        pos = matched >= 0
        m = aligned_ltrb(priors.points[pos], boxes[matched[pos]]).max(-1).values
        dist_px.append(m)
        dist_strides.append(m / priors.strides[pos])
    pos, levels, size = torch.cat(per_gt_pos), torch.cat(per_gt_levels), torch.cat(sizes)
    bins = []
    for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
        sel = (size >= lo) & (size < hi)
        lv = levels[sel].sum(0)
        bins.append(dict(
            sqrt_area=[lo, hi if hi < 1e8 else None], gts=int(sel.sum()),
            pos_per_gt=round(pos[sel].mean().item(), 2) if sel.any() else None,
            no_positive=round((pos[sel] == 0).float().mean().item(), 3) if sel.any() else None,
            level_share=[round(v, 3) for v in (lv / lv.sum().clamp(min=1)).tolist()],
        ))
    d_px, d_st = torch.cat(dist_px), torch.cat(dist_strides)
    return dict(
        gts=len(size), pos_per_gt=round(pos.mean().item(), 2), no_positive=round((pos == 0).float().mean().item(), 3),
        level_share=[round(v, 3) for v in (levels.sum(0) / levels.sum()).tolist()],
        median_max_ltrb_px=round(d_px.median().item(), 1), median_max_ltrb_strides=round(d_st.median().item(), 2),
        gt_sqrt_area_quantiles={q: round(size.quantile(q).item(), 1) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        bins=bins,
    )


def markdown(results):
    lines = []
    for name, r in results["variants"].items():
        lines += [f"### {name}: `{r['config']}` {' '.join(r['overrides'])}", "",
                  f"{r['gts']} gts; {r['pos_per_gt']} positives per gt; {100 * r['no_positive']:.1f}% of gts without a "
                  f"positive; positives per level P3–P7 {' / '.join(f'{100 * v:.0f}%' for v in r['level_share'])}; "
                  f"median max(l,t,r,b) of a positive {r['median_max_ltrb_px']} px = {r['median_max_ltrb_strides']} strides.",
                  "", "| sqrt(area) px | gts | positives per gt | gts without positive | P3 | P4 | P5 | P6 | P7 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for b in r["bins"]:
            lo, hi = b["sqrt_area"]
            share = " | ".join(f"{100 * v:.0f}%" for v in b["level_share"])
            none = "" if b["no_positive"] is None else f"{100 * b['no_positive']:.1f}%"
            lines.append(f"| {lo}–{hi if hi else '∞'} | {b['gts']} | {b['pos_per_gt']} | {none} | {share} |")
        lines.append("")
    q = next(iter(results["variants"].values()))["gt_sqrt_area_quantiles"]
    head = (f"# Assignment statistics ({results['images']} training images, test-time scale)\n\n"
            f"Written by `benchmarks/assignment_stats.py`. gt sqrt(area) quantiles (px): "
            + ", ".join(f"{int(float(k) * 100)}%: {v}" for k, v in q.items()) + "\n\n")
    return head + "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", required=True, help="NAME=CONFIG[;key=value...]")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--dataset", default="dsla_synth_train")
    p.add_argument("--out", required=True, help="path without extension: writes OUT.json and OUT.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    images = resized_gts(DatasetCatalog.get(args.dataset)[: args.images])
    results = {"dataset": args.dataset, "images": len(images), "test_scale": [SHORT, LONG], "variants": {}}
    for spec in args.variants:
        name, config, overrides, prior_gen, assigner, num_classes = load_variant(spec)
        results["variants"][name] = dict(config=config, overrides=overrides, **stats_for(prior_gen, assigner, num_classes, images))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
