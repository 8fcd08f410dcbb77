"""Tests of user COCO-json registration and of CheckedDatasetMapper."""
import json
import pickle
import uuid

import dsla_d2.compat

dsla_d2.compat.apply()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402

from dsla_d2.data import (  # noqa: E402
    CheckedDatasetMapper,
    ImageReadError,
    num_classes_of,
    register_coco_json_dataset,
)

# categories deliberately unsorted and not contiguous
CATEGORIES = [{"id": 9, "name": "zebra"}, {"id": 2, "name": "apple"}, {"id": 5, "name": "kite"}]


def _write_image(path, w, h, seed):
    img = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def make_dataset(root, num_images=3, crowd=True):
    """A small valid COCO dataset: returns (json path, image dir, coco dict)."""
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        w, h = 48 + 8 * i, 40
        name = f"img{i}.jpg"
        _write_image(image_dir / name, w, h, i)
        images.append({"id": 10 + i, "file_name": name, "width": w, "height": h})
        anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": 9,
                     "bbox": [2.0, 3.0, 20.0, 15.0], "area": 300.0, "iscrowd": 0})
        anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": 5,
                     "bbox": [10.0, 10.0, 12.0, 20.0], "area": 240.0, "iscrowd": 0})
        if crowd:
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": 2,
                         "bbox": [0.0, 0.0, 30.0, 30.0], "area": 900.0, "iscrowd": 1})
    coco = {"images": images, "annotations": anns, "categories": CATEGORIES}
    json_path = root / "ann.json"
    json_path.write_text(json.dumps(coco))
    return json_path, image_dir, coco


@pytest.fixture
def name():
    """A unique dataset name, unregistered after the test."""
    n = f"test_coco_json_{uuid.uuid4().hex[:8]}"
    yield n
    DatasetCatalog.pop(n, None)
    MetadataCatalog.pop(n, None)


# --------------------------------------------------------------------------- registration
def test_register_valid_dataset(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path)
    meta = register_coco_json_dataset(name, json_path, image_dir)
    assert meta is MetadataCatalog.get(name)
    assert meta.thing_classes == ["apple", "kite", "zebra"]  # sorted by category id
    assert meta.thing_dataset_id_to_contiguous_id == {2: 0, 5: 1, 9: 2}
    assert meta.json_file == str(json_path) and meta.image_root == str(image_dir)
    assert meta.evaluator_type == "coco"
    assert num_classes_of(name) == 3

    dicts = DatasetCatalog.get(name)
    assert [d["image_id"] for d in dicts] == [10, 11, 12]
    assert dicts[1]["width"] == 56 and dicts[1]["file_name"] == str(image_dir / "img1.jpg")
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [2, 1, 0]  # contiguous
    assert meta.thing_classes == ["apple", "kite", "zebra"]  # load_coco_json agrees


def evaluate_ground_truth_as_predictions(evaluator, name):
    """``evaluator``'s bbox results for the non-crowd ground truth of dataset ``name`` given
    as predictions (score 1): AP 100 when the evaluator reads the same annotations."""
    from detectron2.structures import BoxMode, Boxes, Instances

    evaluator.reset()
    for d in DatasetCatalog.get(name):
        annos = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor(
            [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]).reshape(-1, 4))
        inst.scores = torch.ones(len(annos))
        inst.pred_classes = torch.tensor([a["category_id"] for a in annos], dtype=torch.long)
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    return evaluator.evaluate()["bbox"]


def test_coco_evaluator_accepts_registered_dataset(tmp_path, name):
    from detectron2.evaluation import COCOEvaluator

    json_path, image_dir, _ = make_dataset(tmp_path)
    register_coco_json_dataset(name, json_path, image_dir)
    evaluator = COCOEvaluator(name)  # default arguments: needs json_file in the metadata
    assert sorted(evaluator._coco_api.getCatIds()) == [2, 5, 9]
    # ground truth as predictions: contiguous ids must map back to 9 and 5
    res = evaluate_ground_truth_as_predictions(evaluator, name)
    assert res["AP-zebra"] == pytest.approx(100.0) and res["AP-kite"] == pytest.approx(100.0)


def test_reregistration(tmp_path, name):
    json_path, image_dir, _ = make_dataset(tmp_path)
    meta = register_coco_json_dataset(name, json_path, image_dir)
    assert register_coco_json_dataset(name, str(json_path), str(image_dir)) is meta

    other_json, other_dir, _ = make_dataset(tmp_path / "other")
    with pytest.raises(ValueError, match="already registered") as e:
        register_coco_json_dataset(name, other_json, other_dir)
    assert str(other_json) in str(e.value) and name in str(e.value)


def test_num_classes_of_unknown_dataset():
    with pytest.raises(KeyError, match="not registered"):
        num_classes_of("no_such_dataset_" + uuid.uuid4().hex)


# --------------------------------------------------------------------------- errors
def test_missing_json(tmp_path, name):
    (tmp_path / "images").mkdir()
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="not found") as e:
        register_coco_json_dataset(name, missing, tmp_path / "images")
    assert str(missing) in str(e.value)
    assert name not in DatasetCatalog.list()


