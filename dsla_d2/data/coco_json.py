"""Register a user's COCO-format detection dataset, checking it first.

Problems that otherwise surface deep inside Detectron2 or pycocotools (or in the middle of
training) are reported at registration time, naming the offending path, record (e.g.
``images[3]``, ``annotations[7]``, ``categories[0]``, or an annotation by id) and value:

* ids (of images, categories, annotations, and an annotation's ``image_id`` and
  ``category_id``) must be integers; ``file_name`` and category ``name`` non-empty strings;
* image files (``check_images=True``) must exist, be readable images (only their header is
  read) of the json's width x height (after EXIF orientation, as Detectron2 reads them)
  and not floating-point images;
* annotations without ``area`` or ``iscrowd`` (both needed by pycocotools' evaluation) get
  ``iscrowd=0`` and the box area w*h, with one warning giving the counts.

Bad boxes — ``bbox`` that is not four finite numbers (a string, null, NaN, inf), has a
negative width or height, or lies entirely outside its image (no overlap with
[0, width] x [0, height]: an object no detector can find) — follow a policy:
``bad_boxes="error"`` (default) refuses the dataset, listing them; ``"skip"`` drops those
annotations and logs how many. Zero-sized boxes on the image are not bad (Detectron2's
mapper drops them as empty), nor are boxes partly outside it (Detectron2 clips them).
"""
import json
import logging
import math
import os
import tempfile
from collections import Counter

from PIL import Image

from dsla_d2 import compat as _compat

_compat.apply()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from ..errors import UserInputError  # noqa: E402

from .image_io import unsupported_mode  # noqa: E402
from .mapper import _reason  # noqa: E402

__all__ = ["register_coco_json_dataset", "num_classes_of", "BAD_BOX_POLICIES", "DatasetError", "DatasetFileNotFoundError"]

logger = logging.getLogger(__name__)


class DatasetError(UserInputError, ValueError):
    """A dataset file that cannot be used as it is; the message names the file and record."""


class DatasetFileNotFoundError(UserInputError, FileNotFoundError):
    """A dataset file or image directory that does not exist."""

_MAX_LISTED = 5
BAD_BOX_POLICIES = ("error", "skip")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # rotate by 90 degrees: width and height swap


def _fail(json_file, problem):
    raise DatasetError(f"{json_file} is not a valid COCO detection json: {problem}")


def _short(value):
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def _require_int(json_file, record, key, value):
    """Refuse an id that is not an int (bools and floats included).

    The COCO format specifies integer ids and Detectron2 and pycocotools assume them.
    ``load_coco_json`` and pure-Python COCOeval pass str ids through, but Detectron2's fast
    COCOeval (used when its C++ extension is built) calls ``int()`` on annotation ids and
    ``np.unique`` on image ids, and a json that mixes "7" and 7 silently loses annotations
    as orphans. Floats (7.0) and bools (True) hash like ints and would hide such mistakes;
    lists and dicts are unhashable.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(json_file, f"{record} has {key} {_short(value)} (a {type(value).__name__}); expected an integer")


def _require_text(json_file, record, key, value):
    if not isinstance(value, str) or not value.strip():
        _fail(json_file, f"{record} has {key} {_short(value)}; expected a non-empty string")


def _read_coco(json_file):
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{json_file} is not a COCO json file: not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise DatasetError(f"{json_file} is not a COCO json file: invalid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DatasetError(
            f"{json_file} is not in COCO format: the top level is a {type(data).__name__}, "
            "expected an object with 'images', 'annotations' and 'categories'"
        )
    missing = [k for k in ("images", "categories") if k not in data]
    if missing:
        raise DatasetError(
            f"{json_file} is not in COCO format: missing key(s) {missing} "
            f"(found keys: {sorted(data)[:10]})"
        )
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise DatasetError(
                f"{json_file} is not in COCO format: '{key}' is a "
                f"{type(data[key]).__name__}, expected a list"
            )
    return data


def _outside(bbox, width, height):
    """True if the [x, y, w, h] box has no overlap with the image [0, width] x [0, height];
    a zero-sized box overlaps if it lies on the image, edges included."""
    x, y, w, h = bbox
    if w == 0 or h == 0:
        return x > width or y > height or x + w < 0 or y + h < 0
    return x >= width or y >= height or x + w <= 0 or y + h <= 0


def _bad_box(bbox, size=None):
    """Why ``bbox`` is not a usable [x, y, w, h] box on an image of ``size`` (width, height;
    None: unknown), or None if it is."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return "expected [x, y, w, h]"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in bbox):
        return "expected [x, y, w, h] of numbers"
    if not all(math.isfinite(v) for v in bbox):
        return "not finite"
    if bbox[2] < 0 or bbox[3] < 0:
        return "negative width or height"
    if size is not None and _outside(bbox, *size):
        return f"outside the {size[0]}x{size[1]} image"
    return None


