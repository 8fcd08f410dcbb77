"""Tests of the embedded synthetic dataset: generator, cache, registration."""
import json
import math
import multiprocessing
import os

import dsla_d2.compat

dsla_d2.compat.apply()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dsla_d2.data import synthetic  # noqa: E402
from dsla_d2.data.synthetic import (  # noqa: E402
    SYNTH_CLASSES,
    SYNTH_SPLITS,
    ensure_synthetic_split,
    generate_synthetic_coco,
    register_synthetic_datasets,
    synthetic_root,
)

NUM_STATS_IMAGES = 200
_render = synthetic.render_synthetic_image


def _render_with_fractions(split, seed, index, **params):
    """``render_synthetic_image(..., return_visible_map=True)`` plus the visible fraction
    of each annotation (visible pixels / pixels of the whole rasterised shape, including
    what is outside the image), computed here from the shapes the generator rasterised
    and the visible map, independently of the generator's own bookkeeping."""
    shapes = []
    real = synthetic._rasterize

    def recording(fill, holes):
        mask, x0, y0 = real(fill, holes)
        shapes.append((mask, x0, y0))
        return mask, x0, y0

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synthetic, "_rasterize", recording)
        img, anns, vis = _render(split, seed, index, return_visible_map=True, **params)
    fractions = []
    for k in range(len(anns)):
        ys, xs = np.nonzero(vis == k)
        assert len(xs) == anns[k]["area"]
        # the instance is the last shape painted over any of its visible pixels
        owner = None
        for mask, x0, y0 in shapes:
            lx, ly = xs - x0, ys - y0
            inside = (lx >= 0) & (ly >= 0) & (lx < mask.shape[1]) & (ly < mask.shape[0])
            hit = np.zeros(len(xs), bool)
            hit[inside] = mask[ly[inside], lx[inside]] > 0
            if hit.any():
                owner = (mask, hit)
        assert owner is not None and owner[1].all()  # all its pixels are in its shape
        fractions.append(len(xs) / int(owner[0].sum()))
    return img, anns, vis, fractions


# --------------------------------------------------------------------------- fixtures
def _hue_stats(img, anns, vis, class_vectors, bg_hist):
    """Accumulate, per class, the sum of unit hue vectors of the visible pixels of its
    objects (and their number), and a 12-bin (30 degree) hue histogram of the saturated background pixels."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    hue = hsv[..., 0].astype(np.float64) * (np.pi / 90)  # OpenCV hue is degrees / 2
    for k, a in enumerate(anns):
        if not a["iscrowd"]:
            h = hue[vis == k]
            class_vectors[a["category_id"] - 1] += [np.cos(h).sum(), np.sin(h).sum(), len(h)]
    bg = (vis == -1) & (hsv[..., 1] >= 64)
    bg_hist += np.bincount((hsv[..., 0][bg] // 15).astype(int), minlength=12)[:12]


@pytest.fixture(scope="module")
def stats_generation(tmp_path_factory):
    """~200 images generated once for the distribution tests, with the visible fraction
    of every annotation (in json order) recorded during the generation, and hue
    statistics (see :func:`_hue_stats`) of the rendered images."""
    out = tmp_path_factory.mktemp("synth_stats")
    fractions = []
    hues = {"class_vectors": np.zeros((len(SYNTH_CLASSES), 3)), "bg_hist": np.zeros(12)}

    def render(split, seed, index, **params):
        img, anns, vis, frac = _render_with_fractions(split, seed, index, **params)
        fractions.extend(frac)
        _hue_stats(img, anns, vis, hues["class_vectors"], hues["bg_hist"])
        return img, anns

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synthetic, "render_synthetic_image", render)
        json_path = generate_synthetic_coco(str(out), "stats", NUM_STATS_IMAGES, seed=123)
    with open(json_path) as f:
        data = json.load(f)
    assert len(fractions) == len(data["annotations"])
    return out, json_path, data, np.array(fractions), hues


@pytest.fixture(scope="module")
def stats_dataset(stats_generation):
    return stats_generation[:3]


@pytest.fixture
def synth_root(tmp_path, monkeypatch):
    root = tmp_path / "synth_root"
    monkeypatch.setenv("DSLA_D2_SYNTH_ROOT", str(root))
    return root


@pytest.fixture
def fresh_registration(synth_root):
    """Unregister dsla_synth_* (restored afterwards), so this test registers them anew
    under its own root."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = [synthetic.SYNTH_DATASET_PREFIX + s for s in SYNTH_SPLITS]
    saved = {n: (DatasetCatalog.pop(n, None), MetadataCatalog.pop(n, None)) for n in names}
    yield synth_root
    for n, (func, meta) in saved.items():
        DatasetCatalog.pop(n, None)
        MetadataCatalog.pop(n, None)
        if func is not None:
            DatasetCatalog[n] = func
        if meta is not None:
            MetadataCatalog[n] = meta


