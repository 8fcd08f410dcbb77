"""Training progress, handed explicitly to the parts that depend on it.

Parts whose behaviour changes over training (Dynamic ATSS's D_up / D_down weights, Table 3)
receive a :class:`TrainingProgress` as an argument; nothing inside the model reads
Detectron2's global ``EventStorage`` to find out where training is. The trainer sets it on
the model before every step (:class:`dsla_d2.engine.TrainingProgressHook`); tests and
scripts pass one directly.
"""
from dataclasses import dataclass

__all__ = ["TrainingProgress"]


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is: the iteration about to run and the total number of iterations.

    Attributes:
        iteration: 0-based index of the current iteration.
        max_iter: number of iterations of the whole run (≥ 1).
    """

    iteration: int
    max_iter: int

    def __post_init__(self):
        if int(self.max_iter) < 1:
            raise ValueError(f"TrainingProgress.max_iter={self.max_iter} must be ≥ 1")

    @property
    def fraction(self) -> float:
        """iteration / max_iter, clamped to [0, 1]."""
        return min(max(int(self.iteration) / int(self.max_iter), 0.0), 1.0)
