"""The embedded synthetic dataset (``dsla_synth_train``/``dsla_synth_val``, generated on
first use under ``$DSLA_D2_SYNTH_ROOT`` or ``$DETECTRON2_DATASETS/dsla_synth``): the
256–384 px images are resized to a shorter side of 176–208 px (test: 192), horizontal
flip, batch 8 — sized for 2 CPU cores."""
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
    dataset=L(get_detection_dataset_dicts)(names="dsla_synth_train", filter_empty=False),
    mapper=L(CheckedDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=[176, 192, 208], max_size=288, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=False,
    ),
    total_batch_size=8,
    num_workers=1,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="dsla_synth_val", filter_empty=False),
    mapper=L(CheckedDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=192, max_size=288)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=1,
)

dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}")