def _objects(data):
    """The non-crowd annotations."""
    return [a for a in data["annotations"] if not a["iscrowd"]]


def _boxes(data):
    return np.array([a["bbox"] for a in _objects(data)], np.float64).reshape(-1, 4)


# --------------------------------------------------------------------------- determinism
def test_generation_is_deterministic(tmp_path):
    a = generate_synthetic_coco(str(tmp_path / "a"), "det", 8, seed=7)
    b = generate_synthetic_coco(str(tmp_path / "b"), "det", 8, seed=7)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        ja, jb = fa.read(), fb.read()
    assert ja == jb
    data = json.loads(ja)
    assert len(data["images"]) == 8
    for img in data["images"]:
        pa = cv2.imread(str(tmp_path / "a" / "det" / img["file_name"]))
        pb = cv2.imread(str(tmp_path / "b" / "det" / img["file_name"]))
        assert pa is not None and pa.shape == (img["height"], img["width"], 3)
        np.testing.assert_array_equal(pa, pb)

    # a different seed, or a different split name, gives different data
    c = generate_synthetic_coco(str(tmp_path / "c"), "det", 8, seed=8)
    d = generate_synthetic_coco(str(tmp_path / "d"), "det2", 8, seed=7)
    for other in (c, d):
        with open(other, "rb") as f:
            assert json.loads(f.read())["annotations"] != data["annotations"]


def test_render_matches_written_image(tmp_path):
    """Image i only depends on (split, seed, i), not on the images generated before it."""
    generate_synthetic_coco(str(tmp_path), "det", 5, seed=3)
    img, anns = synthetic.render_synthetic_image("det", 3, 4)
    with open(tmp_path / "det.json") as f:
        data = json.load(f)
    assert [a["bbox"] for a in data["annotations"] if a["image_id"] == 5] == [
        a["bbox"] for a in anns
    ]
    ok, encoded = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 95])
    assert ok and (tmp_path / "det" / "000004.jpg").read_bytes() == encoded.tobytes()


# --------------------------------------------------------------------------- distribution
def test_json_is_valid_coco(stats_dataset):
    from pycocotools.coco import COCO

    _, json_path, data = stats_dataset
    coco = COCO(json_path)
    assert len(coco.getImgIds()) == NUM_STATS_IMAGES
    cats = coco.loadCats(coco.getCatIds())
    assert [c["id"] for c in cats] == list(range(1, 7))
    assert [c["name"] for c in cats] == SYNTH_CLASSES
    ann_ids = [a["id"] for a in data["annotations"]]
    assert min(ann_ids) >= 1 and len(set(ann_ids)) == len(ann_ids)
    assert {a["iscrowd"] for a in data["annotations"]} == {0, 1}
    assert {a["image_id"] for a in data["annotations"]} <= set(coco.getImgIds())


def test_image_sizes_and_aspects(stats_dataset):
    out, _, data = stats_dataset
    w = np.array([i["width"] for i in data["images"]])
    h = np.array([i["height"] for i in data["images"]])
    assert w.min() >= 256 and h.min() >= 256 and w.max() <= 384 and h.max() <= 384
    assert w.min() < 270 and h.min() < 270 and w.max() > 370 and h.max() > 370
    assert (w / h).min() < 0.8 and (w / h).max() > 1.25
    for img in data["images"][:5]:  # the json agrees with the files
        pix = cv2.imread(str(out / "stats" / img["file_name"]))
        assert pix.shape == (img["height"], img["width"], 3)


def test_boxes_inside_images_and_not_degenerate(stats_dataset):
    _, _, data = stats_dataset
    size = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
    for a in data["annotations"]:
        x, y, bw, bh = a["bbox"]
        W, H = size[a["image_id"]]
        assert x >= 0 and y >= 0 and x + bw <= W and y + bh <= H, a
        assert bw >= 3 and bh >= 3, a
        assert 0 < a["area"] <= bw * bh, a


