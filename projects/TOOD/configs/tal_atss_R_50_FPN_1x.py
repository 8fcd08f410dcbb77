"""ATSS head + TAL, R-50-FPN 1x on COCO 2017: the TOOD paper's pairing of its task-aligned
assignment and loss with the ordinary parallel (ATSS) head, without the T-head.

The paper's AP for this row is **not recorded here**: the paper text was not available to
check the ablation tables (see ``projects/TOOD/README.md``). The authors' full TOOD (T-head +
TAL, anchor-free) reaches 42.5 AP on minival (their README).

Everything as ``configs/atss_R_50_FPN_1x.py`` (data, R-50 + FPN P3-P7, ATSSHead with its
delta box coder and one 8·stride anchor per location) with ``to_tal`` (``common/tal.py``:
TaskAlignedAssigner, no centerness branch, the task-aligned loss) and the authors' recipe
(their ``tood_r50_fpn_1x_coco.py``, an mmdetection 2.x config):

* ATSS warm-up for the first 4 epochs (``initial_epoch = 4``): 4 · 7,330 = 29,320
  iterations at batch 16;
* anchors centred at (j·s, i·s) (mmdetection's anchor generator, offset 0);
* SGD lr 0.01 at batch 16, momentum 0.9, weight decay 1e-4 on every parameter
  (``mmdet_sgd()``); 12 epochs, lr × 0.1 after epochs 8 and 11, linear warm-up from 0.001
  over 500 iterations (87,960 iterations);
* inference: per level the top 1000 locations by their best class probability, classes
  above 0.05 there, class-aware NMS 0.6, 100 detections.
"""
from dsla_d2.model_zoo import get_config

from .common.tal import to_tal

dataloader, model, train = get_config("configs/atss_R_50_FPN_1x.py", keys=("dataloader", "model", "train"))
mmdet_sgd = get_config("configs/common/optim.py", keys="mmdet_sgd")
epoch_schedule, iters_per_epoch = get_config(
    "configs/common/schedules.py", keys=("epoch_schedule", "COCO_ITERS_PER_EPOCH_BS16")
)

to_tal(model, warmup_iters=4 * iters_per_epoch)
model.prior_generator.offset = 0.0
model.test_topk_mode = "locations"
model.test_topk_rank = "cls"

optimizer = mmdet_sgd()
optimizer.lr = 0.01
dataloader.train.total_batch_size = 16
train.max_iter, lr_multiplier = epoch_schedule(
    12, [8, 11], warmup_iters=500, warmup_factor=0.001, warmup_method="linear"
)
