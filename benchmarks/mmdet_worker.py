"""mmdetection side of ``benchmarks/bench_vs_mmdet.py``: one persistent process per model,
run with the mmdetection venv's python (never the project's), commanded over stdin.

    /work/mmdet-venv/bin/python benchmarks/mmdet_worker.py --model fcos --input INPUT.pt

Builds the mmdetection 3.3 model of ``--model`` as ``tools/parity/make_mmdet_fixtures.py``
does (its config from mmdet's ``.mim/configs`` as is, ``backbone.init_cfg=None``, every
state-dict entry from ``seeded_state_dict(key_spec(...), SEED)``, strict), on CPU with one
thread, and reads the input written by the benchmark (``torch.save`` of ``image``: uint8
(3, H, W) BGR, ``gt_boxes`` (4, 4) xyxy, ``gt_labels`` (4,)). Then it answers one JSON
line per command line on stdin:

* ``{"cmd": "infer", "k": K}`` -> ``{"ms": [K times]}``: each time is one
  ``model.test_step(data)`` under ``torch.no_grad()``, eval mode: mmdet's data
  preprocessor (uint8 -> float, BGR -> RGB, normalisation, padding to 32) + ``predict``
  (backbone, neck, head, per-level top-k, box decoding, batched NMS, ``rescale=True`` with
  scale factor 1), timed with ``time.perf_counter`` around the call.
* ``{"cmd": "train", "k": K}`` -> ``{"ms": [...]}``: each time is one training step without
  optimizer: ``model.zero_grad(set_to_none=True)``, ``data_preprocessor(data, True)``,
  ``model.loss`` on the 4 gt boxes, ``model.parse_losses`` (the sum of the losses, as
  ``train_step`` does), ``loss.backward()``; train mode (ResNet keeps its BN in eval,
  ``norm_eval=True``, and its frozen stage, as configured).
* ``{"cmd": "check"}`` -> detections and losses of one untimed call (a sanity check that
  both sides compute the same thing; DDOD's losses depend on its cumulative counters).
* ``{"cmd": "quit"}``.

The first line it writes is ``{"ready": true, ...}`` (versions, threads, parameters).
mmdet / mmengine may print to stdout: the protocol goes to a duplicate of the original
stdout taken at start, and file descriptor 1 and ``sys.stdout`` are pointed at stderr.
"""
import argparse
import copy
import json
import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY = os.path.join(os.path.dirname(HERE), "tools", "parity")
sys.path.insert(0, PARITY)
sys.path.insert(0, HERE)

import mmcv_ops_shim  # noqa: E402,F401  (must come before mmcv.ops / mmdet)
import torch  # noqa: E402
from make_mmdet_fixtures import MODELS_TO_DUMP, SEED, reset_ddod_counters  # noqa: E402
from timed_calls import timed_ms  # noqa: E402
from seeded_weights import key_spec, seeded_state_dict  # noqa: E402


def build_model(name):
    """The mmdet model of ``name`` with the seeded weights, as make_mmdet_fixtures.dump_model
    builds it (returns the model in eval mode and the config)."""
    import mmdet
    from mmengine.config import Config
    from mmdet.registry import MODELS

    configs_dir = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs")
    rel_cfg = MODELS_TO_DUMP[name][0]
    torch.manual_seed(SEED)
    cfg = Config.fromfile(os.path.join(configs_dir, rel_cfg))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.eval()
    sd = model.state_dict()
    seeded = type(sd)(seeded_state_dict(key_spec(sd), SEED))
    seeded._metadata = copy.deepcopy(sd._metadata)
    model.load_state_dict(seeded, strict=True)
    return model, rel_cfg


class Worker:
    def __init__(self, name, input_path):
        from mmengine.structures import InstanceData
        from mmdet.structures import DetDataSample

        self.name = name
        self.model, self.rel_cfg = build_model(name)
        data = torch.load(input_path, weights_only=True)
        image = data["image"]  # uint8 (3, H, W) BGR
        h, w = image.shape[-2:]
        meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0), pad_shape=(h, w),
                    batch_input_shape=(h, w))
        self.image = image
        self.meta = meta
        self.gt = InstanceData(bboxes=data["gt_boxes"].float(), labels=data["gt_labels"].long())
        self.DetDataSample = DetDataSample

    def data(self, train):
        sample = self.DetDataSample(metainfo=dict(self.meta))
        if train:
            sample.gt_instances = self.gt.clone()
        return dict(inputs=[self.image], data_samples=[sample])

    def infer_once(self):
        with torch.no_grad():
            return self.model.test_step(self.data(False))

    def train_once(self):
        model = self.model
        model.zero_grad(set_to_none=True)
        data = model.data_preprocessor(self.data(True), True)
        losses = model.loss(data["inputs"], data["data_samples"])
        loss, log_vars = model.parse_losses(losses)
        loss.backward()
        return log_vars

    def infer(self, k):
        self.model.eval()
        return {"ms": timed_ms(self.infer_once, k)}

    def train(self, k):
        self.model.train()
        try:
            return {"ms": timed_ms(self.train_once, k)}
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.eval()

    def check(self):
        self.model.eval()
        det = self.infer_once()[0].pred_instances
        self.model.train()
        if self.name == "ddod":
            reset_ddod_counters(self.model.bbox_head)
        log_vars = self.train_once()
        self.model.zero_grad(set_to_none=True)
        if self.name == "ddod":
            reset_ddod_counters(self.model.bbox_head)
        self.model.eval()
        losses = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in log_vars.items()}
        return {"num_detections": len(det), "scores": det.scores.tolist(), "labels": det.labels.tolist(),
                "boxes": det.bboxes.tolist(), "losses": losses}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, choices=sorted(MODELS_TO_DUMP))
    p.add_argument("--input", required=True, help="torch.save'd dict with image / gt_boxes / gt_labels")
    args = p.parse_args()

    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else written to stdout (Python or C) goes to stderr
    sys.stdout = sys.stderr

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import mmcv
    import mmdet
    import mmengine
    import torchvision
    from mmdet.utils import register_all_modules

    register_all_modules()
    worker = Worker(args.model, args.input)
    model = worker.model
    protocol.write(json.dumps({
        "ready": True, "pid": os.getpid(), "config": worker.rel_cfg, "threads": torch.get_num_threads(),
        "versions": {"mmdet": mmdet.__version__, "mmcv": mmcv.__version__, "mmengine": mmengine.__version__,
                     "torch": torch.__version__, "torchvision": torchvision.__version__},
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "executable": sys.executable,
    }) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "quit":
                break
            if cmd["cmd"] == "infer":
                out = worker.infer(int(cmd["k"]))
            elif cmd["cmd"] == "train":
                out = worker.train(int(cmd["k"]))
            elif cmd["cmd"] == "check":
                out = worker.check()
            else:
                out = {"error": f"unknown command {cmd['cmd']!r}"}
        except Exception as e:  # reported to the benchmark, which stops
            import traceback

            traceback.print_exc()
            out = {"error": f"{type(e).__name__}: {e}"}
        protocol.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