def test_object_sizes_span_all_fpn_levels(stats_dataset):
    _, _, data = stats_dataset
    b = _boxes(data)
    long_side = b[:, 2:].max(1)
    assert long_side.min() < 16 and long_side.max() > 200
    # every octave of object scale (what FPN levels P3..P7 are assigned) is populated
    scale = np.sqrt(b[:, 2] * b[:, 3])
    hist, _ = np.histogram(scale, bins=[0, 16, 32, 64, 128, 1000])
    assert (hist >= 20).all(), hist
    aspect = b[:, 2] / b[:, 3]
    assert aspect.max() > 2.2 and aspect.min() < 1 / 2.2


def test_objects_per_image_and_empty_images(stats_dataset):
    _, _, data = stats_dataset
    counts = np.zeros(NUM_STATS_IMAGES + 1, int)
    for a in _objects(data):
        counts[a["image_id"]] += 1
    counts = counts[1:]
    assert (counts == 0).sum() >= 1, "some images must have no objects"
    assert (counts == 0).mean() < 0.1
    assert counts.max() >= 9 and counts.max() <= 12
    assert (counts == 1).sum() >= 5


def test_overlap_and_class_balance(stats_dataset):
    _, _, data = stats_dataset
    # all classes are used, none dominates
    cls = np.array([a["category_id"] for a in _objects(data)])
    freq = np.bincount(cls, minlength=7)[1:] / len(cls)
    assert (freq > 0.1).all(), freq
    # objects overlap: some pairs of boxes in the same image intersect substantially
    by_image = {}
    for a in _objects(data):
        by_image.setdefault(a["image_id"], []).append(a["bbox"])
    overlapping = 0
    for boxes in by_image.values():
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                (x1, y1, w1, h1), (x2, y2, w2, h2) = boxes[i], boxes[j]
                iw = min(x1 + w1, x2 + w2) - max(x1, x2)
                ih = min(y1 + h1, y2 + h2) - max(y1, y2)
                if iw > 0 and ih > 0 and iw * ih > 0.2 * min(w1 * h1, w2 * h2):
                    overlapping += 1
    assert overlapping >= 20


def test_class_hue_bands(stats_generation):
    """Each class is painted in its hue band (centre k * 60 degrees, +-12 degrees jitter):
    the circular mean hue of the visible pixels of each class is within 20 degrees of the
    band centre. Background and distractors are not restricted to any band: the saturated
    background pixels cover more than 180 degrees of hue (> 6 of 12 30-degree bins)."""
    hues = stats_generation[4]
    assert synthetic.CLASS_HUE_CENTRES == tuple(60.0 * k for k in range(6))
    for k, (c, s, n) in enumerate(hues["class_vectors"]):
        mean = math.degrees(math.atan2(s, c)) % 360
        dist = abs((mean - 60.0 * k + 180) % 360 - 180)
        assert dist <= 20, (SYNTH_CLASSES[k], mean)
        # and concentrated: mean resultant length near 1, not spread over the wheel
        assert math.hypot(c, s) / n > 0.9, (SYNTH_CLASSES[k], math.hypot(c, s) / n)
    frac = hues["bg_hist"] / hues["bg_hist"].sum()
    assert (frac > 0.01).sum() > 6, frac


def test_boxes_are_tight_boxes_of_visible_pixels():
    """bbox/area are the tight box/pixel count of what is visible of each instance after
    occlusion (not of the whole shape), so occluded instances get smaller boxes. The same
    holds for crowd annotations (the visible map includes them)."""
    shrunk = 0
    for index in range(25):
        img, anns, vis = synthetic.render_synthetic_image(
            "tight", 0, index, return_visible_map=True
        )
        assert vis.shape == img.shape[:2]
        assert vis.max() == len(anns) - 1
        for k, a in enumerate(anns):
            ys, xs = np.nonzero(vis == k)
            x0, y0 = xs.min(), ys.min()
            w, h = xs.max() - x0 + 1, ys.max() - y0 + 1
            assert a["bbox"] == [float(x0), float(y0), float(w), float(h)]
            assert a["area"] == float(len(xs))
            shrunk += a["area"] < 0.8 * w * h and SYNTH_CLASSES[a["category_id"] - 1] == "rectangle"
    assert shrunk >= 1  # some rectangles are partly hidden (or rotated)


