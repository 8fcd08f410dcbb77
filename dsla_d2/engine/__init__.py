"""Training-run machinery around Detectron2's engine, one concept per module.

* :mod:`.progress`: the hook that tells the model where training is.
* :mod:`.config_checks`: config values (numbers, devices, checkpoint files) validated at
  start-up, naming the key.
* :mod:`.run_dir`: the output-directory policy (no silent rerun over a run; ``--resume``,
  ``--restart``) and metrics.json repair on resume.
* :mod:`.atomic`: files replaced atomically (temporary file + rename).
* :mod:`.checkpoint`: atomic checkpoints that describe the model they hold, resume that
  falls back to the newest loadable checkpoint, refusal of another model's weights.
* :mod:`.data_order`: the training data stream as a pure function of (seed, iteration),
  so that a resumed run sees exactly the images and augmentations of an uninterrupted one.
* :mod:`.hooks`: trainer hooks that carry the data order and the metric history across a
  resume.
* :mod:`.distributed`: multi-process launch and DDP, on GPUs (NCCL) and on CPUs (gloo).
* :mod:`.data_checks`: train/test dataset agreement, checked before the model is built.
* :mod:`.lock`: one run at a time per output directory.
"""
from .progress import TrainingProgressHook
