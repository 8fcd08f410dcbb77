"""Register a user's COCO-format detection dataset, checking it first.

Problems that otherwise surface deep inside Detectron2 or pycocotools (or in the middle of
training) are reported at registration time, naming the offending path, image,
annotation (by id, or by position when it has none) and value.

Bad boxes — ``bbox`` that is not four finite numbers (a string, null, NaN, inf) or has a
negative width or height — follow a policy: ``bad_boxes="error"`` (default) refuses the
dataset, listing them; ``"skip"`` drops those annotations and logs how many. Zero-sized
boxes are not bad (Detectron2's mapper drops them as empty).
"""
import json
import logging
import math
import os
import tempfile

from dsla_d2 import compat as _compat

_compat.apply()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

__all__ = ["register_coco_json_dataset", "num_classes_of", "BAD_BOX_POLICIES"]

logger = logging.getLogger(__name__)

_MAX_LISTED = 5
BAD_BOX_POLICIES = ("error", "skip")


def _fail(json_file, problem):
    raise ValueError(f"{json_file} is not a valid COCO detection json: {problem}")


def _read_coco(json_file):
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise ValueError(f"{json_file} is not a COCO json file: not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_file} is not a COCO json file: invalid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{json_file} is not in COCO format: the top level is a {type(data).__name__}, "
            "expected an object with 'images', 'annotations' and 'categories'"
        )
    missing = [k for k in ("images", "categories") if k not in data]
    if missing:
        raise ValueError(
            f"{json_file} is not in COCO format: missing key(s) {missing} "
            f"(found keys: {sorted(data)[:10]})"
        )
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise ValueError(
                f"{json_file} is not in COCO format: '{key}' is a "
                f"{type(data[key]).__name__}, expected a list"
            )
    return data


