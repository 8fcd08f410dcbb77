#!/usr/bin/env python
"""CPU time of the same converted model in dsla_d2 and in mmdetection 3.3, one thread, interleaved.

    python benchmarks/bench_vs_mmdet.py [--models fcos atss foveabox ddod] [--rounds 5] [--k 3]
        [--size 800x1216] [--mmdet-python /work/mmdet-venv/bin/python] [--output FILE.json]
    python benchmarks/bench_vs_mmdet.py --render FILE.json [--readme README.md]

For each model of ``tests/data/parity`` (FCOS, ATSS, FoveaBox, DDOD; R-50 FPN, 80
classes) the mmdetection weights are drawn from the fixture's key spec and seed
(``tools/parity/seeded_weights.py``) and converted onto ``configs/mmdet/<config>.py`` as
``tests/test_mmdet_parity.py`` does; mmdetection builds the same model from its own config
with the same seeded weights in ONE persistent worker process per model
(``benchmarks/mmdet_worker.py``, run by ``--mmdet-python``, the mmdetection venv of
``tools/parity/README.md``). Both sides: CPU, ``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``, the same input: the fixtures' 160 x 224 image resized (bilinear) to
``--size`` (default 800 x 1216, COCO-like; a multiple of 32, so no padding) as uint8 BGR,
and its 4 ground-truth boxes scaled with it.

What one timed call is (``time.perf_counter`` around it, in the process that runs it):

* inference, ours: ``model([{"image": uint8 (3, H, W), "height": H, "width": W}])`` under
  ``torch.no_grad()`` in eval mode: normalisation + padding (``preprocess_image``),
  backbone, FPN, head, per-level candidates, box decoding, batched NMS, rescaling to
  (height, width) (factor 1). The BGR -> RGB flip of the pytorch-style models happens
  before, untimed (Detectron2's dataset mapper does it when reading the image).
* inference, mmdetection: ``model.test_step(data)`` under ``torch.no_grad()`` in eval mode:
  the data preprocessor (uint8 -> float, BGR -> RGB, normalisation, padding) + ``predict``
  (backbone, neck, head, per-level top-k, decoding, batched NMS, ``rescale=True``, factor 1).
* train step, ours: ``model.zero_grad(set_to_none=True)``, ``model(batch)`` in train mode
  with the 4 gt boxes (inside an ``EventStorage``), the sum of the losses,
  ``loss.backward()``. No optimizer step.
* train step, mmdetection: ``model.zero_grad(set_to_none=True)``,
  ``data_preprocessor(data, True)``, ``model.loss``, ``model.parse_losses`` (their sum),
  ``loss.backward()``. No optimizer step.

Order: after an untimed check (one inference + one train step each side; its detections and
losses are compared and stored) and ``--warmup`` more untimed calls of each kind on each
side, ``--rounds`` rounds; in each round,
for each model, ``--k`` inference calls of ours and ``--k`` of mmdetection (which side goes
first alternates from round to round), then ``--k`` train steps of each in the same order.
Reported per model and kind: the median and the min–max over all timed calls (rounds x
k), ours and mmdetection's, and the ratio of the medians (ours / mmdetection: below 1 is
faster). The result file keeps every call's time.
"""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from timed_calls import timed_ms  # noqa: E402
from result_files import (  # noqa: E402
    add_result_arguments, git_commit, render_file, short_commit, today, write_result)

MODELS = {  # name -> (our config, fixture)
    "fcos": "configs/mmdet/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "atss": "configs/mmdet/atss_r50_fpn_1x_coco.py",
    "foveabox": "configs/mmdet/fovea_r50_fpn_4xb4-1x_coco.py",
    "ddod": "configs/mmdet/ddod_r50_fpn_1x_coco.py",
}
FIXTURES = os.path.join(ROOT, "tests", "data", "parity")
WORKER = os.path.join(HERE, "mmdet_worker.py")
DEFAULT_MMDET_PYTHON = "/work/mmdet-venv/bin/python"
KEEP_INITIAL = (r"loss\.level_weighting\.(cls|reg)_counts",)  # as tests/test_mmdet_parity.py
LOSS_NAMES = {"loss_cls": "loss_cls", "loss_bbox": "loss_box_reg", "loss_centerness": "loss_quality",
              "loss_iou": "loss_quality"}
