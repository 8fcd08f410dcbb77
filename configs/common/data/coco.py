"""COCO 2017 loaders (Detectron2's builtin ``coco_2017_train``/``coco_2017_val`` under
``$DETECTRON2_DATASETS``, default ``./datasets``): 800×1333, horizontal flip."""
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator

from dsla_d2.data.mapper import CheckedDatasetMapper
from dsla_d2.engine.data_order import build_resumable_train_loader

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

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(CheckedDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}")
