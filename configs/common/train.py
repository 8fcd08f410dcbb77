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
    coco_json_datasets=[],  # filled by --train-json/--test-json; read back for serving
)
