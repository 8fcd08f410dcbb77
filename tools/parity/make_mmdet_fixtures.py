"""Write whole-model parity fixtures from mmdetection 3.3 (FCOS, ATSS, FoveaBox, DDOD).

Run by hand, beside mmdetection, never in CI. The project does not depend on mmdet: the
parity tests load the fixtures written here, regenerate the same weights from the stored
key spec and seed with ``tools/parity/seeded_weights.py``, convert them to our layout and
compare outputs.

Environment (a separate venv; never install mmdet into the project's .venv)::

    python3 -m venv V
    V/bin/pip install torch==2.14.1 torchvision==0.29.1
    V/bin/pip install mmdet==3.3.0 mmengine mmcv-lite==2.1.0
    V/bin/python tools/parity/make_mmdet_fixtures.py --out tests/data/parity

``mmcv-lite`` has no compiled ops; ``mmcv_ops_shim`` (imported first) stands in for them on
CPU: nms -> torchvision.ops.nms, DCN v1 -> torchvision.ops.deform_conv2d, everything else
raises when called (see its docstring).

For each model (the mmdet config as is: 80 classes, full R-50; only
``model.backbone.init_cfg=None`` so nothing is downloaded) the script builds the model with
mmdet's registry on CPU, loads ``seeded_state_dict(key_spec(model.state_dict()), 0)``
(strict) and writes ``<out>/<name>.pt`` (``torch.save`` of plain dicts / lists / str /
float / int / bool and float32 or int64 tensors; readable with
``torch.load(path, weights_only=True)``):

- ``source``: versions and the config path (relative to mmdet's configs dir); ``seed``,
  ``num_classes``; ``spec``: ``[[name, shape, dtype], ...]`` of every state-dict key;
  ``weight_sums``: the float64 sum of each seeded tensor (to check the regeneration).
- ``model_cfg``: ``cfg.model`` as built, as text (every setting, incl. train/test cfg);
  ``test_cfg`` / ``train_cfg`` as plain values.
- ``image``: uint8 (H, W, 3) BGR, H=160, W=224 (multiples of 32: no padding); ``img_shape``.
- ``preprocess`` (mean / std / bgr_to_rgb / pad_size_divisor) and ``inputs``: the float
  (1, 3, H, W) tensor ``model.data_preprocessor`` gives the backbone.
- ``features``: the 5 neck outputs P3..P7 (``model.extract_feat``), eval mode.
- ``head``: ``model.bbox_head(features)`` in eval mode, a dict of per-level lists named by
  the head's forward return (``cls_scores``, ``bbox_preds`` + ``centernesses`` (FCOS,
  ATSS) / ``iou_preds`` (DDOD)). Raw logits / deltas: FCOS ``bbox_preds`` are already
  ``exp(scale * conv_reg)`` (norm_on_bbox=False); ATSS / DDOD ``bbox_preds`` are
  ``scale * conv_reg`` deltas; FoveaBox ``bbox_preds`` are raw log-distances.
- ``detections``: ``model.predict(inputs, [sample], rescale=False)`` with metainfo
  img_shape = ori_shape = pad_shape = batch_input_shape = (H, W), scale_factor (1, 1):
  ``boxes`` (K, 4) xyxy, ``scores`` (K,), ``labels`` (K,) int64. ``pre_nms``: ``boxes`` /
  ``scores`` / ``labels`` as mmdet hands them to ``batched_nms`` (after the per-level
  score_thr + nms_pre top-k, the score factor and the min_bbox_size filter), with
  ``num_after_topk`` (before the min_bbox_size filter), ``num_into_nms``, ``num_after_nms``
  (before max_per_img). ``ranking_margins`` (informational): the score gap at the
  max_per_img cut and, per level, the probability gap at the nms_pre cut; a
  re-implementation whose errors exceed these may legitimately rank differently.
- ``gt``: 4 boxes (xyxy) and labels; ``losses``: ``model.loss(inputs, [sample with
  gt_instances])`` in train mode (ResNet keeps its BN in eval: norm_eval=True) as
  {name: float}, list-valued (per-level) losses summed as mmdet's ``parse_losses`` does,
  with the per-level values in ``losses_per_level``.
- DDOD only: ``losses_separate_counters`` (+ ``_per_level``): the same loss with the
  per-level reweighting counters kept apart for the classification and regression branches,
  as in the authors' code (see ``ddod_reweight_recorder``), and ``ddod_reweight``: positives
  per level of each assigner and the factors used. Both computed on a fresh head (counters
  at 0).

Deterministic (one thread, fixed seeds, fixed inputs) and rerunnable: it overwrites the files.
"""
import argparse
import contextlib
import copy
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mmcv_ops_shim  # noqa: E402,F401  (must come before mmcv.ops / mmdet)
import torch  # noqa: E402
from seeded_weights import key_spec, seeded_state_dict  # noqa: E402