def _bad_box(bbox):
    """Why ``bbox`` is not a usable [x, y, w, h] box, or None if it is."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return "expected [x, y, w, h]"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in bbox):
        return "expected [x, y, w, h] of numbers"
    if not all(math.isfinite(v) for v in bbox):
        return "not finite"
    if bbox[2] < 0 or bbox[3] < 0:
        return "negative width or height"
    return None


def _which(a, i):
    return f"annotation id {a['id']!r}" if isinstance(a, dict) and "id" in a else f"annotations[{i}] (no id)"


def bad_box_indices(anns):
    """Positions of annotations whose bbox is bad, with the reason."""
    return [(i, reason) for i, a in enumerate(anns) if (reason := _bad_box(a.get("bbox"))) is not None]


def _apply_bad_box_policy(json_file, anns, policy):
    """Raise for bad boxes (policy "error") or return the positions to drop ("skip")."""
    bad = bad_box_indices(anns)
    if not bad:
        return set()
    listed = "; ".join(f"{_which(anns[i], i)} has bbox {anns[i].get('bbox')!r} ({reason})" for i, reason in bad[:_MAX_LISTED])
    more = f"; and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    if policy == "error":
        raise ValueError(
            f"{json_file}: {len(bad)} annotation(s) with a bad box: {listed}{more}. Fix them, or register "
            "with bad_boxes='skip' (train_net.py --bad-boxes skip) to drop them."
        )
    logger.warning("%s: skipped %d annotation(s) with a bad box (bad_boxes='skip'): %s%s", json_file, len(bad), listed, more)
    return {i for i, _ in bad}


def _check_images(json_file, images):
    image_ids = set()
    for img in images:
        if not isinstance(img, dict) or any(k not in img for k in ("id", "file_name")):
            _fail(json_file, f"image entry {str(img)[:200]} needs an 'id' and a 'file_name'")
        if img["id"] in image_ids:
            _fail(json_file, f"duplicate image id {img['id']!r}")
        for k in ("width", "height"):
            v = img.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                _fail(json_file, f"image id {img['id']!r} ({img['file_name']}) has {k} {v!r}; expected a positive integer")
        image_ids.add(img["id"])
    return image_ids


def _check_coco(json_file, data, bad_boxes="error", for_training=False):
    """Validate the parsed json; return (thing_classes, category ids sorted, images,
    positions of annotations to skip)."""
    cats = data["categories"]
    if not cats:
        _fail(json_file, "'categories' is empty")
    for c in cats:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            _fail(json_file, f"category entry {c!r} needs an 'id' and a 'name'")
    cat_ids = [c["id"] for c in cats]
    dup = sorted({i for i in cat_ids if cat_ids.count(i) > 1})
    if dup:
        _fail(json_file, f"duplicate category ids {dup}")
    cats = sorted(cats, key=lambda c: c["id"])
    thing_classes = [str(c["name"]) for c in cats]

    images = data["images"]
    if not images:
        raise ValueError(f"{json_file} contains no images ('images' is empty): empty dataset")
    image_ids = _check_images(json_file, images)

    anns = data.get("annotations")
    if anns is None:
        logger.warning("%s has no 'annotations': every image is unannotated.", json_file)
        anns = []
    known = set(cat_ids)
    unknown, orphans, ann_ids = {}, 0, set()
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or any(k not in a for k in ("image_id", "category_id", "bbox")):
            _fail(json_file, f"annotation {str(a)[:200]} needs 'image_id', 'category_id', 'bbox'")
        if a["category_id"] not in known:
            unknown[a["category_id"]] = unknown.get(a["category_id"], 0) + 1
        if a["image_id"] not in image_ids:
            orphans += 1
    skipped = _apply_bad_box_policy(json_file, anns, bad_boxes)
    for i, a in enumerate(anns):
        if "id" not in a:
            _fail(json_file, f"annotations[{i}] (image id {a['image_id']!r}) has no 'id'")
        if a["id"] in ann_ids:
            _fail(json_file, f"duplicate annotation id {a['id']!r}")
        ann_ids.add(a["id"])
    if unknown:
        listed = ", ".join(f"{k!r} ({n} annotations)" for k, n in sorted(unknown.items(), key=str))
        raise ValueError(
            f"{json_file}: annotations use unknown category id(s) {listed} that are not "
            f"listed in 'categories' (known ids: {sorted(known)})"
        )
    if orphans:
        logger.warning(
            "%s: %d annotations refer to image ids not in 'images'; they are ignored.",
            json_file, orphans,
        )
    if for_training:
        _check_trainable(json_file, [a for i, a in enumerate(anns) if i not in skipped], image_ids)
    return thing_classes, sorted(cat_ids), images, skipped


def _check_trainable(json_file, anns, image_ids):
    """A training set needs at least one non-crowd annotation, or it trains on negatives only."""
    usable = [a for a in anns if a["image_id"] in image_ids]
    if not any(not a.get("iscrowd", 0) for a in usable):
        what = f"all {len(usable)} annotations are crowd regions (iscrowd=1)" if usable else "it has no annotations"
        raise ValueError(f"{json_file} cannot be a training set: {what}, so the detector would see no positives")


def _check_image_files(json_file, image_root, images):
    missing = [
        img["file_name"]
        for img in images
        if not os.path.isfile(os.path.join(image_root, img["file_name"]))
    ]
    if missing:
        first = ", ".join(os.path.join(image_root, m) for m in missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise FileNotFoundError(
            f"{len(missing)} of the {len(images)} image files listed in {json_file} do not "
            f"exist under {image_root}: {first}{more}"
        )


def _load_without(json_file, image_root, name, skipped):
    """Detectron2's ``load_coco_json`` of the json minus the annotations at ``skipped``
    (it only reads files, so the kept annotations go through a temporary copy)."""
    from detectron2.data.datasets import load_coco_json

    if not skipped:
        return load_coco_json(json_file, image_root, name)
    data = _read_coco(json_file)
    data["annotations"] = [a for i, a in enumerate(data.get("annotations") or []) if i not in skipped]
    fd, tmp = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        del data
        return load_coco_json(tmp, image_root, name)
    finally:
        os.remove(tmp)


def register_coco_json_dataset(name, json_file, image_root, check_images=True, bad_boxes="error", for_training=False):
    """Register a COCO-format detection dataset under ``name``; return its Metadata.

    Class names (and so the number of classes) are the json's categories sorted by id.
    Metadata: ``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``json_file``,
    ``image_root``, ``evaluator_type="coco"``, so that ``COCOEvaluator(name)`` works, and
    ``source_json_file``. When annotations were skipped, ``json_file`` is left unset, so
    that ``COCOEvaluator`` evaluates against the kept annotations (it converts the
    loaded dataset) rather than the file.

    Raises FileNotFoundError for a missing json, a missing image directory, or (when
    ``check_images``) image files listed in the json that do not exist (the first few
    are named). Raises ValueError for a json that is not COCO format, has no images,
    images without a positive width/height, annotations without a unique id, annotations
    whose category id is not in ``categories``, bad boxes (``bad_boxes="error"``; "skip"
    drops them), or — ``for_training`` — no non-crowd annotation at all. Registering the
    same name again with the same files is a no-op; with other files it raises ValueError.
    """
    if bad_boxes not in BAD_BOX_POLICIES:
        raise ValueError(f"bad_boxes={bad_boxes!r}: expected one of {BAD_BOX_POLICIES}")
    json_file = os.path.abspath(os.fspath(json_file))
    image_root = os.path.abspath(os.fspath(image_root))

    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        known = meta.as_dict()  # not getattr: lazy metadata would generate data
        old = (known.get("source_json_file", known.get("json_file")), known.get("image_root"))
        old = tuple(os.path.abspath(p) if p else p for p in old)
        if old == (json_file, image_root):
            return meta
        raise ValueError(
            f"Dataset {name!r} is already registered with json_file={old[0]!r}, "
            f"image_root={old[1]!r}; cannot register it again with json_file={json_file!r}, "
            f"image_root={image_root!r}. Use another name."
        )

    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"COCO json file for dataset {name!r} not found: {json_file}"
            + (" (it is a directory)" if os.path.isdir(json_file) else "")
        )
    if not os.path.isdir(image_root):
        raise FileNotFoundError(
            f"Image directory for dataset {name!r} not found: {image_root}"
            + (" (it is a file)" if os.path.isfile(image_root) else "")
        )
    data = _read_coco(json_file)
    thing_classes, cat_ids, images, skipped = _check_coco(json_file, data, bad_boxes, for_training)
    if check_images:
        _check_image_files(json_file, image_root, images)
    del data, images

    DatasetCatalog.register(name, lambda: _load_without(json_file, image_root, name, skipped))
    meta = MetadataCatalog.get(name)
    meta.set(
        thing_classes=thing_classes,
        thing_dataset_id_to_contiguous_id={cid: i for i, cid in enumerate(cat_ids)},
        source_json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        num_skipped_annotations=len(skipped),
    )
    if not skipped:
        meta.set(json_file=json_file)
    return meta


def num_classes_of(dataset_name):
    """Number of classes (``len(thing_classes)``) of a registered dataset."""
    if dataset_name not in MetadataCatalog and dataset_name not in DatasetCatalog.list():
        raise KeyError(
            f"Dataset {dataset_name!r} is not registered. Registered: "
            f"{', '.join(sorted(DatasetCatalog.list()))}"
        )
    meta = MetadataCatalog.get(dataset_name)
    classes = meta.get("thing_classes")
    if classes is None and dataset_name in DatasetCatalog.list():
        DatasetCatalog.get(dataset_name)  # COCO-json loaders fill thing_classes in
        classes = meta.get("thing_classes")
    if classes is None:
        raise ValueError(f"Dataset {dataset_name!r} has no 'thing_classes' in its metadata")
    return len(classes)
