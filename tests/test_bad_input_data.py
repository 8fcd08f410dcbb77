"""Inputs that used to pass silently or fail late: 16-bit images, annotations without
area/iscrowd, unreadable or wrongly sized image files, ids of the wrong type, boxes
outside their image, and a corrupt image given to demo.py."""
import copy
import json
import os
import subprocess
import sys

import dsla_d2.compat

dsla_d2.compat.apply()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.data import detection_utils  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from PIL import Image  # noqa: E402

from dsla_d2.data import CheckedDatasetMapper, ImageReadError, register_coco_json_dataset  # noqa: E402
from test_data_coco_json import _write_image, evaluate_ground_truth_as_predictions, make_dataset, name  # noqa: E402,F401  (name: a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIENTATION = 0x0112


def _gradient16(h=12, w=20):
    """A uint16 image covering 0..65535, with the values next to the rounding edges."""
    values = np.linspace(0, 65535, h * w).round().astype(np.uint16)
    values[:6] = [0, 128, 129, 385, 386, 65535]  # round(v/257): 0, 0, 1, 1, 2, 255
    return values.reshape(h, w)


def _write16(path, array, exif_orientation=None):
    image = Image.fromarray(array)  # mode "I;16"
    assert image.mode == "I;16"
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[ORIENTATION] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    image.save(path, **kwargs)
    return path


def _write_float(path, h=10, w=12):
    Image.fromarray(np.full((h, w), 0.5, np.float32)).save(path)  # mode "F" TIFF
    return path


def _expected8(array16):
    return np.round(array16 / 257.0).astype(np.uint8)


def _mapper(cls=CheckedDatasetMapper, is_train=True, fmt="BGR"):
    return cls(is_train=is_train, augmentations=[T.ResizeShortestEdge(64)], image_format=fmt)


def _record(path, w, h):
    return {"file_name": str(path), "image_id": 1, "width": w, "height": h,
            "annotations": [{"bbox": [1.0, 1.0, 5.0, 5.0], "bbox_mode": 1, "category_id": 0, "iscrowd": 0}]}


# ----------------------------------------------------------------------- 1. 16-bit images
def test_16bit_png_is_scaled_not_white(tmp_path):
    from dsla_d2.data.image_io import read_image

    array = _gradient16()
    path = _write16(tmp_path / "g16.png", array)
    assert (detection_utils.read_image(str(path), "BGR")[6:] == 255).all()  # Detectron2: white
    expected = _expected8(array)
    bgr = read_image(str(path), "BGR")
    assert bgr.dtype == np.uint8 and bgr.shape == (12, 20, 3)
    for c in range(3):
        assert np.array_equal(bgr[:, :, c], expected)
    assert bgr[0, :6, 0].tolist() == [0, 0, 1, 1, 2, 255]
    assert np.array_equal(read_image(str(path), "RGB"), bgr)
    assert np.array_equal(read_image(str(path), "L")[:, :, 0], expected)
    assert np.array_equal(read_image(str(path), None), expected)  # format None: the 8-bit gray plane
    assert np.array_equal(read_image(str(path)), bgr)  # the default format is BGR


def test_16bit_rule_is_the_predictors_rule():
    from dsla_d2.data.image_io import uint16_to_uint8
    from dsla_d2.serving import _to_uint8

    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    assert np.array_equal(uint16_to_uint8(every), _to_uint8(every))


def test_16bit_png_exif_orientation_is_applied(tmp_path):
    from dsla_d2.data.image_io import read_image

    array = _gradient16(8, 14)
    path = _write16(tmp_path / "rot.png", array, exif_orientation=6)  # rotate 90° clockwise
    out = read_image(str(path), "BGR")
    assert out.shape == (14, 8, 3)
    assert out.shape == detection_utils.read_image(str(path), "BGR").shape
    assert np.array_equal(out[:, :, 0], np.rot90(_expected8(array), k=-1))


def _eight_bit_images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    return [tmp_path / n for n in ("rot.jpg", "plain.png", "rgba.png", "gray.png", "palette.png")]