MODELS_TO_DUMP = {
    "fcos": ("fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
             ("cls_scores", "bbox_preds", "centernesses")),
    "atss": ("atss/atss_r50_fpn_1x_coco.py", ("cls_scores", "bbox_preds", "centernesses")),
    "foveabox": ("foveabox/fovea_r50_fpn_4xb4-1x_coco.py", ("cls_scores", "bbox_preds")),
    "ddod": ("ddod/ddod_r50_fpn_1x_coco.py", ("cls_scores", "bbox_preds", "iou_preds")),
}
SEED = 0
NUM_CLASSES = 80
H, W = 160, 224
# xyxy, at least 19 px inside the 224 x 160 image: 26.75x23.25, 40x101.75, 140x79, 18.5x20.5
# px (sqrt(area) 24.9, 63.8, 105.2, 19.5: FoveaBox levels P3 / P3+P4 / P4+P5 / P3);
# non-integer corners; 1-2, 1-3, 2-3 and 3-4 overlap. Chosen (among random draws of these
# sizes) so that DDOD's classification and regression assigners give different per-level
# positive counts ([29, 5, 0, 0, 0] vs [28, 7, 0, 0, 0]) and the counter quirk shows.
# (make_image draws them into the image, so changing them changes every fixture value.)
GT_BOXES = [[38.25, 90.25, 65.0, 113.5],
            [40.25, 38.75, 80.25, 140.5],
            [47.75, 56.0, 187.75, 135.0],
            [184.5, 67.75, 203.0, 88.25]]
GT_LABELS = [3, 17, 42, 79]


def make_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """uint8 (h, w, 3) image (read as BGR): background gradient, soft gaussian blobs, soft
    filled boxes at the ground-truth positions, mild noise."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(shape, generator=g, dtype=torch.float64)

    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5,
                            torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij")
    img = (60 + 80 * rand(3, 1, 1)) + (rand(3, 1, 1) - 0.5) * 100 * (xx / w - 0.5) \
        + (rand(3, 1, 1) - 0.5) * 100 * (yy / h - 0.5)
    for _ in range(14):
        cx, cy = rand(1) * w, rand(1) * h
        sx, sy = 5 + rand(1) * 35, 5 + rand(1) * 35
        color = (rand(3, 1, 1) - 0.5) * 220
        img = img + color * torch.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    for x1, y1, x2, y2 in GT_BOXES:  # soft-edged "objects"
        inside = (torch.sigmoid((xx - x1) / 1.5) * torch.sigmoid((x2 - xx) / 1.5)
                  * torch.sigmoid((yy - y1) / 1.5) * torch.sigmoid((y2 - yy) / 1.5))
        color = 30 + rand(3, 1, 1) * 200
        img = img * (1 - inside) + color * inside
    img = img + 4 * torch.randn((3, h, w), generator=g, dtype=torch.float64)
    return img.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def plain(x):
    """Config values / tensors -> weights_only-loadable values (tuples -> lists, tensors
    cloned so that a view does not drag its whole storage into the file)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().clone().contiguous()
        if x.is_floating_point():
            x = x.float()
        return x
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    for t in (bool, int, float, str):  # exact builtins (torch.__version__ is a str subclass)
        if isinstance(x, t):
            return t(x)
    if x is None:
        return x
    raise TypeError(f"not a plain value: {type(x)}")


def loss_values(losses):
    out, per_level = {}, {}
    for name, v in losses.items():
        if isinstance(v, (list, tuple)):
            per_level[name] = [float(t.mean()) for t in v]
            out[name] = float(sum(t.mean() for t in v))  # as mmengine's parse_losses
        else:
            out[name] = float(v.mean())
    return out, per_level


