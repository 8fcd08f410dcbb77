"""The evaluator chosen from the test set's evaluator_type (dsla_d2.evaluation.evaluators),
end to end through train_net.py --eval-only on a tiny Pascal VOC-format dataset."""
import os
import shutil
import sys
import uuid
from xml.sax.saxutils import escape

import pytest

import dsla_d2  # noqa: F401  (registers the synthetic datasets)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import pascal_voc, register_pascal_voc
from detectron2.evaluation import COCOEvaluator, LVISEvaluator, PascalVOCDetectionEvaluator

from dsla_d2.evaluation import EvaluatorTypeError, build_evaluator, evaluator_class

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_data_coco_json import evaluate_ground_truth_as_predictions  # noqa: E402
from test_train_net import run  # noqa: E402


def test_voc_loader_works_on_numpy2():
    # dsla_d2.compat's numpy_aliases_voc: v0.6 reads the VOC image list with np.str
    assert pascal_voc.np.str is str


def write_voc(root, source="dsla_synth_tiny"):
    """The tiny synthetic split in Pascal VOC layout: JPEGImages/, Annotations/*.xml (boxes
    as 1-based inclusive pixel indices; crowd regions as "difficult" objects, which VOC's
    metric ignores) and ImageSets/Main/test.txt."""
    classes = MetadataCatalog.get(source).thing_classes
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    ids = []
    for d in DatasetCatalog.get(source):
        fileid = f"{int(d['image_id']):06d}"
        ids.append(fileid)
        shutil.copyfile(d["file_name"], os.path.join(root, "JPEGImages", fileid + ".jpg"))
        objects = []
        for a in d["annotations"]:
            x, y, w, h = (int(round(v)) for v in a["bbox"])  # XYWH_ABS, integers in this split
            objects.append(
                f"<object><name>{escape(classes[a['category_id']])}</name><pose>Unspecified</pose>"
                f"<truncated>0</truncated><difficult>{int(a.get('iscrowd', 0))}</difficult>"
                f"<bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
            )
        with open(os.path.join(root, "Annotations", fileid + ".xml"), "w") as f:
            f.write(f"<annotation><filename>{fileid}.jpg</filename><size><width>{d['width']}</width>"
                    f"<height>{d['height']}</height><depth>3</depth></size>{''.join(objects)}</annotation>")
    with open(os.path.join(root, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return list(classes)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """A registered tiny VOC-format dataset (its name) with the classes of the tiny split."""
    root = tmp_path_factory.mktemp("voc")
    classes = write_voc(str(root))
    name = f"tiny_voc_{uuid.uuid4().hex[:8]}"
    register_pascal_voc(name, str(root), "test", 2012, class_names=classes)
    with pytest.raises(EvaluatorTypeError, match="register_pascal_voc dataset: set .*evaluator_type = 'pascal_voc'"):
        evaluator_class(name)
    MetadataCatalog.get(name).evaluator_type = "pascal_voc"  # as Detectron2's builtin VOC registration does
    return name


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    run(path, "train.max_iter=1")
    return f"train.init_checkpoint={path / 'model_final.pth'}"


def register_with_type(evaluator_type):
    name = f"typed_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: DatasetCatalog.get("dsla_synth_tiny"))
    meta = dict(thing_classes=MetadataCatalog.get("dsla_synth_tiny").thing_classes)
    if evaluator_type is not None:
        meta["evaluator_type"] = evaluator_type
    MetadataCatalog.get(name).set(**meta)
    return name


def test_the_evaluator_follows_the_evaluator_type(voc):
    assert evaluator_class("dsla_synth_tiny") is COCOEvaluator
    assert evaluator_class(voc) is PascalVOCDetectionEvaluator
    assert evaluator_class([voc]) is PascalVOCDetectionEvaluator
    assert evaluator_class(register_with_type("lvis")) is LVISEvaluator
    coco = build_evaluator("dsla_synth_tiny", max_dets_per_image=1000)
    assert isinstance(coco, COCOEvaluator) and coco._max_dets_per_image == [1, 10, 1000]
    assert isinstance(build_evaluator(voc), PascalVOCDetectionEvaluator)
    for kind in ("cityscapes_instance", "sem_seg", None):
        name = register_with_type(kind)
        with pytest.raises(EvaluatorTypeError, match=f"{name}.*{kind!r}" if kind else f"{name}.*no evaluator_type"):
            build_evaluator(name)
    with pytest.raises(EvaluatorTypeError, match="one test dataset"):
        evaluator_class([voc, "dsla_synth_tiny"])


def test_the_voc_dataset_reads_back(voc):
    """Ground truth as predictions: VOC AP 100 at every IoU, so the files are consistent."""
    res = evaluate_ground_truth_as_predictions(build_evaluator(voc), voc)
    assert res == pytest.approx({"AP": 100.0, "AP50": 100.0, "AP75": 100.0})


def test_train_net_evaluates_a_voc_dataset_with_the_voc_metric(voc, weights, tmp_path):
    res = run(tmp_path, weights, f"dataloader.test.dataset.names={voc}", flags=["--eval-only"])
    assert set(res) == {"bbox"} and set(res["bbox"]) == {"AP", "AP50", "AP75"}  # PascalVOCDetectionEvaluator's
    assert all(0 <= v <= 100 for v in res["bbox"].values())
    with open(tmp_path / "log.txt") as f:
        assert f"Evaluating {voc} using 2012 metric" in f.read()


def test_an_explicit_evaluator_wins(voc, weights, tmp_path):
    """A config that names its evaluator keeps it, whatever the dataset's evaluator_type:
    COCO's metric on the VOC-format set."""
    res = run(tmp_path, weights, f"dataloader.test.dataset.names={voc}",
              "dataloader.evaluator._target_=detectron2.evaluation.COCOEvaluator", flags=["--eval-only"])
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(res["bbox"])


def test_an_unsupported_evaluator_type_fails_before_training(tmp_path):
    name = register_with_type("cityscapes_instance")
    with pytest.raises(EvaluatorTypeError, match="cityscapes_instance"):
        run(tmp_path / "out", "train.max_iter=1", f"dataloader.test.dataset.names={name}")
    assert not os.path.exists(tmp_path / "out")  # refused before anything was written


def test_the_coco_test_loader_starts_no_more_workers_than_cpus(monkeypatch):
    """configs/common/data/coco.py keeps num_workers=4 (machine-independent config values)
    and builds its test loader with at most as many workers as there are CPUs."""
    import warnings

    from detectron2.config import LazyConfig, instantiate

    from dsla_d2.evaluation import loader

    cfg = LazyConfig.load(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "common", "data", "coco.py"))
    assert cfg.dataloader.test._target_ is loader.build_test_loader and cfg.dataloader.test.num_workers == 4
    cfg.dataloader.test.dataset.names = "dsla_synth_tiny"
    monkeypatch.setattr(loader, "available_cpus", lambda: 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch warns of more workers than CPUs
        test_loader = instantiate(cfg.dataloader.test)
    assert test_loader.num_workers == 2
