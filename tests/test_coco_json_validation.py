"""Validation of COCO jsons at registration: bad boxes (policy error/skip), training sets
without positives, annotation ids and image sizes; each error names the file, the
annotation and the value."""
import json

import pytest

import dsla_d2.compat

dsla_d2.compat.apply()

from detectron2.data import DatasetCatalog  # noqa: E402

from dsla_d2.data import register_coco_json_dataset  # noqa: E402
from test_data_coco_json import make_dataset, name  # noqa: E402,F401  (name: a fixture)


@pytest.mark.parametrize("bbox, reason", [
    ([2.0, 3.0, -20.0, 15.0], "negative width or height"),
    ([2.0, 3.0, 20.0, -1.0], "negative width or height"),
    ([2.0, 3.0, float("inf"), 15.0], "not finite"),
    ([float("nan"), 3.0, 20.0, 15.0], "not finite"),
    ("2 3 20 15", r"expected \[x, y, w, h\]"),
    (None, r"expected \[x, y, w, h\]"),
    ([2.0, "3", 20.0, 15.0], "of numbers"),
    ([2.0, True, 20.0, 15.0], "of numbers"),
])
def test_bad_box_is_an_error_naming_file_annotation_and_value(tmp_path, name, bbox, reason):
    json_path, image_dir, coco = make_dataset(tmp_path)
    coco["annotations"][4]["bbox"] = bbox  # annotation id 5
    json_path.write_text(json.dumps(coco))  # inf/nan are written as Infinity/NaN (json.load reads them)
    with pytest.raises(ValueError, match=reason) as e:
        register_coco_json_dataset(name, json_path, image_dir)
    msg = str(e.value)
    assert str(json_path) in msg and "annotation id 5 has bbox" in msg and "bad_boxes='skip'" in msg
    assert repr(json.loads(json.dumps(bbox))) in msg  # the value as read
    assert name not in DatasetCatalog.list()


def test_bad_boxes_skip_policy(tmp_path, name, caplog):
    from detectron2.evaluation import COCOEvaluator

    json_path, image_dir, coco = make_dataset(tmp_path)
    coco["annotations"][0]["bbox"] = [1.0, 1.0, -3.0, 4.0]
    coco["annotations"][4]["bbox"] = None
    del coco["annotations"][7]["id"]
    coco["annotations"][7]["bbox"] = "oops"
    json_path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"3 annotation\(s\) with a bad box.*annotations\[7\] \(no id\)"):
        register_coco_json_dataset(name, json_path, image_dir)
    coco["annotations"][7]["id"] = 8
    json_path.write_text(json.dumps(coco))
    meta = register_coco_json_dataset(name, json_path, image_dir, bad_boxes="skip")
    assert "skipped 3 annotation(s) with a bad box" in caplog.text
    assert meta.num_skipped_annotations == 3 and meta.source_json_file == str(json_path)
    assert "json_file" not in meta.as_dict()  # the evaluator must not read the raw file
    dicts = DatasetCatalog.get(name)
    assert sum(len(d["annotations"]) for d in dicts) == len(coco["annotations"]) - 3
    # COCOEvaluator evaluates against the kept annotations (converted from the dataset)
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path / "eval"))
    assert len(evaluator._coco_api.getAnnIds()) == len(coco["annotations"]) - 3
    with pytest.raises(ValueError, match="bad_boxes='drop'"):
        register_coco_json_dataset(name + "x", json_path, image_dir, bad_boxes="drop")


def test_zero_sized_boxes_are_not_bad(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path)
    coco["annotations"][0]["bbox"] = [5.0, 5.0, 0.0, 0.0]
    json_path.write_text(json.dumps(coco))
    register_coco_json_dataset(name, json_path, image_dir)


def test_training_set_without_positives(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path)
    for a in coco["annotations"]:
        a["iscrowd"] = 1
    json_path.write_text(json.dumps(coco))
    register_coco_json_dataset(name, json_path, image_dir)  # fine as a test set
    with pytest.raises(ValueError, match="all 9 annotations are crowd regions") as e:
        register_coco_json_dataset(name + "_train", json_path, image_dir, for_training=True)
    assert str(json_path) in str(e.value)
    json_path.write_text(json.dumps({**coco, "annotations": []}))
    with pytest.raises(ValueError, match="it has no annotations"):
        register_coco_json_dataset(name + "_train2", json_path, image_dir, for_training=True)


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["annotations"][2].pop("id"), r"annotations\[2\] \(image id 10\) has no 'id'"),
    (lambda c: c["annotations"][2].update(id=1), "duplicate annotation id 1"),
    (lambda c: c["images"][1].pop("width"), r"image id 11 \(img1.jpg\) has width None"),
    (lambda c: c["images"][1].update(height=0), r"image id 11 \(img1.jpg\) has height 0"),
])
def test_ids_and_image_sizes_are_checked(tmp_path, name, edit, expected):
    json_path, image_dir, coco = make_dataset(tmp_path)
    edit(coco)
    json_path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=expected) as e:
        register_coco_json_dataset(name, json_path, image_dir)
    assert str(json_path) in str(e.value)
