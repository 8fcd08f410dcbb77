"""Defaults of the ``train`` node read by train_net.py."""
train = dict(
    output_dir="./output",
    init_checkpoint="",
    # True: train a backbone that freezes layers (freeze_at, FrozenBN) without
    # init_checkpoint; refused otherwise (its frozen layers would stay random)
    allow_frozen_random_init=False,
    max_iter=90000,
    amp=dict(enabled=False),  # AMP applies on CUDA only
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=3),
    eval_period=0,  # 0: evaluate only at the end
    log_period=20,
    device="cuda",  # train_net.py falls back to cpu when no GPU is present
    seed=-1,
    clip_grad_norm=0.0,  # > 0: clip the global gradient L2 norm (DSLA: 35)
    vis_period=0,
    # score-IoU consistency (dsla_d2.evaluation) next to COCO AP, as "consistency/..." in
    # metrics.json; pre_nms: also on the pre-NMS candidates (a second inference pass)
    consistency_eval=dict(enabled=False, pre_nms=False),
    # test-time augmentation (dsla_d2.meta_arch.tta: multi-scale + horizontal flip, one merged
    # NMS): enabled (or train_net.py --tta) evaluates --eval-only with it, and adds a TTA
    # evaluation ("bbox_TTA/...") after the final one of a training run. The shortest edges
    # and the cap of the longer side are the data config's (dataloader.tta: COCO's
    # 400..1200/4000, the embedded dataset's 160..224/448); override them here
    tta=dict(enabled=False, min_sizes="${dataloader.tta.min_sizes}", max_size="${dataloader.tta.max_size}", flip=True),
    coco_json_datasets=[],  # filled by --train-json/--test-json; read back for serving
)
