"""COCO 2017 loaders (Detectron2's builtin ``coco_2017_train``/``coco_2017_val`` under
``$DETECTRON2_DATASETS``, default ``./datasets``): 800×1333, horizontal flip; the test loader
starts at most as many workers as there are CPUs; the evaluator is chosen from the test
set's ``evaluator_type`` (COCO here); test-time augmentation at Detectron2's
``TEST.AUG`` sizes (shortest edges 400, 500, ..., 1200, max 4000)."""
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import get_detection_dataset_dicts

from dsla_d2.data.mapper import CheckedDatasetMapper
from dsla_d2.engine.data_order import build_resumable_train_loader
from dsla_d2.evaluation.evaluators import build_evaluator
from dsla_d2.evaluation.loader import build_test_loader

dataloader = OmegaConf.create()

# build_detection_train_loader's arguments; the stream is a function of (seed, iteration),
# so --resume continues it exactly (dsla_d2/engine/data_order.py)
dataloader.train = L(build_resumable_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train", filter_empty=True),
    mapper=L(CheckedDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=[800], max_size=1333, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=False,
    ),
    total_batch_size=16,
    num_workers=4,
)

# build_detection_test_loader, its 4 workers capped at the CPU count (dsla_d2/evaluation/loader.py)
dataloader.test = L(build_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(CheckedDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

# the test set's evaluator_type picks it (coco: COCOEvaluator; dsla_d2/evaluation/evaluators.py);
# naming an evaluator here instead (e.g. L(COCOEvaluator)(...)) uses that one for any dataset
dataloader.evaluator = L(build_evaluator)(dataset_name="${..test.dataset.names}")

# test-time augmentation (train.tta, --tta): Detectron2's TEST.AUG sizes
dataloader.tta = dict(min_sizes=[400, 500, 600, 700, 800, 900, 1000, 1100, 1200], max_size=4000)
