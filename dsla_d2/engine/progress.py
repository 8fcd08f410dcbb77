"""The hook that tells the model where training is (see :mod:`dsla_d2.utils.progress`)."""
from detectron2.engine import HookBase

__all__ = ["TrainingProgressHook"]


class TrainingProgressHook(HookBase):
    """Before every step, call ``model.set_training_progress(iteration, max_iter)`` on the
    trainer's model (unwrapped from DistributedDataParallel) if it has that method.

    Register it before the step runs (any position in the hook list works: it acts in
    ``before_step``).
    """

    def before_step(self):
        model = getattr(self.trainer.model, "module", self.trainer.model)
        setter = getattr(model, "set_training_progress", None)
        if setter is not None:
            setter(self.trainer.iter, self.trainer.max_iter)