@pytest.mark.parametrize("fmt", ["BGR", "RGB", "L", None])
def test_8bit_images_read_exactly_like_detectron2(tmp_path, fmt):
    from dsla_d2.data.image_io import read_image

    for path in _eight_bit_images(tmp_path):
        ours, ref = read_image(str(path), fmt), detection_utils.read_image(str(path), fmt)
        assert ours.dtype == ref.dtype and np.array_equal(ours, ref), path.name


def test_float_image_is_refused_naming_the_file(tmp_path):
    from dsla_d2.data.image_io import read_image

    path = _write_float(tmp_path / "depth.tif")
    with pytest.raises(ValueError, match="floating-point") as e:
        read_image(str(path), "BGR")
    assert str(path) in str(e.value) and "'F'" in str(e.value)


def test_mapper_reads_16bit_images_by_the_rule(tmp_path):
    array = _gradient16()
    path = _write16(tmp_path / "g16.png", array)
    out = CheckedDatasetMapper(is_train=True, augmentations=[], image_format="BGR")(_record(path, 20, 12))
    expected = torch.from_numpy(_expected8(array))
    assert out["image"].dtype == torch.uint8
    assert all(torch.equal(out["image"][c], expected) for c in range(3))


@pytest.mark.parametrize("is_train", [True, False])
@pytest.mark.parametrize("fmt", ["BGR", "RGB"])
def test_mapper_output_is_bit_identical_to_detectron2_for_8bit(tmp_path, name, is_train, fmt):
    json_path, image_dir, _ = make_dataset(tmp_path)  # with a crowd annotation per image
    register_coco_json_dataset(name, json_path, image_dir)
    for d in DatasetCatalog.get(name):
        ours, ref = _mapper(is_train=is_train, fmt=fmt)(d), _mapper(DatasetMapper, is_train, fmt)(d)
        assert sorted(ours) == sorted(ref)
        assert torch.equal(ours["image"], ref["image"])
        if is_train:
            assert ours["instances"].get_fields().keys() == ref["instances"].get_fields().keys()
            assert torch.equal(ours["instances"].gt_boxes.tensor, ref["instances"].gt_boxes.tensor)
            assert torch.equal(ours["instances"].gt_classes, ref["instances"].gt_classes)
            assert ours["instances"].image_size == ref["instances"].image_size


def test_mapper_refuses_float_images_as_image_read_error(tmp_path):
    path = _write_float(tmp_path / "depth.tif")
    with pytest.raises(ImageReadError, match="floating-point") as e:
        _mapper()(_record(path, 12, 10))
    assert e.value.file_name == str(path) and isinstance(e.value.__cause__, ValueError)


# ------------------------------------------------------------- 2. annotations without area/iscrowd
def _perfect_predictions_ap(name, tmp_path):
    from detectron2.evaluation import COCOEvaluator

    return evaluate_ground_truth_as_predictions(COCOEvaluator(name, output_dir=str(tmp_path / "eval")), name)