MARKER = "bench_vs_mmdet"
BUILD_HELP = """\
mmdetection's python not found: {path}
Build the mmdetection venv as tools/parity/README.md says (never install mmdet into the project's .venv):

    python3 -m venv /work/mmdet-venv
    /work/mmdet-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/mmdet-venv/bin/pip install mmdet==3.3.0 mmengine mmcv-lite==2.1.0

and pass --mmdet-python /work/mmdet-venv/bin/python (the default) or wherever it is."""


# ---------------------------------------------------------------------------- input
def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HxW, e.g. 800x1216, got {text!r}")
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"--size {text}: at least 32x32")
    return h, w


def make_input(size):
    """The fixtures' image (the same in all four) resized to ``size``: uint8 (3, H, W) BGR,
    and the 4 gt boxes scaled with it."""
    fx = torch.load(os.path.join(FIXTURES, "fcos.pt"), weights_only=True)
    h0, w0 = fx["img_shape"]
    h, w = size
    image = fx["image"].permute(2, 0, 1)[None].double()  # (1, 3, h0, w0) BGR
    image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
    image = image[0].round().clamp(0, 255).to(torch.uint8).contiguous()
    scale = torch.tensor([w / w0, h / h0, w / w0, h / h0], dtype=torch.float32)
    return {"image": image, "gt_boxes": fx["gt"]["boxes"].float() * scale, "gt_labels": fx["gt"]["labels"].long()}


# ---------------------------------------------------------------------------- our side
class Ours:
    """The converted model of ``name`` (weights from the fixture's spec and seed)."""

    def __init__(self, name, data):
        import dsla_d2  # noqa: F401  (first: applies dsla_d2.compat)
        from detectron2.config import LazyConfig, instantiate
        from detectron2.structures import Boxes, Instances

        from dsla_d2.convert import convert_state_dict, mmdet_rules
        from dsla_d2.convert.mmdet import head_type_of

        sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
        from seeded_weights import seeded_state_dict

        fx = torch.load(os.path.join(FIXTURES, f"{name}.pt"), weights_only=True)
        source = seeded_state_dict(fx["spec"], fx["seed"])
        for (key, _, _), total in zip(fx["spec"], fx["weight_sums"]):
            got = float(source[key].double().sum())
            if abs(got - total) > 1e-6 + 1e-6 * abs(total):
                raise SystemExit(f"{name}: this torch does not regenerate mmdetection's weights ({key})")
        self.config = MODELS[name]
        cfg = LazyConfig.load(os.path.join(ROOT, self.config))
        model = instantiate(cfg.model)
        rules = mmdet_rules(head_type_of(source), tower_norm=bool(cfg.model.head.get("norm", "")))
        model.load_state_dict(convert_state_dict(source, rules, model.state_dict(), KEEP_INITIAL), strict=True)
        self.model = model.eval()
        image = data["image"]
        if model.input_format == "RGB":
            image = image.flip(0).contiguous()  # the dataset mapper's job, untimed
        self.image = image
        self.hw = tuple(image.shape[-2:])
        gt = Instances(self.hw)
        gt.gt_boxes = Boxes(data["gt_boxes"].clone())
        gt.gt_classes = data["gt_labels"].clone()
        self.gt = gt

    def batch(self, train):
        item = {"image": self.image, "height": self.hw[0], "width": self.hw[1]}
        if train:
            item["instances"] = self.gt
        return [item]

    def infer_once(self):
        with torch.no_grad():
            return self.model(self.batch(False))

    def train_once(self):
        model = self.model
        model.zero_grad(set_to_none=True)
        losses = model(self.batch(True))
        loss = sum(losses.values())
        loss.backward()
        return losses

    def infer(self, k):
        self.model.eval()
        return timed_ms(self.infer_once, k)

    def train(self, k):
        from detectron2.utils.events import EventStorage

        self.model.train()
        try:
            with EventStorage(0):
                return timed_ms(self.train_once, k)
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.eval()

    def check(self):
        """Detections and losses of one untimed call each (fresh level-weighting counters)."""
        from detectron2.utils.events import EventStorage

        out = self.infer_once()[0]["instances"]
        counters = {k: v.clone() for k, v in self.model.state_dict().items() if "level_weighting" in k}
        self.model.train()
        with EventStorage(0):
            losses = self.train_once()
        self.model.zero_grad(set_to_none=True)
        self.model.load_state_dict(counters, strict=False)  # back to fresh counters
        self.model.eval()
        return {"num_detections": len(out), "scores": out.scores.tolist(), "labels": out.pred_classes.tolist(),
                "boxes": out.pred_boxes.tensor.tolist(), "losses": {k: float(v.detach()) for k, v in losses.items()}}

    def parameters(self):
        ps = list(self.model.parameters())
        return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)


