"""FoveaBox on the embedded synthetic dataset (same backbone, budget and schedule as
``configs/fcos_r18_synth.py``, so the embedded-dataset rows of the methods compare).

The COCO FoveaBox model made small by ``to_embedded_small`` (small ResNet-18-style FPN from
random init, 2-conv 64-channel head, 6 classes), images of 176-208 px, batch 8, the budget
of fcos_r18_synth.py. The images are about a third of COCO's size; like the FCOS synth
config (which halves FCOS's size ranges) we **halve FoveaBox's scale ranges and its base
edges together**: ranges ((0.5,32), (16,64), (32,128), (64,256), (128,1024)), base edges
(8, 16, 32, 64, 128). Scaling both by the same factor keeps η = 2, keeps every range at the
same multiple of its level's base edge, and so gives the assigned points the same
distribution of log(d/z_l) targets as on COCO; the strides stay 8..128 (the feature maps
are the backbone's).
"""
from .common.data.synthetic import dataloader
from .common.models.embedded import to_embedded_small
from .common.models.foveabox import model

to_embedded_small(model)

# Budget, optimiser and schedule exactly as configs/fcos_r18_synth.py.
from .fcos_r18_synth import lr_multiplier, optimizer, train  # noqa: E402,F811