# --------------------------------------------------------------------------- crowd
def test_mostly_hidden_but_visible_instances_are_crowd(stats_generation):
    """Instances with a visible fraction < 0.3 are no objects; the clearly visible ones
    (visible box >= 8x8, >= 64 visible pixels) are iscrowd annotations."""
    _, _, data, fractions, _ = stats_generation
    crowd = np.array([a["iscrowd"] for a in data["annotations"]], bool)
    assert crowd.sum() >= 3, crowd.sum()
    assert crowd.sum() < 0.05 * len(crowd)
    assert (fractions[crowd] < 0.3).all(), fractions[crowd]
    assert (fractions[~crowd] >= 0.3).all(), fractions[~crowd].min()
    assert (fractions > 0).all() and (fractions <= 1).all()
    for a in np.array(data["annotations"])[crowd]:
        assert a["bbox"][2] >= 8 and a["bbox"][3] >= 8 and a["area"] >= 64, a


def test_small_mostly_hidden_instances_stay_dropped(stats_dataset):
    """The crowd annotations are exactly those that pass the crowd size thresholds among
    all mostly hidden instances (with the thresholds off, everything else is unchanged)."""
    _, _, data = stats_dataset
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(
            {k: a[k] for k in ("category_id", "bbox", "area", "iscrowd")})
    small = 0
    for index in range(40):
        img, loose = _render("stats", 123, index, crowd_min_box_size=1, crowd_min_pixels=1)
        big = [a for a in loose if not a["iscrowd"]
               or (min(a["bbox"][2:]) >= 8 and a["area"] >= 64)]
        assert by_image.get(index + 1, []) == big
        small += len(loose) - len(big)
    assert small >= 1


def test_mapper_drops_crowd_annotations(stats_dataset):
    import torch
    from detectron2.data.datasets import load_coco_json

    from dsla_d2.data import CheckedDatasetMapper

    out, json_path, _ = stats_dataset
    dicts = [d for d in load_coco_json(json_path, str(out / "stats"), "synth_stats_crowd")
             if any(a.get("iscrowd", 0) for a in d["annotations"])]
    assert dicts
    mapper = CheckedDatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    for d in dicts[:4]:
        objects = [a for a in d["annotations"] if not a["iscrowd"]]
        inst = mapper(d)["instances"]
        assert len(inst) == len(objects) < len(d["annotations"])
        want = torch.tensor([a["bbox"] for a in objects], dtype=torch.float32).reshape(-1, 4)
        want[:, 2:] += want[:, :2]  # XYWH -> XYXY
        torch.testing.assert_close(inst.gt_boxes.tensor, want)


