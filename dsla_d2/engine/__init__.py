"""Training-loop pieces of dsla_d2 built on Detectron2's engine (hooks)."""
from .progress import TrainingProgressHook
