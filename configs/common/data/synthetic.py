"""The embedded synthetic dataset (``dsla_synth_train``/``dsla_synth_val``, generated on
first use under ``$DSLA_D2_SYNTH_ROOT`` or ``$DETECTRON2_DATASETS/dsla_synth``): the
256–384 px images are resized to a shorter side of 176–208 px (test: 192), horizontal
flip, batch 8 — sized for 2 CPU cores. The evaluator is chosen from the test set's
``evaluator_type`` (COCO here); test-time augmentation at shortest edges 160–224."""
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts

from dsla_d2.data.mapper import CheckedDatasetMapper
from dsla_d2.engine.data_order import build_resumable_train_loader
from dsla_d2.evaluation.evaluators import build_evaluator

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

# the test set's evaluator_type picks it (coco: COCOEvaluator; dsla_d2/evaluation/evaluators.py);
# naming an evaluator here instead (e.g. L(COCOEvaluator)(...)) uses that one for any dataset
dataloader.evaluator = L(build_evaluator)(dataset_name="${..test.dataset.names}")

# test-time augmentation (train.tta, --tta): shortest edges around the 192-px test size, the
# 176-208 px training range and one step of 16 px beyond it on each side; the longer side
# is not capped in practice (the images' aspect ratios stay below 1.5)
dataloader.tta = dict(min_sizes=[160, 176, 192, 208, 224], max_size=448)
