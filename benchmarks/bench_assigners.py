#!/usr/bin/env python
"""Time and extra peak memory of every assigner on COCO-sized inputs, before and after
the sparse rewrite (issue 13), as a JSON result file and markdown tables.

    python benchmarks/bench_assigners.py [--gts 10 50 200 1000 3000] [--images 1 2 8]
        [--before] [--assigners NAME ...] [--out benchmarks/results/assigners_<date>.json]
    python benchmarks/bench_assigners.py --render FILE.json [--readme README.md [--marker NAME]]

Inputs: one 800×1333 image per batch element, P3-P7 (strides 8-128, offset 0.5): 22,300
priors per image. Gts: centres uniform in the image, sides 8-400 px, clipped to the image
as Detectron2's mapper clips them. Dynamic ATSS, DDOD, TAL and SimOTA read noisy "predicted"
boxes, DDOD, TAL and SimOTA also random class logits.

Every case (assigner, implementation, gts, images) runs in a **fresh subprocess** with one
intra-op thread. Time: median wall time of up to ``--repeat`` calls after a first
(warm-up) call. Extra peak memory: growth of the process's peak resident set (VmHWM)
during one more call, after resetting the peak to the current RSS
(``/proc/self/clear_refs``). tracemalloc does not see torch's C++ allocations and torch
has no CPU peak counter, while the resident set counts every byte the call touches
(torch, numpy, Python). For that call glibc's mmap threshold is pinned at 64 KiB and the
freed heap is returned first (``mallopt``, ``malloc_trim``), so tensors are fresh pages
and the peak follows the live memory instead of hiding in memory the allocator kept from
earlier calls; the first call's growth, which also holds one-time costs (library code
paged in), is kept as ``first_call_extra_peak_mib``. On CUDA the peak
is ``torch.cuda.max_memory_allocated``. Each time is also given as a ratio to one 3×3
256→256 convolution (forward, no grad) on the P3 maps of the same batch, measured in the
same run the same way. ``--before`` adds the dense implementation of today's main, kept
under ``tests/reference`` (imported from there only for this column); dense cases whose
images × priors × gts exceeds ``--before-max-elements`` are skipped (they need gigabytes).
"""
import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH, STRIDES = 800, 1333, (8, 16, 32, 64, 128)
ASSIGNERS = {  # name -> (class name, kwargs)
    "FCOS": ("FCOSAssigner", {}),
    "FCOS (center sampling 1.5)": ("FCOSAssigner", {"center_sampling_radius": 1.5}),
    "DSLA": ("DSLAAssigner", {}),
    "ATSS": ("ATSSAssigner", {}),
    "Dynamic ATSS": ("DynamicATSSAssigner", {}),
    "FoveaBox": ("FoveaAssigner", {}),
    "DSLA-FoveaBox": ("DSLAFoveaAssigner", {}),
}
OPTIONAL = {  # once they are registered
    "DDOD": ("DDODAssigner", {}),
    "DW": ("DWAssigner", {}),
    "DW (top-k 9 per level)": ("DWAssigner", {"bag": "topk", "topk": 9}),
    "TAL": ("TaskAlignedAssigner", {}),
    "DSL (RTMDet)": ("DynamicSoftLabelAssigner", {}),
    "SimOTA": ("SimOTAAssigner", {}),
}
M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc)


# ------------------------------------------------------------------ one case (subprocess)
def make_inputs(num_images, num_gts, device, seed=0):
    import torch
    from detectron2.structures import Boxes, Instances

    from dsla_d2.priors import PriorGenerator

    g = torch.Generator().manual_seed(seed)
    feats = [torch.zeros(1, 1, math.ceil(HEIGHT / s), math.ceil(WIDTH / s), device=device) for s in STRIDES]
    priors = PriorGenerator(list(STRIDES), offset=0.5)(feats)
    gts = []
    for _ in range(num_images):
        center = torch.rand(num_gts, 2, generator=g) * torch.tensor([float(WIDTH), float(HEIGHT)])
        half = (8 + torch.rand(num_gts, 2, generator=g) * 392) / 2
        lo = torch.maximum(center - half, torch.zeros(2))
        hi = torch.minimum(center + half, torch.tensor([float(WIDTH), float(HEIGHT)]))
        inst = Instances((HEIGHT, WIDTH))
        inst.gt_boxes = Boxes(torch.cat([lo, hi], 1).to(device))
        inst.gt_classes = torch.randint(0, 80, (num_gts,), generator=g).to(device)
        gts.append(inst)
    r = len(priors)
    jitter = torch.randn(num_images, r, 4, generator=g).to(device) * 8
    boxes = priors.anchors[None].expand(num_images, r, 4) * 0.5 + jitter
    boxes = torch.cat([boxes[..., :2].minimum(boxes[..., 2:]), boxes[..., :2].maximum(boxes[..., 2:]) + 1], -1)
    return priors, gts, {"pred_boxes": boxes}


