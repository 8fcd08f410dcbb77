"""FCOS-DW on the embedded synthetic dataset, without box refinement:
``configs/fcos_r18_synth.py`` (small ResNet-18-style FPN from random init, 2-conv
64-channel towers, 6 classes, batch 8, AdamW, 1200 iterations, same schedule) with DW's
parts swapped in by ``common/dw.py:to_dw`` — ``DWHead`` (objectness on the reg tower, ReLU
box output with bias 4, prior 0.02), points strictly inside each gt on every level with the
soft centre prior (FCOS's size ranges are not used), ``DWLoss``, s = cls·objectness at
inference. Everything else (data, backbone, optimiser, budget) is the FCOS config's.
"""
from dsla_d2.model_zoo import NODES, get_config

from .common.dw import to_dw

dataloader, lr_multiplier, model, optimizer, train = get_config("configs/fcos_r18_synth.py", keys=NODES)

to_dw(model, box_refinement=False)