def _which(a, i):
    return f"annotation id {a['id']!r}" if isinstance(a, dict) and "id" in a else f"annotations[{i}] (no id)"


def bad_box_indices(anns, sizes=None):
    """Positions of annotations whose bbox is bad, with the reason; ``sizes`` ({image id:
    (width, height)}) also finds boxes outside their image."""
    sizes = sizes or {}
    return [
        (i, reason)
        for i, a in enumerate(anns)
        if (reason := _bad_box(a.get("bbox"), sizes.get(a.get("image_id")))) is not None
    ]


def _apply_bad_box_policy(json_file, anns, policy, sizes=None):
    """Raise for bad boxes (policy "error") or return the positions to drop ("skip")."""
    bad = bad_box_indices(anns, sizes)
    if not bad:
        return set()
    listed = "; ".join(f"{_which(anns[i], i)} has bbox {anns[i].get('bbox')!r} ({reason})" for i, reason in bad[:_MAX_LISTED])
    more = f"; and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    if policy == "error":
        raise DatasetError(
            f"{json_file}: {len(bad)} annotation(s) with a bad box: {listed}{more}. Fix them, or register "
            "with bad_boxes='skip' (train_net.py --bad-boxes skip) to drop them."
        )
    logger.warning("%s: skipped %d annotation(s) with a bad box (bad_boxes='skip'): %s%s", json_file, len(bad), listed, more)
    return {i for i, _ in bad}


def _check_images(json_file, images):
    """Validate the image records; return {image id: (width, height)}."""
    sizes = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict) or any(k not in img for k in ("id", "file_name")):
            _fail(json_file, f"image entry {str(img)[:200]} needs an 'id' and a 'file_name'")
        _require_int(json_file, f"images[{i}]", "id", img["id"])
        _require_text(json_file, f"images[{i}]", "file_name", img["file_name"])
        if img["id"] in sizes:
            _fail(json_file, f"duplicate image id {img['id']!r}")
        for k in ("width", "height"):
            v = img.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                _fail(json_file, f"image id {img['id']!r} ({img['file_name']}) has {k} {v!r}; expected a positive integer")
        sizes[img["id"]] = (img["width"], img["height"])
    return sizes


def _check_categories(json_file, cats):
    """Validate the categories; return (class names, category ids), both sorted by id."""
    if not cats:
        _fail(json_file, "'categories' is empty")
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            _fail(json_file, f"category entry {c!r} needs an 'id' and a 'name'")
        _require_int(json_file, f"categories[{i}]", "id", c["id"])
        _require_text(json_file, f"categories[{i}]", "name", c["name"])
    dup = sorted(i for i, n in Counter(c["id"] for c in cats).items() if n > 1)
    if dup:
        _fail(json_file, f"duplicate category ids {dup}")
    cats = sorted(cats, key=lambda c: c["id"])
    return [c["name"] for c in cats], [c["id"] for c in cats]


def _check_annotation_fields(json_file, anns):
    """Each annotation is an object with 'image_id', 'category_id', 'bbox', and its ids
    (including 'id' where present) are ints."""
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or any(k not in a for k in ("image_id", "category_id", "bbox")):
            _fail(json_file, f"annotation {str(a)[:200]} needs 'image_id', 'category_id', 'bbox'")
        for key in ("image_id", "category_id", "id"):
            if key in a:
                _require_int(json_file, f"annotations[{i}]", key, a[key])


def _check_annotation_ids(json_file, anns):
    """Every annotation has an id, and no two the same."""
    seen = set()
    for i, a in enumerate(anns):
        if "id" not in a:
            _fail(json_file, f"annotations[{i}] (image id {a['image_id']!r}) has no 'id'")
        if a["id"] in seen:
            _fail(json_file, f"duplicate annotation id {a['id']!r}")
        seen.add(a["id"])