def _memory_kib():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def extra_peak(call, device):
    """Extra peak memory of one more ``call()``: {"extra_peak_mib"} (growth of the peak
    resident set) and on CUDA {"cuda_extra_peak_mib"}. Large blocks are mmapped (returned
    when freed) and the freed heap given back first, then the peak RSS is reset."""
    import torch

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    libc.malloc_trim(0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    rss0, _ = _memory_kib()
    out = call()
    if device == "cuda":
        torch.cuda.synchronize()
    _, hwm = _memory_kib()
    result = {"extra_peak_mib": (hwm - rss0) / 1024}
    if device == "cuda":
        result["cuda_extra_peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    del out
    return result


def run_case(spec):
    """Measure one case in this (fresh) process; returns a result dict."""
    import torch

    torch.set_num_threads(1)
    import dsla_d2  # noqa: F401
    from dsla_d2 import assigners

    device = spec["device"]
    if spec["kind"] == "conv":
        conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device)
        x = torch.randn(spec["images"], 256, math.ceil(HEIGHT / 8), math.ceil(WIDTH / 8), device=device)
        call = lambda: conv(x)  # noqa: E731
    else:
        cls_name, kwargs = spec["class"], spec["kwargs"]
        if spec["kind"] == "before":
            cls = getattr(_dense_module(), "Dense" + cls_name)
        else:
            cls = getattr(assigners, cls_name, None) or assigners.ASSIGNER_REGISTRY.get(cls_name)
        assigner = cls(**kwargs).to(device)
        priors, gts, preds = make_inputs(spec["images"], spec["gts"], device)
        if "cls_logits" in assigner.required_predictions:  # DDOD reads class scores
            g = torch.Generator().manual_seed(1)
            preds["cls_logits"] = torch.randn(spec["images"], len(priors), 80, generator=g).to(device)
        call = lambda: assigner(priors, gts, 80, preds)  # noqa: E731
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        rss0, _ = _memory_kib()
        t0 = time.perf_counter()
        out = call()  # first call: one-time costs (code pages, caches) land here
        sync()
        first = time.perf_counter() - t0
        _, hwm = _memory_kib()
        result = {"first_ms": first * 1000, "first_call_extra_peak_mib": (hwm - rss0) / 1024}
        del out
        budget = time.perf_counter() + spec["max_seconds"]
        for _ in range(spec["repeat"]):  # timing: the allocator as in training
            t0 = time.perf_counter()
            out = call()
            sync()
            times.append(time.perf_counter() - t0)
            del out
            if time.perf_counter() > budget:
                break
        result.update(extra_peak(call, device))
    result.update(ms=statistics.median(times) * 1000, runs=len(times))
    if spec["kind"] != "conv":
        result["positives"] = int(assigner(priors, gts, 80, preds).pos_mask.sum())
    return result


def in_subprocess(spec):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ driver
def assigner_table(names=None):
    """{name: (class name, kwargs)} of the registered assigners; only ``names`` if given."""
    import dsla_d2  # noqa: F401
    from dsla_d2.assigners import ASSIGNER_REGISTRY

    table = dict(ASSIGNERS)
    table.update({k: v for k, v in OPTIONAL.items() if v[0] in ASSIGNER_REGISTRY})
    if names:
        unknown = sorted(set(names) - set(table))
        if unknown:
            raise SystemExit(f"--assigners: unknown {unknown}; known: {sorted(table)}")
        table = {k: table[k] for k in names}
    return table


def run_all(args):
    import torch

    rows, convs = [], {}
    base = {"device": args.device, "repeat": args.repeat, "max_seconds": args.max_seconds}
    for n in args.images:
        convs[n] = in_subprocess(dict(base, kind="conv", images=n))
        print(f"conv 3x3 256->256 on P3, {n} image(s): {convs[n]['ms']:.0f} ms", flush=True)
    priors_per_image = sum(math.ceil(HEIGHT / s) * math.ceil(WIDTH / s) for s in STRIDES)
    for name, (cls_name, kwargs) in assigner_table(args.assigners).items():
        for n in args.images:
            for g in args.gts:
                row = {"assigner": name, "images": n, "gts": g}
                spec = dict(base, **{"class": cls_name, "kwargs": kwargs, "images": n, "gts": g})
                row["after"] = in_subprocess(dict(spec, kind="after"))
                if args.before and n in args.before_images:
                    if n * g * priors_per_image <= args.before_max_elements and hasattr_dense(cls_name):
                        row["before"] = in_subprocess(dict(spec, kind="before", repeat=min(args.repeat, 3)))
                        if row["before"]["positives"] != row["after"]["positives"]:
                            raise RuntimeError(f"{name}: before and after disagree on {n}×{g}")
                    else:
                        row["before"] = None  # skipped: dense images × priors × gts too large
                rows.append(row)
                print(format_row(row, convs), flush=True)
    return {
        "date": datetime.date.today().isoformat(),
        "host": platform.node(),
        "machine": platform.processor() or platform.machine(),
        "device": args.device,
        "torch": torch.__version__,
        "threads": 1,
        "load_average": os.getloadavg(),
        "image": [HEIGHT, WIDTH],
        "priors_per_image": priors_per_image,
        "conv": {str(k): v for k, v in convs.items()},
        "rows": rows,
    }


def _dense_module():
    """Today's dense assigners, kept as the test reference (not part of the package)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from reference import dense_assigners

    return dense_assigners


def hasattr_dense(cls_name):
    return hasattr(_dense_module(), "Dense" + cls_name)


# ------------------------------------------------------------------ tables
def format_row(row, convs):
    a, b = row["after"], row.get("before")
    conv = convs[row["images"]]["ms"] if row["images"] in convs else convs[str(row["images"])]["ms"]
    before = f"{b['ms']:,.0f} ms, {b['extra_peak_mib']:,.0f} MiB" if b else "–"
    return (
        f"| {row['assigner']} | {row['images']} | {row['gts']} | {before} | {a['ms']:,.1f} ms | "
        f"{a['extra_peak_mib']:,.1f} MiB | {a['ms'] / conv:.3f} | {(b['ms'] / a['ms']) if b else float('nan'):,.0f}× |"
    )


def render(result, images=None):
    """Markdown: the before/after table (1 image) and the scaling table (after)."""
    convs = result["conv"]
    if "1" not in convs:
        raise SystemExit(
            "--render needs a run with 1 image (--images 1 ...): the before/after table and the conv ratio are per image"
        )
    head = (
        f"{result['date']}, {result['device']}, 1 thread, {result['image'][0]}×{result['image'][1]} image "
        f"({result['priors_per_image']:,} priors), load average {result['load_average'][0]:.2f}; "
        f"conv = one 3×3 256→256 conv on P3 ({convs['1']['ms']:.0f} ms for 1 image)\n\n"
    )
    lines = [
        "| assigner | gts | before: ms | after: ms | speed-up | before: extra MiB | after: extra MiB | after ÷ conv |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["images"] != 1:
            continue
        a, b = row["after"], row.get("before")
        lines.append(
            f"| {row['assigner']} | {row['gts']} | {_num(b, 'ms')} | {a['ms']:,.1f} | "
            f"{(b['ms'] / a['ms']) if b else float('nan'):,.0f}× | {_num(b, 'extra_peak_mib')} | "
            f"{a['extra_peak_mib']:,.1f} | {a['ms'] / convs['1']['ms']:.3f} |".replace("nan×", "–")
        )
    scaling = ["", "After, ms (extra MiB) by images × gts per image:", ""]
    gts = sorted({r["gts"] for r in result["rows"]})
    imgs = sorted({r["images"] for r in result["rows"]})
    scaling.append("| assigner | images | " + " | ".join(f"{g} gts" for g in gts) + " |")
    scaling.append("|---|---|" + "---|" * len(gts))
    for name in dict.fromkeys(r["assigner"] for r in result["rows"]):
        for n in imgs:
            cells = {r["gts"]: r["after"] for r in result["rows"] if r["assigner"] == name and r["images"] == n}
            row = [f"{cells[g]['ms']:,.1f} ({cells[g]['extra_peak_mib']:,.0f})" if g in cells else "–" for g in gts]
            scaling.append(f"| {name} | {n} | " + " | ".join(row) + " |")
    return head + "\n".join(lines + scaling) + "\n"


def _num(cell, key):
    return f"{cell[key]:,.0f}" if cell else "–"


def write_readme(path, table, source, name="bench_assigners"):
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in
    ``path`` by ``table`` (rendered from the result file ``source``)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if begin not in text or end not in text:
        raise SystemExit(f"{path} has no {begin} … {end} markers")
    a, b = text.index(begin) + len(begin), text.index(end)
    script = os.path.relpath(sys.argv[0], ROOT)
    block = f"\n<!-- rendered by {script} --render {source} -->\n{table}"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:a] + block + text[b:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gts", type=int, nargs="+", default=[10, 50, 200, 1000, 3000])
    p.add_argument("--images", type=int, nargs="+", default=[1, 2, 8])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--max-seconds", type=float, default=20.0, help="stop repeating a case after this long")
    p.add_argument("--before", action="store_true", help="also time the dense reference (tests/reference)")
    p.add_argument("--before-max-elements", type=float, default=7e7, help="skip dense cases above N·R·G")
    p.add_argument("--before-images", type=int, nargs="+", default=[1], help="image counts with a before column")
    p.add_argument("--assigners", nargs="+", default=None, help="only these (names as in the table)")
    p.add_argument("--out", default=None, help="result json (default benchmarks/results/assigners_<date>.json)")
    p.add_argument("--render", default=None, help="print the tables of a result json instead of measuring")
    p.add_argument("--readme", default=None, help="with --render: replace the README's table between markers")
    p.add_argument("--marker", default="bench_assigners", help="with --readme: <!-- MARKER:begin --> … <!-- MARKER:end -->")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(run_case(json.loads(args.worker))))
        return
    if args.render:
        with open(args.render, encoding="utf-8") as f:
            table = render(json.load(f))
        print(table)
        if args.readme:
            write_readme(args.readme, table, os.path.relpath(args.render, ROOT), name=args.marker)
        return
    print("| assigner | images | gts | before | after | after MiB | after ÷ conv | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    result = run_all(args)
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"assigners_{result['date']}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {out}\n\n" + render(result))


if __name__ == "__main__":
    main()
