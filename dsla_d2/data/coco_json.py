"""Register a user's COCO-format detection dataset, checking it first.

Problems that otherwise surface deep inside Detectron2 or pycocotools (or in the middle of
training) are reported at registration time, naming the offending path or category.
"""
import json
import logging
import os

from dsla_d2 import compat as _compat

_compat.apply()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

__all__ = ["register_coco_json_dataset", "num_classes_of"]

logger = logging.getLogger(__name__)

_MAX_LISTED = 5


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


def _check_coco(json_file, data):
    """Validate the parsed json; return (thing_classes, category ids sorted, images)."""
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
    image_ids = set()
    for img in images:
        if not isinstance(img, dict) or any(k not in img for k in ("id", "file_name")):
            _fail(json_file, f"image entry {str(img)[:200]} needs an 'id' and a 'file_name'")
        if img["id"] in image_ids:
            _fail(json_file, f"duplicate image id {img['id']!r}")
        image_ids.add(img["id"])

    anns = data.get("annotations")
    if anns is None:
        logger.warning("%s has no 'annotations': every image is unannotated.", json_file)
        anns = []
    known = set(cat_ids)
    unknown, orphans = {}, 0
    for a in anns:
        if not isinstance(a, dict) or any(k not in a for k in ("image_id", "category_id", "bbox")):
            _fail(json_file, f"annotation {str(a)[:200]} needs 'image_id', 'category_id', 'bbox'")
        bbox = a["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            _fail(json_file, f"annotation {a.get('id')!r} has bbox {bbox!r}; expected [x, y, w, h]")
        if a["category_id"] not in known:
            unknown[a["category_id"]] = unknown.get(a["category_id"], 0) + 1
        if a["image_id"] not in image_ids:
            orphans += 1
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
    return thing_classes, sorted(cat_ids), images


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


def register_coco_json_dataset(name, json_file, image_root, check_images=True):
    """Register a COCO-format detection dataset under ``name``; return its Metadata.

    Class names (and so the number of classes) are the json's categories sorted by id.
    Metadata: ``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``json_file``,
    ``image_root``, ``evaluator_type="coco"``, so that ``COCOEvaluator(name)`` works.

    Raises FileNotFoundError for a missing json, a missing image directory, or (when
    ``check_images``) image files listed in the json that do not exist (the first few
    are named). Raises ValueError for a json that is not COCO format, has no images, or
    has annotations whose category id is not in ``categories``. Registering the same
    name again with the same files is a no-op; with other files it raises ValueError.
    """
    json_file = os.path.abspath(os.fspath(json_file))
    image_root = os.path.abspath(os.fspath(image_root))

    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        known = meta.as_dict()  # not getattr: lazy metadata would generate data
        old = (known.get("json_file"), known.get("image_root"))
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
    thing_classes, cat_ids, images = _check_coco(json_file, data)
    if check_images:
        _check_image_files(json_file, image_root, images)
    del data, images

    def load():
        from detectron2.data.datasets import load_coco_json

        return load_coco_json(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    meta = MetadataCatalog.get(name)
    meta.set(
        thing_classes=thing_classes,
        thing_dataset_id_to_contiguous_id={cid: i for i, cid in enumerate(cat_ids)},
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
    )
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