@contextlib.contextmanager
def record_pre_nms(head, record):
    """Record what mmdet's _bbox_post_process gets (after per-level top-k) and what it hands
    to batched_nms (after score factor and min_bbox_size)."""
    import mmdet.models.dense_heads.base_dense_head as bdh

    orig_nms, orig_post = bdh.batched_nms, head._bbox_post_process

    def nms(boxes, scores, idxs, nms_cfg, class_agnostic=False):
        record.update(boxes=boxes.clone(), scores=scores.clone(), labels=idxs.clone())
        dets, keep = orig_nms(boxes, scores, idxs, nms_cfg, class_agnostic)
        record["kept_scores"] = dets[:, -1].clone()
        return dets, keep

    def post(results, *args, **kwargs):
        record["num_after_topk"] = len(results)
        return orig_post(results, *args, **kwargs)

    bdh.batched_nms, head._bbox_post_process = nms, post
    try:
        yield
    finally:
        bdh.batched_nms = orig_nms
        del head._bbox_post_process


@contextlib.contextmanager
def ddod_reweight_recorder(head, record, separate_counters):
    """Record DDOD's per-level reweighting; with ``separate_counters`` also patch the quirk.

    mmdet 3.3 ``DDODHead.loss_by_feat`` calls ``calc_reweight_factor(labels_list)`` twice:
    first with the classification assigner's labels (factors for loss_cls), then with the
    regression assigner's labels (factors for loss_bbox and loss_iou). ``calc_reweight_factor``
    always adds the positives per level to ``self.cls_num_pos_samples_per_level``;
    ``self.reg_num_pos_samples_per_level`` is created but never used. So the regression
    factors come from cls + reg positives (and, because the counters are never reset,
    from every earlier call as well: on a later iteration the classification factors also
    include earlier regression positives). The authors' code (zehuichen123/DDOD,
    mmdet/models/dense_heads/ddod_head.py) accumulates classification positives in
    ``cls_num_pos_samples_per_level`` and regression positives in
    ``reg_num_pos_samples_per_level``. The patch below changes only which list the second
    (regression) call accumulates into and interpolates over: the reg list. It tells the
    calls apart by wrapping get_cls_targets / get_reg_targets, which loss_by_feat calls
    right before each of them. Everything else (factor formula, avg factors, losses) is
    mmdet's code. On a fresh head (counters at 0), loss_cls is the same either way, and
    loss_bbox / loss_iou differ unless the two assigners' per-level counts are proportional
    (a factor, 2 - (n - min) / (max - min + 1e-10), depends only on relative counts).
    """
    orig_calc = head.calc_reweight_factor
    orig_cls_t, orig_reg_t = head.get_cls_targets, head.get_reg_targets
    branch = {"name": None}
    bg = head.num_classes

    def cls_targets(*a, **k):
        branch["name"] = "cls"
        return orig_cls_t(*a, **k)

    def reg_targets(*a, **k):
        branch["name"] = "reg"
        return orig_reg_t(*a, **k)

    def calc(labels_list):
        name = branch["name"]
        record[f"{name}_pos_per_level"] = [int(((lab >= 0) & (lab < bg)).sum())
                                           for lab in labels_list]
        if separate_counters and name == "reg":
            cls_counter = head.cls_num_pos_samples_per_level
            head.cls_num_pos_samples_per_level = head.reg_num_pos_samples_per_level
            try:
                factors = orig_calc(labels_list)
            finally:
                head.cls_num_pos_samples_per_level = cls_counter
        else:
            factors = orig_calc(labels_list)
        record[f"{name}_factors"] = [float(f) for f in factors]
        return factors

    head.calc_reweight_factor, head.get_cls_targets, head.get_reg_targets = \
        calc, cls_targets, reg_targets
    try:
        yield
    finally:
        del head.calc_reweight_factor, head.get_cls_targets, head.get_reg_targets


def reset_ddod_counters(head):
    n = len(head.prior_generator.strides)
    head.cls_num_pos_samples_per_level = [0.0] * n
    head.reg_num_pos_samples_per_level = [0.0] * n


def stats(t):
    t = t.float()
    return f"mean|x|={t.abs().mean():.3g} max|x|={t.abs().max():.3g}"