def test_missing_area_and_iscrowd_are_filled_and_evaluated(tmp_path, name, caplog):
    json_path, image_dir, coco = make_dataset(tmp_path)
    for a in coco["annotations"]:
        del a["area"]
        if not a["iscrowd"]:
            del a["iscrowd"]
    json_path.write_text(json.dumps(coco))
    meta = register_coco_json_dataset(name, json_path, image_dir)
    warnings = [r.getMessage() for r in caplog.records if "'area'" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(json_path) in warnings[0] and "9 annotation(s) without 'area'" in warnings[0]
    assert "6 without 'iscrowd'" in warnings[0]
    assert "json_file" not in meta.as_dict()  # the evaluator converts the filled annotations
    dicts = DatasetCatalog.get(name)
    assert [a["iscrowd"] for a in dicts[0]["annotations"]] == [0, 0, 1]
    res = _perfect_predictions_ap(name, tmp_path)
    assert res["AP"] == pytest.approx(100.0)
    assert res["AP-zebra"] == pytest.approx(100.0) and res["AP-kite"] == pytest.approx(100.0)


def test_complete_annotations_keep_the_json_file_for_the_evaluator(tmp_path, name, caplog):
    json_path, image_dir, _ = make_dataset(tmp_path)
    meta = register_coco_json_dataset(name, json_path, image_dir)
    assert meta.json_file == str(json_path)
    assert "'area'" not in caplog.text


# ------------------------------------------------------------- 3. image files checked by header
def test_unreadable_wrong_size_and_float_images_are_refused_together(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path, num_images=8)
    (image_dir / "img0.jpg").write_bytes(b"not an image at all" * 10)
    _write_image(image_dir / "img1.jpg", 30, 20, 1)  # json: 56x40
    _write_float(image_dir / "img2.tif", h=40, w=64)
    coco["images"][2]["file_name"] = "img2.tif"
    for i in (3, 4, 5, 6):
        (image_dir / f"img{i}.jpg").write_text("garbage")
    json_path.write_text(json.dumps(coco))
    with pytest.raises(ValueError) as e:
        register_coco_json_dataset(name, json_path, image_dir)
    msg = str(e.value)
    assert str(json_path) in msg and "7 of the 8 image files" in msg
    assert "5 unreadable, 1 of another size, 1 of an unsupported pixel format" in msg
    assert f"{image_dir / 'img0.jpg'}: unreadable" in msg
    assert f"{image_dir / 'img1.jpg'}: the json says 56x40 but the file is 30x20" in msg
    assert str(image_dir / "img2.tif") in msg and "'F'" in msg
    assert "and 2 more" in msg and "img7" not in msg
    assert name not in DatasetCatalog.list()
    register_coco_json_dataset(name, json_path, image_dir, check_images=False)  # not checked


def test_image_size_is_compared_after_exif_orientation(tmp_path, name):
    json_path, image_dir, coco = make_dataset(tmp_path, num_images=1)  # json: 48x40
    pixels = np.random.default_rng(0).integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = 8  # stored 40 wide, 48 high; shown rotated: 48x40
    Image.fromarray(pixels).save(image_dir / "img0.jpg", exif=exif.tobytes())
    register_coco_json_dataset(name, json_path, image_dir)
    out = _mapper()(DatasetCatalog.get(name)[0])  # Detectron2's own size check agrees
    assert out["image"].shape[1] == 64 and out["image"].shape[2] > 64  # landscape, as shown

    coco["images"][0].update(width=40, height=48)  # the stored size, not the shown one
    json_path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="the json says 40x48 but the file is 48x40") as e:
        register_coco_json_dataset(name + "_stored", json_path, image_dir)
    assert "EXIF orientation 8" in str(e.value)


# ----------------------------------------------------------------------- 4. ids and names of the wrong type
@pytest.mark.parametrize("edit, record, value", [
    (lambda c: c["images"][1].update(id=[11]), "images[1]", "[11]"),
    (lambda c: c["images"][1].update(id={"id": 11}), "images[1]", "{'id': 11}"),
    (lambda c: c["images"][1].update(id=11.0), "images[1]", "11.0"),
    (lambda c: c["images"][1].update(id=True), "images[1]", "True"),
    (lambda c: c["images"][1].update(id="11"), "images[1]", "'11'"),
    (lambda c: c["images"][2].update(file_name=None), "images[2]", "None"),
    (lambda c: c["images"][2].update(file_name=7), "images[2]", "7"),
    (lambda c: c["images"][2].update(file_name=""), "images[2]", "''"),
    (lambda c: c["categories"][0].update(name=None), "categories[0]", "None"),
    (lambda c: c["categories"][0].update(name=""), "categories[0]", "''"),
    (lambda c: c["categories"][1].update(id=[2]), "categories[1]", "[2]"),
    (lambda c: c["categories"][1].update(id=2.5), "categories[1]", "2.5"),
    (lambda c: c["categories"][1].update(id=False), "categories[1]", "False"),
    (lambda c: c["annotations"][7].update(image_id=[12]), "annotations[7]", "[12]"),
    (lambda c: c["annotations"][7].update(image_id=12.0), "annotations[7]", "12.0"),
    (lambda c: c["annotations"][7].update(category_id={"id": 9}), "annotations[7]", "{'id': 9}"),
    (lambda c: c["annotations"][7].update(category_id=True), "annotations[7]", "True"),
    (lambda c: c["annotations"][7].update(id=[8]), "annotations[7]", "[8]"),
    (lambda c: c["annotations"][7].update(id=8.5), "annotations[7]", "8.5"),
])
def test_ids_and_names_of_the_wrong_type(tmp_path, name, edit, record, value):
    json_path, image_dir, coco = make_dataset(tmp_path)
    coco = copy.deepcopy(coco)  # make_dataset shares its categories between calls
    edit(coco)
    json_path.write_text(json.dumps(coco))
    with pytest.raises(ValueError) as e:
        register_coco_json_dataset(name, json_path, image_dir)
    msg = str(e.value)
    assert str(json_path) in msg and f"{record} has " in msg and value in msg, msg
    assert name not in DatasetCatalog.list()