# ---------------------------------------------------------------------------- mmdet side
class MMDetWorker:
    """A ``benchmarks/mmdet_worker.py`` process in the mmdetection venv."""

    def __init__(self, python, name, input_path, log_dir):
        self.name = name
        self.log_path = os.path.join(log_dir, f"mmdet_worker_{name}.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)  # nothing of the project's venv
        env.pop("VIRTUAL_ENV", None)
        self.proc = subprocess.Popen([python, WORKER, "--model", name, "--input", input_path], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env, bufsize=1)
        self.info = None

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.fail("exited")
        out = json.loads(line)
        if "error" in out:
            self.fail(out["error"])
        return out

    def fail(self, what):
        self.log.flush()
        with open(self.log_path) as f:
            tail = f.read()[-4000:]
        raise SystemExit(f"mmdetection worker {self.name} (pid {self.proc.pid}): {what}\n--- its stderr "
                         f"({self.log_path}), last lines:\n{tail}")

    def ready(self):
        if self.info is None:
            self.info = self.read()
        return self.info

    def ask(self, cmd, **kw):
        self.proc.stdin.write(json.dumps(dict(cmd=cmd, **kw)) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def infer(self, k):
        return self.ask("infer", k=k)["ms"]

    def train(self, k):
        return self.ask("train", k=k)["ms"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------- measuring
def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compare(ours, theirs):
    """How close the untimed check's outputs are (informational)."""
    out = {"num_detections": [ours["num_detections"], theirs["num_detections"]]}
    o = sorted(zip(ours["scores"], ours["labels"], ours["boxes"]), reverse=True)
    t = sorted(zip(theirs["scores"], theirs["labels"], theirs["boxes"]), reverse=True)
    n = min(len(o), len(t))
    if n:
        out["max_score_diff"] = max(abs(a[0] - b[0]) for a, b in zip(o[:n], t[:n]))
        out["same_labels"] = all(a[1] == b[1] for a, b in zip(o[:n], t[:n]))
        out["max_box_diff_px"] = max(max(abs(x - y) for x, y in zip(a[2], b[2])) for a, b in zip(o[:n], t[:n]))
    out["losses_ours"] = ours["losses"]
    out["losses_mmdet"] = theirs["losses"]
    return out


def summary(calls):
    flat = [t for r in calls for t in r]
    return {"median_ms": statistics.median(flat), "min_ms": min(flat), "max_ms": max(flat), "round_ms": calls}


def measure(args):
    if not os.path.exists(args.mmdet_python):
        raise SystemExit(BUILD_HELP.format(path=args.mmdet_python))
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    load_start = os.getloadavg()
    commit = git_commit()  # at the start: the code the models are built from is imported now
    t_start = time.time()
    data = make_input(args.size)
    tmp = tempfile.mkdtemp(prefix="bench_vs_mmdet_")
    input_path = os.path.join(tmp, "input.pt")
    torch.save(data, input_path)
    print(f"input {args.size[0]}x{args.size[1]}, worker logs in {tmp}", flush=True)

    workers = {}
    try:
        for name in args.models:  # start all workers; they build while we build ours
            workers[name] = MMDetWorker(args.mmdet_python, name, input_path, tmp)
        ours = {name: Ours(name, data) for name in args.models}
        models, check_s = {}, {}
        for name in args.models:
            info = workers[name].ready()
            if info["threads"] != 1:
                raise SystemExit(f"worker {name} runs {info['threads']} threads")
            params, trainable = ours[name].parameters()
            c0 = time.perf_counter()
            theirs = workers[name].ask("check")
            check = compare(ours[name].check(), theirs)
            check_s[name] = time.perf_counter() - c0
            models[name] = {
                "model": name, "config_ours": ours[name].config, "config_mmdet": info["config"],
                "parameters": {"ours": params, "mmdet": info["parameters"]},
                "trainable_parameters": {"ours": trainable, "mmdet": info["trainable_parameters"]},
                "check": check, "first": [],
                "infer": {"ours": [], "mmdet": []}, "train": {"ours": [], "mmdet": []},
            }
            print(f"{name}: check {json.dumps({k: v for k, v in check.items() if not k.startswith('losses')})}",
                  flush=True)
            print(f"   losses ours {check['losses_ours']}\n   losses mmdet {check['losses_mmdet']}", flush=True)
            if trainable != info["trainable_parameters"]:
                print(f"   WARNING: trainable parameters differ: ours {trainable}, mmdet "
                      f"{info['trainable_parameters']}", flush=True)
        versions = workers[args.models[0]].info["versions"]

        # the check was one untimed inference + train step per side; --warmup more of each
        for name in args.models if args.warmup else ():
            w0 = time.perf_counter()
            for side in (ours[name], workers[name]):
                side.infer(args.warmup)
                side.train(args.warmup)
            print(f"{name}: warm-up {time.perf_counter() - w0:.1f} s", flush=True)
        per_round = sum(check_s.values()) * args.k
        print(f"estimated {per_round * args.rounds / 60:.1f} min for {args.rounds} round(s) of k={args.k} "
              f"(from the check's times)", flush=True)

        for r in range(args.rounds):
            mm_first = r % 2 == 1
            for name in args.models:
                sides = [("ours", ours[name]), ("mmdet", workers[name])]
                if mm_first:
                    sides.reverse()
                rec = models[name]
                rec["first"].append(sides[0][0])
                for kind in ("infer", "train"):
                    for label, side in sides:
                        rec[kind][label].append(getattr(side, kind)(args.k))
                line = ", ".join(
                    f"{kind} ours {statistics.median(rec[kind]['ours'][-1]):.0f} / mmdet "
                    f"{statistics.median(rec[kind]['mmdet'][-1]):.0f} ms" for kind in ("infer", "train"))
                print(f"round {r + 1}/{args.rounds} {name} ({sides[0][0]} first): {line}", flush=True)
    finally:
        for w in workers.values():
            w.close()
    shutil.rmtree(tmp, ignore_errors=True)  # kept when something failed: the workers' logs

    rows = []
    for name in args.models:
        rec = models[name]
        for kind in ("infer", "train"):
            rec[kind] = {side: summary(rec[kind][side]) for side in ("ours", "mmdet")}
            rec[kind]["ratio"] = rec[kind]["ours"]["median_ms"] / rec[kind]["mmdet"]["median_ms"]
        rows.append(rec)
    end = git_commit()
    if end != commit:  # someone committed or edited during the run: say so
        print(f"WARNING: HEAD / working tree changed during the run: {commit} at start, {end} at end", flush=True)
        commit.update(commit_end=end["commit"], dirty_end=end["dirty"])
    return dict(
        date=today(), **commit, command=" ".join(["python", os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        machine={"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                 "platform": platform.platform()},
        load_average_start=load_start, load_average_end=os.getloadavg(),
        torch=torch.__version__, mmdet_side=versions, mmdet_python=args.mmdet_python, threads=1,
        size=list(args.size), rounds=args.rounds, k=args.k, warmup=args.warmup,
        wall_s=time.time() - t_start, models=rows,
        timed={
            "infer_ours": "model([{image: uint8 (3,H,W), height, width}]) under no_grad, eval: normalisation, "
                          "padding, backbone, FPN, head, candidates, decoding, batched NMS, rescale (x1); "
                          "BGR->RGB flip before, untimed",
            "infer_mmdet": "model.test_step(data) under no_grad, eval: data_preprocessor (float, BGR->RGB, "
                           "normalisation, padding) + predict (backbone, neck, head, top-k, decoding, "
                           "batched NMS, rescale x1)",
            "train_ours": "zero_grad(set_to_none) + model(batch with 4 gt boxes) in train mode inside EventStorage "
                          "+ sum of losses + backward; no optimizer step",
            "train_mmdet": "zero_grad(set_to_none) + data_preprocessor(training) + model.loss + parse_losses + "
                           "backward; no optimizer step",
            "statistics": "median and min–max over all rounds x k timed calls; ratio = median ours / median mmdet",
        },
    )


def render(result):
    h, w = result["size"]
    head = (
        f"{result['date']}, {result['machine']['cpu']} ({result['machine']['cores']} cores), "
        f"{result['threads']} thread, input {h}x{w}, batch 1; {result['rounds']} interleaved round(s) of "
        f"{result['k']} call(s) per side; torch {result['torch']}, mmdet {result['mmdet_side']['mmdet']}; "
        f"load average {result['load_average_start'][0]:.2f} at start, {result['load_average_end'][0]:.2f} at "
        f"end; commit {short_commit(result)}"
        + (f" (HEAD {result['commit_end'][:7]} at end)" if result.get("commit_end") else "") + "\n\n"
    )
    lines = ["| model | inference ours (ms) | inference mmdet (ms) | ours / mmdet | train step ours (ms) | "
             "train step mmdet (ms) | ours / mmdet |", "|---|---|---|---|---|---|---|"]

    def cell(s):
        return f"{s['median_ms']:,.0f} ({s['min_ms']:,.0f}–{s['max_ms']:,.0f})"

    for r in result["models"]:
        i, t = r["infer"], r["train"]
        lines.append(f"| {r['model']} | {cell(i['ours'])} | {cell(i['mmdet'])} | {i['ratio']:.2f}× | "
                     f"{cell(t['ours'])} | {cell(t['mmdet'])} | {t['ratio']:.2f}× |")
    foot = ("\n\nmedian (min–max) over all timed calls, ms per image (inference) or per train step "
            "(forward + backward, no optimizer step).\n")
    return head + "\n".join(lines) + foot


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--k", type=int, default=3, help="timed calls of each kind per side and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of each kind per side before the rounds")
    p.add_argument("--size", type=parse_size, default=(800, 1216), help="input HxW (default 800x1216)")
    p.add_argument("--mmdet-python", default=DEFAULT_MMDET_PYTHON,
                   help=f"python of the mmdetection venv (default {DEFAULT_MMDET_PYTHON})")
    add_result_arguments(p, "vs_mmdet")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.render:
        return render_file(args.render, render, args.readme, name=MARKER)
    for name in ("rounds", "k"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be ≥ 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise SystemExit(f"--warmup must be ≥ 0, got {args.warmup}")
    result = measure(args)
    out = write_result(result, args.output, "vs_mmdet")
    print(f"\nwrote {out}\n\n{render(result)}")
    return out


if __name__ == "__main__":
    main()