def test_coco_eval_ignores_detections_on_crowd(stats_dataset, capsys):
    """Ground truth fed back as detections, crowd annotations included, scores AP 1: the
    detections on crowd regions are neither true nor false positives."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _, json_path, data = stats_dataset
    gt = COCO(json_path)
    img_ids = sorted({a["image_id"] for a in data["annotations"] if a["iscrowd"]})
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 1.0} for a in data["annotations"] if a["image_id"] in img_ids]
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.params.imgIds = img_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert math.isclose(ev.stats[0], 1.0)


# --------------------------------------------------------------------------- cache
def test_synthetic_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DSLA_D2_SYNTH_ROOT", str(tmp_path / "x"))
    assert synthetic_root() == str(tmp_path / "x")
    monkeypatch.delenv("DSLA_D2_SYNTH_ROOT")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    assert synthetic_root() == os.path.join(str(tmp_path / "d2"), "dsla_synth")


def test_ensure_generates_then_reuses_cache(synth_root):
    assert not synth_root.exists()
    json_path = ensure_synthetic_split("tiny")
    assert json_path == str(synth_root / "tiny.json")
    with open(json_path) as f:
        data = json.load(f)
    assert len(data["images"]) == SYNTH_SPLITS["tiny"]["num_images"] == 16
    assert len(os.listdir(synth_root / "tiny")) == 16
    stamp = json.loads((synth_root / "tiny.stamp").read_text())
    assert stamp["generator_version"] == synthetic.GENERATOR_VERSION
    assert stamp["seed"] == 2 and stamp["num_images"] == 16

    mtimes = {p: os.stat(p).st_mtime_ns for p in (json_path, synth_root / "tiny" / "000000.jpg")}
    assert ensure_synthetic_split("dsla_synth_tiny") == json_path  # dataset names work too
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes
    assert not [n for n in os.listdir(synth_root) if n.startswith((".tmp-", ".old-"))]


def test_version_change_regenerates(synth_root, monkeypatch):
    json_path = ensure_synthetic_split("tiny")
    sentinel = synth_root / "tiny" / "sentinel.txt"
    sentinel.write_text("from the old version")
    assert ensure_synthetic_split("tiny") == json_path and sentinel.exists()

    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 100)
    ensure_synthetic_split("tiny")
    assert not sentinel.exists(), "the split should have been regenerated"
    stamp = json.loads((synth_root / "tiny.stamp").read_text())
    assert stamp["generator_version"] == synthetic.GENERATOR_VERSION
    assert len(os.listdir(synth_root / "tiny")) == 16


def test_interrupted_generation_leaves_no_half_dataset(synth_root, monkeypatch):
    real = synthetic.generate_synthetic_coco

    def crash(out_dir, split, num_images, seed, **kw):
        real(out_dir, split, 3, seed, **kw)  # some files written ...
        raise KeyboardInterrupt  # ... then the run dies

    monkeypatch.setattr(synthetic, "generate_synthetic_coco", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_split("tiny")
    assert not (synth_root / "tiny.json").exists()
    assert not (synth_root / "tiny.stamp").exists()
    assert not (synth_root / "tiny").exists()
    assert not [n for n in os.listdir(synth_root) if n.startswith(".tmp-")]

    monkeypatch.setattr(synthetic, "generate_synthetic_coco", real)
    ensure_synthetic_split("tiny")
    assert len(os.listdir(synth_root / "tiny")) == 16


def test_unknown_split_is_rejected(synth_root):
    with pytest.raises(KeyError, match="unknown synthetic split 'nope'"):
        ensure_synthetic_split("nope")


def _ensure_in_child(root, queue):
    try:
        queue.put(("ok", ensure_synthetic_split("tiny", root=root)))
    except BaseException as e:  # report, don't hang the parent
        queue.put(("error", repr(e)))


def test_concurrent_ensure_from_two_processes(tmp_path):
    root = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ensure_in_child, args=(root, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results == [("ok", os.path.join(root, "tiny.json"))] * 2
    with open(os.path.join(root, "tiny.json")) as f:
        assert len(json.load(f)["images"]) == 16
    assert sorted(os.listdir(os.path.join(root, "tiny"))) == [f"{i:06d}.jpg" for i in range(16)]
    assert not [n for n in os.listdir(root) if n.startswith((".tmp-", ".old-"))]


# --------------------------------------------------------------------------- detectron2
def test_registration_is_lazy_and_loads(fresh_registration):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = fresh_registration
    names = register_synthetic_datasets()
    assert names == ["dsla_synth_train", "dsla_synth_val", "dsla_synth_tiny", "dsla_synth_crowd"]
    assert register_synthetic_datasets() == []  # idempotent
    assert not (root / "tiny.json").exists() and not (root / "train.json").exists()

    meta = MetadataCatalog.get("dsla_synth_tiny")
    assert meta.thing_classes == SYNTH_CLASSES
    assert meta.evaluator_type == "coco"
    assert meta.thing_dataset_id_to_contiguous_id == {k + 1: k for k in range(6)}
    assert meta.image_root == str(root / "tiny")

    dicts = DatasetCatalog.get("dsla_synth_tiny")
    assert len(dicts) == 16
    assert (root / "tiny.json").exists() and not (root / "train.json").exists()
    assert all(os.path.isfile(d["file_name"]) for d in dicts)
    cats = {a["category_id"] for d in dicts for a in d["annotations"]}
    assert cats <= set(range(6)) and len(cats) >= 3  # contiguous ids
    assert meta.json_file == str(root / "tiny.json")


def test_coco_evaluator_works_on_registered_name(fresh_registration):
    """COCOEvaluator with default arguments, even before the dataset was loaded; ground
    truth fed back as predictions scores AP 100."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.evaluation import COCOEvaluator
    from detectron2.structures import BoxMode, Boxes, Instances

    register_synthetic_datasets()
    evaluator = COCOEvaluator("dsla_synth_tiny")  # generates the split on demand
    evaluator.reset()
    for d in DatasetCatalog.get("dsla_synth_tiny"):
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in d["annotations"]]
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(boxes))
        inst.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]]).long()
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    results = evaluator.evaluate()
    assert math.isclose(results["bbox"]["AP"], 100.0)