def _check_references(json_file, anns, cat_ids, image_ids):
    """Refuse unknown category ids; warn about annotations of unknown images."""
    unknown = Counter(a["category_id"] for a in anns if a["category_id"] not in cat_ids)
    if unknown:
        listed = ", ".join(f"{k!r} ({n} annotations)" for k, n in sorted(unknown.items()))
        raise DatasetError(
            f"{json_file}: annotations use unknown category id(s) {listed} that are not "
            f"listed in 'categories' (known ids: {sorted(cat_ids)})"
        )
    orphans = sum(a["image_id"] not in image_ids for a in anns)
    if orphans:
        logger.warning(
            "%s: %d annotations refer to image ids not in 'images'; they are ignored.",
            json_file, orphans,
        )


def _warn_missing_fields(json_file, anns, skipped):
    """Warn once about kept annotations without 'area' or 'iscrowd' (filled at loading by
    :func:`_fill_missing_fields`); return whether there are any."""
    kept = [a for i, a in enumerate(anns) if i not in skipped]
    no_area = sum("area" not in a for a in kept)
    no_crowd = sum("iscrowd" not in a for a in kept)
    if no_area or no_crowd:
        logger.warning(
            "%s: %d annotation(s) without 'area' and %d without 'iscrowd' (pycocotools needs both): "
            "filled with the box area w*h and iscrowd=0; COCOEvaluator evaluates against the "
            "filled annotations.", json_file, no_area, no_crowd,
        )
    return bool(no_area or no_crowd)


def _fill_missing_fields(anns):
    for a in anns:
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])


def _check_coco(json_file, data, bad_boxes="error", for_training=False):
    """Validate the parsed json; return (thing_classes, category ids sorted, images,
    positions of annotations to skip, whether annotations lack 'area'/'iscrowd')."""
    thing_classes, cat_ids = _check_categories(json_file, data["categories"])
    images = data["images"]
    if not images:
        raise DatasetError(f"{json_file} contains no images ('images' is empty): empty dataset")
    sizes = _check_images(json_file, images)

    anns = data.get("annotations")
    if anns is None:
        logger.warning("%s has no 'annotations': every image is unannotated.", json_file)
        anns = []
    _check_annotation_fields(json_file, anns)
    skipped = _apply_bad_box_policy(json_file, anns, bad_boxes, sizes)
    _check_annotation_ids(json_file, anns)
    _check_references(json_file, anns, set(cat_ids), sizes)
    if for_training:
        _check_trainable(json_file, [a for i, a in enumerate(anns) if i not in skipped], sizes)
    return thing_classes, cat_ids, images, skipped, _warn_missing_fields(json_file, anns, skipped)


def _check_trainable(json_file, anns, image_ids):
    """A training set needs at least one non-crowd annotation, or it trains on negatives only."""
    usable = [a for a in anns if a["image_id"] in image_ids]
    if not any(not a.get("iscrowd", 0) for a in usable):
        what = f"all {len(usable)} annotations are crowd regions (iscrowd=1)" if usable else "it has no annotations"
        raise DatasetError(f"{json_file} cannot be a training set: {what}, so the detector would see no positives")


def _check_image_files(json_file, image_root, images):
    missing = [
        img["file_name"]
        for img in images
        if not os.path.isfile(os.path.join(image_root, img["file_name"]))
    ]
    if missing:
        first = ", ".join(os.path.join(image_root, m) for m in missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise DatasetFileNotFoundError(
            f"{len(missing)} of the {len(images)} image files listed in {json_file} do not "
            f"exist under {image_root}: {first}{more}"
        )


def _orientation(image):
    """The EXIF orientation tag of an opened image (None if absent or unreadable), read from
    the header: ``Image.Image.getexif`` itself, since PNG's override decodes the whole image
    looking for an eXIf chunk after the pixels."""
    try:
        return Image.Image.getexif(image).get(_EXIF_ORIENTATION)
    except Exception:  # Detectron2 ignores unreadable EXIF too
        return None


def _header_problem(path, width, height):
    """(kind, description) of what is wrong with the image file at ``path`` for a record of
    ``width`` x ``height``, or None. Reads only the file's header."""
    try:
        with Image.open(path) as image:
            mode, (w, h), orientation = image.mode, image.size, _orientation(image)
    except Exception as e:
        return "unreadable", f"{path}: unreadable, {_reason(e)}"
    reason = unsupported_mode(mode)
    if reason:
        return "of an unsupported pixel format", f"{path}: {reason}"
    rotated = orientation in _TRANSPOSING_ORIENTATIONS
    if rotated:
        w, h = h, w
    if (w, h) != (width, height):
        how = f" (as shown, after its EXIF orientation {orientation}; stored {h}x{w})" if rotated else ""
        return "of another size", f"{path}: the json says {width}x{height} but the file is {w}x{h}{how}"
    return None


def _check_image_headers(json_file, image_root, images):
    """Refuse image files that are unreadable, of another size than the json says, or of
    an unsupported pixel format, naming the first few (all problems in one error)."""
    problems = [
        p for img in images
        if (p := _header_problem(os.path.join(image_root, img["file_name"]), img["width"], img["height"]))
    ]
    if not problems:
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in Counter(kind for kind, _ in problems).items())
    listed = "; ".join(text for _, text in problems[:_MAX_LISTED])
    more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise DatasetError(
        f"{json_file}: {len(problems)} of the {len(images)} image files under {image_root} cannot be "
        f"used ({counts}): {listed}{more}. Fix the files or the json's width/height, or register "
        "with check_images=False to find them only when they are read."
    )