def dump_model(name, rel_cfg, head_names, configs_dir, out_dir):
    import mmcv
    import mmdet
    import mmengine
    import torchvision
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from torch.nn.modules.batchnorm import _BatchNorm

    torch.manual_seed(SEED)
    cfg = Config.fromfile(os.path.join(configs_dir, rel_cfg))
    cfg.model.backbone.init_cfg = None
    assert cfg.model.bbox_head.num_classes == NUM_CLASSES
    model = MODELS.build(cfg.model)
    model.eval()

    # weights: every state-dict key from the seed (strict), with the module versions of a
    # real checkpoint (no legacy key-renaming paths in _load_from_state_dict)
    sd = model.state_dict()
    spec = key_spec(sd)
    seeded = seeded_state_dict(spec, SEED)
    seeded_od = type(sd)(seeded)
    seeded_od._metadata = copy.deepcopy(sd._metadata)
    model.load_state_dict(seeded_od, strict=True)
    after = model.state_dict()
    assert list(after) == [k for k, _, _ in spec]
    assert all(torch.equal(after[k], seeded[k]) for k in after), "weights not loaded as given"
    # (data_preprocessor.mean / .std are non-persistent buffers set from the config)
    buffers = {k for k, _ in model.named_buffers() if not k.startswith("data_preprocessor.")}
    assert buffers <= set(after), f"buffers outside the state dict: {buffers - set(after)}"

    # image -> inputs through mmdet's data preprocessor
    image = make_image(H, W, SEED)
    meta = dict(img_shape=(H, W), ori_shape=(H, W), scale_factor=(1.0, 1.0), pad_shape=(H, W),
                batch_input_shape=(H, W))
    dp = cfg.model.data_preprocessor
    data = model.data_preprocessor(
        dict(inputs=[image.permute(2, 0, 1).contiguous()],
             data_samples=[DetDataSample(metainfo=dict(meta))]), training=False)
    inputs = data["inputs"]
    assert inputs.shape == (1, 3, H, W) and inputs.dtype == torch.float32, inputs.shape
    sample = data["data_samples"][0]
    for k, v in meta.items():
        assert tuple(sample.metainfo[k]) == tuple(v), (k, sample.metainfo[k])

    fixture = {
        "source": {"mmdet": mmdet.__version__, "config": rel_cfg, "torch": torch.__version__,
                   "torchvision": torchvision.__version__, "mmcv": mmcv.__version__,
                   "mmengine": mmengine.__version__,
                   "ops": "tools/parity/mmcv_ops_shim.py: nms -> torchvision.ops.nms, "
                          "DCN v1 -> torchvision.ops.deform_conv2d"},
        "seed": SEED,
        "num_classes": NUM_CLASSES,
        "spec": [[k, list(s), d] for k, s, d in spec],
        # float64 sum of each seeded tensor, in spec order: lets a test confirm that its
        # torch regenerates the same weights from the seed
        "weight_sums": [float(seeded[k].double().sum()) for k, _, _ in spec],
        "model_cfg": Config(dict(model=cfg.model.to_dict())).pretty_text,
        "test_cfg": plain(cfg.model.test_cfg.to_dict()),
        "train_cfg": plain(cfg.model.get("train_cfg", {}) and cfg.model.train_cfg.to_dict()),
        "image": image,
        "img_shape": [H, W],
        "preprocess": {"mean": [float(v) for v in dp.mean], "std": [float(v) for v in dp.std],
                       "bgr_to_rgb": bool(dp.bgr_to_rgb),
                       "pad_size_divisor": int(dp.get("pad_size_divisor", 1))},
        "inputs": inputs,
    }

    head = model.bbox_head
    extra = {}
    if name == "ddod":  # how far the DCN samples move (informational)
        offs = []
        hook = head.cls_convs[0].conv.conv_offset.register_forward_hook(
            lambda m, i, o: offs.append(o.detach().abs()))
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        outs = head(feats)
        pre = {}
        with record_pre_nms(head, pre):
            result = model.predict(inputs, [copy.deepcopy(sample)], rescale=False)[0]
    if name == "ddod":
        hook.remove()
        o = torch.cat([t.flatten() for t in offs])
        extra["dcn_offsets"] = f"|offset| mean {o.mean():.3g} max {o.max():.3g} px"
    assert len(feats) == 5 and len(outs) == len(head_names)
    fixture["features"] = list(feats)
    fixture["head"] = {k: list(v) for k, v in zip(head_names, outs)}
    det = result.pred_instances
    fixture["detections"] = {"boxes": det.bboxes, "scores": det.scores,
                             "labels": det.labels.long()}
    fixture["pre_nms"] = {"num_after_topk": pre["num_after_topk"],
                          "num_into_nms": int(pre["boxes"].shape[0]),
                          "num_after_nms": int(pre["kept_scores"].numel()),
                          "boxes": pre["boxes"], "scores": pre["scores"],
                          "labels": pre["labels"].long()}
    # informational: how close the rankings are at the two cut-offs (float differences of a
    # re-implementation can swap candidates whose scores differ by less than this)
    max_per_img, nms_pre = int(cfg.model.test_cfg.max_per_img), int(cfg.model.test_cfg.nms_pre)
    kept = pre["kept_scores"]
    margins = {"max_per_img_gap": float(kept[max_per_img - 1] - kept[max_per_img])
               if kept.numel() > max_per_img else None, "nms_pre_gap_per_level": []}
    for cls in outs[0]:
        p = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
        p = p[p > cfg.model.test_cfg.score_thr].sort(descending=True).values
        margins["nms_pre_gap_per_level"].append(
            float(p[nms_pre - 1] - p[nms_pre]) if p.numel() > nms_pre else None)
    fixture["ranking_margins"] = margins

    # losses in train mode (BN stays in eval through ResNet.norm_eval)
    gt_boxes = torch.tensor(GT_BOXES, dtype=torch.float32)
    gt_labels = torch.tensor(GT_LABELS, dtype=torch.int64)
    fixture["gt"] = {"boxes": gt_boxes, "labels": gt_labels}
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns), "BN not frozen in train mode"
    assert model.backbone.norm_eval

    def train_sample():
        s = copy.deepcopy(sample)
        s.gt_instances = InstanceData(bboxes=gt_boxes.clone(), labels=gt_labels.clone())
        return s

    with torch.no_grad():
        if name == "ddod":
            rw = {}
            reset_ddod_counters(head)
            with ddod_reweight_recorder(head, rw, separate_counters=False):
                losses = model.loss(inputs, [train_sample()])
            rw_sep = {}
            reset_ddod_counters(head)
            with ddod_reweight_recorder(head, rw_sep, separate_counters=True):
                losses_sep = model.loss(inputs, [train_sample()])
            reset_ddod_counters(head)
            assert rw["cls_pos_per_level"] == rw_sep["cls_pos_per_level"]
            assert rw["reg_pos_per_level"] == rw_sep["reg_pos_per_level"]
            fixture["ddod_reweight"] = {
                "cls_pos_per_level": rw["cls_pos_per_level"],
                "reg_pos_per_level": rw["reg_pos_per_level"],
                "cls_factors": rw["cls_factors"],
                "reg_factors_mmdet": rw["reg_factors"],
                "reg_factors_separate_counters": rw_sep["reg_factors"],
            }
            fixture["losses_separate_counters"], fixture["losses_separate_counters_per_level"] = \
                loss_values(losses_sep)
        else:
            losses = model.loss(inputs, [train_sample()])
    model.eval()
    fixture["losses"], fixture["losses_per_level"] = loss_values(losses)

    fixture = plain(fixture)
    path = os.path.join(out_dir, f"{name}.pt")
    torch.save(fixture, path)
    check = torch.load(path, weights_only=True)
    assert check.keys() == fixture.keys()

    # summary
    keys = [k for k, _, _ in spec]
    print(f"== {name}: {rel_cfg} -> {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    print(f"   {len(keys)} state-dict keys, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    print(f"   inputs {stats(inputs)}")
    for i, f in enumerate(feats):
        print(f"   P{i + 3} {tuple(f.shape)} {stats(f)}")
    for k, v in fixture["head"].items():
        print(f"   head.{k}: " + ", ".join(f"{tuple(t.shape[1:])} {stats(t)}" for t in v))
    d = fixture["detections"]
    print(f"   detections: K={len(d['scores'])} scores [{d['scores'].min():.4f}, "
          f"{d['scores'].max():.4f}], {len(set(d['labels'].tolist()))} distinct labels; "
          f"pre-NMS: {fixture['pre_nms']['num_after_topk']} after top-k, "
          f"{fixture['pre_nms']['num_into_nms']} into NMS, "
          f"{fixture['pre_nms']['num_after_nms']} after NMS; margins {fixture['ranking_margins']}")
    print("   losses: " + ", ".join(f"{k}={v:.6g}" for k, v in fixture["losses"].items()))
    if name == "ddod":
        print("   losses_separate_counters: " + ", ".join(
            f"{k}={v:.6g}" for k, v in fixture["losses_separate_counters"].items()))
        print(f"   reweight: {fixture['ddod_reweight']}")
    for k, v in extra.items():
        print(f"   {k}: {v}")
    assert len(d["scores"]) > 0, "no detections"
    return fixture


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/data/parity")
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS_TO_DUMP),
                        help="dump only these models")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    import mmdet
    from mmdet.utils import register_all_modules

    register_all_modules()
    configs_dir = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs")
    os.makedirs(args.out, exist_ok=True)
    for name in args.only or MODELS_TO_DUMP:
        rel_cfg, head_names = MODELS_TO_DUMP[name]
        dump_model(name, rel_cfg, head_names, configs_dir, args.out)


if __name__ == "__main__":
    main()
