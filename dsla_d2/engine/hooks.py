"""Trainer hooks that make a resumed run continue exactly where the checkpoint left it.

Hooks with a ``state_dict`` are saved in every checkpoint by Detectron2's trainer (under
``trainer.hooks.<class name>``) and loaded back on ``--resume``.
"""
import logging
from typing import Dict

from fvcore.common.history_buffer import HistoryBuffer

from detectron2.engine import HookBase
from detectron2.engine.hooks import EvalHook, PeriodicWriter

from .data_order import ResumableTrainLoader

__all__ = ["METRICS_WINDOW", "DataOrderHook", "MetricsHistory", "EvalAfterSuccess", "RunWriters"]

# The window of the metric writers (JSONWriter, TensorboardXWriter, CommonMetricPrinter
# median over the last 20 values): train_net.py builds its writers with it.
METRICS_WINDOW = 20

logger = logging.getLogger(__name__)


class DataOrderHook(HookBase):
    """Starts the :class:`ResumableTrainLoader` at the trainer's start iteration and keeps
    its data-order seed in checkpoints."""

    def __init__(self, loader: ResumableTrainLoader):
        self.loader = loader
        self._loaded = False

    def before_train(self):
        self.loader.start_iter = self.trainer.start_iter
        if self.trainer.start_iter > 0 and not self._loaded:
            logger.warning(
                "Resuming at iteration %d from a checkpoint without a data-order seed (written "
                "before dsla_d2.engine): the data stream continues, but not the original run's",
                self.trainer.start_iter,
            )

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)
        self._loaded = True


class MetricsHistory(HookBase):
    """Keeps the last ``window`` values of every scalar in checkpoints and puts them back
    into the new EventStorage on resume, so the writers' medians (metrics.json, the
    console, TensorBoard) after a resume are those of an uninterrupted run.

    Restored values go into the storage's histories only (``histories()`` and
    ``smoothing_hints()`` are the storage's own dicts), not into its latest values, so the
    writers do not write them again.
    """

    def __init__(self, window: int = METRICS_WINDOW):
        self.window = int(window)
        self._restored: Dict[str, dict] = {}

    def state_dict(self):
        storage = getattr(self.trainer, "storage", None)
        if storage is None:  # not training
            return {}
        hints = storage.smoothing_hints()
        return {
            name: {
                "values": [(float(v), int(it)) for v, it in buffer.values()[-self.window :]],
                "smoothing_hint": bool(hints.get(name, True)),
            }
            for name, buffer in storage.histories().items()
        }

    def load_state_dict(self, state):
        self._restored = dict(state)

    def before_train(self):
        storage = self.trainer.storage
        histories, hints = storage.histories(), storage.smoothing_hints()
        for name, saved in self._restored.items():
            buffer = HistoryBuffer()
            for value, iteration in saved["values"]:
                buffer.update(value, iteration)
            histories[name] = buffer
            hints[name] = saved["smoothing_hint"]
        self._restored = {}


class EvalAfterSuccess(EvalHook):
    """Detectron2's ``EvalHook``, except that the final evaluation runs only when training
    finished: ``EvalHook`` evaluates after a step that raised at the last iteration too
    (its test is ``iter + 1 >= max_iter``), reporting an AP for a model that failed. The
    trainer sets ``iter = max_iter`` only after the last step succeeded."""

    def after_train(self):
        if self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()
        del self._func


class RunWriters(PeriodicWriter):
    """``PeriodicWriter`` whose writers are built when training starts, from the iteration
    it starts at (``make_writers(start_iter)``: TensorBoard's purge step on resume), so that
    it can be registered with the other hooks before the checkpoint is loaded, and in
    front of the checkpointer."""

    def __init__(self, make_writers, period: int = 20):
        super().__init__([], period=period)
        self._make_writers = make_writers

    def before_train(self):
        self._writers = list(self._make_writers(self.trainer.start_iter))