def test_missing_image_dir(tmp_path, name):
    json_path, _, _ = make_dataset(tmp_path)
    missing = tmp_path / "no_images_here"
    with pytest.raises(FileNotFoundError, match="Image directory") as e:
        register_coco_json_dataset(name, json_path, missing)
    assert str(missing) in str(e.value)


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2, 3]", "top level is a list"),
        (json.dumps({"images": [], "annotations": []}), r"missing key\(s\) \['categories'\]"),
        (json.dumps({"images": {}, "annotations": [], "categories": []}), "'images' is a dict"),
        (json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [],
                     "categories": [{"name": "x"}]}), "needs an 'id' and a 'name'"),
        (json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
                     "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2]}],
                     "categories": [{"id": 1, "name": "x"}]}), r"expected \[x, y, w, h\]"),
    ],
)
def test_not_coco_format(tmp_path, name, content, expected):
    (tmp_path / "images").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=expected) as e:
        register_coco_json_dataset(name, bad, tmp_path / "images", check_images=False)
    assert str(bad) in str(e.value)
    assert name not in DatasetCatalog.list()


def test_empty_dataset(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path)
    json_path.write_text(json.dumps({**coco, "images": [], "annotations": []}))
    with pytest.raises(ValueError, match="no images") as e:
        register_coco_json_dataset(name, json_path, image_dir)
    assert str(json_path) in str(e.value)


def test_unknown_category(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path)
    coco["annotations"][1]["category_id"] = 77
    json_path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="unknown category") as e:
        register_coco_json_dataset(name, json_path, image_dir)
    assert "77" in str(e.value) and str(json_path) in str(e.value)


def test_missing_image_files(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path)
    (image_dir / "img1.jpg").unlink()
    (image_dir / "img2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2 of the 3 image files") as e:
        register_coco_json_dataset(name, json_path, image_dir)
    assert str(image_dir / "img1.jpg") in str(e.value) and "img2.jpg" in str(e.value)
    assert "img0.jpg" not in str(e.value)
    # without the check, registration succeeds (the mapper reports the file when read)
    meta = register_coco_json_dataset(name, json_path, image_dir, check_images=False)
    assert meta.thing_classes == ["apple", "kite", "zebra"]


def test_many_missing_image_files_are_summarised(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path, num_images=8)
    for p in image_dir.iterdir():
        p.unlink()
    with pytest.raises(FileNotFoundError, match="8 of the 8") as e:
        register_coco_json_dataset(name, json_path, image_dir)
    assert "and 3 more" in str(e.value) and "img7.jpg" not in str(e.value)


# --------------------------------------------------------------------------- mapper
def _mapper(cls=CheckedDatasetMapper, is_train=True):
    return cls(is_train=is_train, augmentations=[T.ResizeShortestEdge(64)], image_format="BGR")


def test_mapper_drops_crowd_like_detectron2(tmp_path, name):
    json_path, image_dir, _ = make_dataset(tmp_path)
    register_coco_json_dataset(name, json_path, image_dir)
    d = DatasetCatalog.get(name)[0]
    assert sum(a["iscrowd"] for a in d["annotations"]) == 1 and len(d["annotations"]) == 3

    ours, ref = _mapper()(d), _mapper(DatasetMapper)(d)
    assert isinstance(_mapper(), DatasetMapper)
    inst = ours["instances"]
    assert len(inst) == 2
    assert inst.gt_classes.tolist() == [2, 1]  # the crowd 'apple' (0) is gone
    assert torch.equal(inst.gt_boxes.tensor, ref["instances"].gt_boxes.tensor)
    assert torch.equal(ours["image"], ref["image"])
    assert ours["image"].shape[1] == 64  # the augmentation was applied
    assert len(d["annotations"]) == 3  # the input dict is not modified

    test_out = _mapper(is_train=False)(d)
    assert "instances" not in test_out and "annotations" not in test_out


def test_mapper_from_config():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.INPUT.FORMAT = "RGB"
    mapper = CheckedDatasetMapper(cfg, True)
    assert mapper.is_train and mapper.image_format == "RGB"
    assert any(isinstance(a, T.ResizeShortestEdge) for a in mapper.augmentations.augs)


def _record(path, w=48, h=40):
    return {"file_name": str(path), "image_id": 1, "width": w, "height": h,
            "annotations": [{"bbox": [1.0, 1.0, 5.0, 5.0], "bbox_mode": 1,
                             "category_id": 0, "iscrowd": 0}]}


def test_mapper_missing_file(tmp_path):
    path = tmp_path / "gone.jpg"
    with pytest.raises(RuntimeError, match="does not exist") as e:
        _mapper()(_record(path))
    assert isinstance(e.value, ImageReadError)
    assert str(path) in str(e.value) and e.value.file_name == str(path)
    assert isinstance(e.value.__cause__, FileNotFoundError)


def test_mapper_corrupt_file(tmp_path):
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"this is not a jpeg at all" * 20)
    with pytest.raises(ImageReadError, match="cannot identify") as e:
        _mapper()(_record(path))
    assert str(path) in str(e.value) and e.value.__cause__ is not None


def test_mapper_truncated_file(tmp_path):
    good = tmp_path / "good.jpg"
    _write_image(good, 48, 40, 0)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated") as e:
        _mapper(is_train=False)(_record(path))
    assert str(path) in str(e.value)
    assert _mapper()(_record(good))["image"].shape[0] == 3  # the intact file is fine


def test_mapper_other_errors_are_not_wrapped(tmp_path):
    from detectron2.data.detection_utils import SizeMismatchError

    path = tmp_path / "ok.jpg"
    _write_image(path, 48, 40, 0)
    with pytest.raises(SizeMismatchError):  # wrong size in the dict: not a read failure
        _mapper()(_record(path, w=50))


def test_image_read_error_survives_pickling():
    err = ImageReadError("Cannot read image file 'x.jpg': boom", file_name="x.jpg")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ImageReadError and str(back) == str(err) and back.file_name == "x.jpg"
    assert str(ImageReadError("message only")) == "message only"  # torch worker re-raise