def _load(json_file, image_root, name, skipped=(), fill=False):
    """Detectron2's ``load_coco_json`` of the json minus the annotations at ``skipped`` and,
    with ``fill``, with missing 'area'/'iscrowd' filled (it only reads files, so the
    repaired annotations go through a temporary copy)."""
    from detectron2.data.datasets import load_coco_json

    if not skipped and not fill:
        return load_coco_json(json_file, image_root, name)
    data = _read_coco(json_file)
    data["annotations"] = [a for i, a in enumerate(data.get("annotations") or []) if i not in skipped]
    if fill:
        _fill_missing_fields(data["annotations"])
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
    ``source_json_file``. When annotations were skipped, or some lack 'area' or 'iscrowd'
    (filled: the box area w*h, iscrowd=0), ``json_file`` is left unset, so that
    ``COCOEvaluator`` evaluates against the kept, filled annotations (it converts the
    loaded dataset, computing areas from the boxes or segmentations) rather than the file.

    Raises FileNotFoundError for a missing json, a missing image directory, or (when
    ``check_images``) image files listed in the json that do not exist (the first few
    are named). Raises ValueError for a json that is not COCO format, has no images, ids
    that are not integers, a file name or category name that is not a non-empty string,
    images without a positive width/height, annotations without a unique id, annotations
    whose category id is not in ``categories``, bad boxes (``bad_boxes="error"``; "skip"
    drops them), — ``check_images`` — image files that are unreadable, of another size
    than the json says or floating-point (only headers are read), or — ``for_training`` —
    no non-crowd annotation at all. Registering the same name again with the same files is
    a no-op; with other files it raises ValueError.
    """
    if bad_boxes not in BAD_BOX_POLICIES:
        raise DatasetError(f"bad_boxes={bad_boxes!r}: expected one of {BAD_BOX_POLICIES}")
    json_file = os.path.abspath(os.fspath(json_file))
    image_root = os.path.abspath(os.fspath(image_root))

    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        known = meta.as_dict()  # not getattr: lazy metadata would generate data
        old = (known.get("source_json_file", known.get("json_file")), known.get("image_root"))
        old = tuple(os.path.abspath(p) if p else p for p in old)
        if old == (json_file, image_root):
            return meta
        raise DatasetError(
            f"Dataset {name!r} is already registered with json_file={old[0]!r}, "
            f"image_root={old[1]!r}; cannot register it again with json_file={json_file!r}, "
            f"image_root={image_root!r}. Use another name."
        )

    if not os.path.isfile(json_file):
        raise DatasetFileNotFoundError(
            f"COCO json file for dataset {name!r} not found: {json_file}"
            + (" (it is a directory)" if os.path.isdir(json_file) else "")
        )
    if not os.path.isdir(image_root):
        raise DatasetFileNotFoundError(
            f"Image directory for dataset {name!r} not found: {image_root}"
            + (" (it is a file)" if os.path.isfile(image_root) else "")
        )
    data = _read_coco(json_file)
    thing_classes, cat_ids, images, skipped, fill = _check_coco(json_file, data, bad_boxes, for_training)
    if check_images:
        _check_image_files(json_file, image_root, images)
        _check_image_headers(json_file, image_root, images)
    del data, images

    DatasetCatalog.register(name, lambda: _load(json_file, image_root, name, skipped, fill))
    meta = MetadataCatalog.get(name)
    meta.set(
        thing_classes=thing_classes,
        thing_dataset_id_to_contiguous_id={cid: i for i, cid in enumerate(cat_ids)},
        source_json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        num_skipped_annotations=len(skipped),
    )
    if not skipped and not fill:
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
        raise DatasetError(f"Dataset {dataset_name!r} has no 'thing_classes' in its metadata")
    return len(classes)