# ----------------------------------------------------------------------- 5. boxes outside their image
@pytest.mark.parametrize("bbox", [
    [48.0, 3.0, 5.0, 5.0],  # x = width (image 0 is 48x40)
    [60.0, 3.0, 5.0, 5.0],
    [-10.0, 3.0, 10.0, 5.0],  # x + w = 0
    [3.0, 40.0, 5.0, 5.0],  # y = height
    [3.0, -8.0, 5.0, 7.5],  # y + h < 0
    [50.0, 45.0, 0.0, 0.0],  # zero-sized, off the image
])
@pytest.mark.parametrize("for_training", [True, False])
def test_box_outside_its_image_is_a_bad_box(tmp_path, name, bbox, for_training, caplog):
    json_path, image_dir, coco = make_dataset(tmp_path)
    coco["annotations"][1]["bbox"] = bbox  # annotation id 2, on image 10 (48x40)
    json_path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"annotation id 2 has bbox .* \(outside the 48x40 image\)") as e:
        register_coco_json_dataset(name, json_path, image_dir, for_training=for_training)
    assert str(json_path) in str(e.value)
    register_coco_json_dataset(name, json_path, image_dir, bad_boxes="skip", for_training=for_training)
    assert "skipped 1 annotation(s) with a bad box" in caplog.text
    assert sum(len(d["annotations"]) for d in DatasetCatalog.get(name)) == len(coco["annotations"]) - 1


@pytest.mark.parametrize("bbox", [
    [40.0, 30.0, 20.0, 20.0],  # partly outside: Detectron2 clips it
    [-5.0, -5.0, 6.0, 6.0],
    [0.0, 0.0, 48.0, 40.0],
    [5.0, 5.0, 0.0, 0.0],  # zero-sized inside: not bad (the mapper drops it)
    [48.0, 40.0, 0.0, 0.0],  # zero-sized on the corner
])
def test_box_partly_inside_its_image_is_kept(tmp_path, name, bbox):
    json_path, image_dir, coco = make_dataset(tmp_path)
    coco["annotations"][1]["bbox"] = bbox
    json_path.write_text(json.dumps(coco))
    register_coco_json_dataset(name, json_path, image_dir)
    assert sum(len(d["annotations"]) for d in DatasetCatalog.get(name)) == len(coco["annotations"])


# ----------------------------------------------------------------------- 6. demo.py
def test_demo_corrupt_input_is_a_one_line_error(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg" * 30)
    config = os.path.join(ROOT, "configs", "fcos_r18_synth.py")
    args = ["--config-file", config, "--weights", str(tmp_path / "never_read.pth"), "--device", "cpu",
            "--input", str(bad), "--out", str(tmp_path / "out.png")]  # the image is read before the model is built
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "demo.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("demo.py: error: Cannot read image file") and str(bad) in last
    assert "PIL cannot identify it as an image" in last
    assert not (tmp_path / "out.png").exists()


def test_demo_reads_16bit_inputs_by_the_rule(tmp_path):
    sys.path.insert(0, ROOT)
    import demo

    array = _gradient16()
    path = _write16(tmp_path / "g16.png", array)
    [(name_read, image)] = demo.read_inputs([str(path)])
    assert name_read == str(path) and image.shape == (12, 20, 3)
    assert np.array_equal(image[:, :, 1], _expected8(array))
