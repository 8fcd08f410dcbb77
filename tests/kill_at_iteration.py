"""Run ``train_net.py`` and SIGKILL the process right after a given iteration.

    python tests/kill_at_iteration.py ITER train_net.py-arguments...

A stand-in for "the machine died": the process kills itself with SIGKILL (no clean-up, no
atexit, no flushing beyond what already happened) at the end of iteration ``ITER``, after
every hook of that iteration ran (checkpoint written, ``last_checkpoint`` updated, metrics
logged). Killing from inside makes the point of death deterministic; a test that kills the
process from outside when a file appears races with the trainer's own writes.
"""
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import train_net  # noqa: E402
from detectron2.engine import HookBase, SimpleTrainer  # noqa: E402


class KillAfter(HookBase):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    kill_at = int(sys.argv[1])

    class KilledTrainer(SimpleTrainer):
        def register_hooks(self, hooks):
            # last, so that the checkpointer and the writers of this iteration ran first
            super().register_hooks(list(hooks) + [KillAfter(kill_at)])

    train_net.SimpleTrainer = KilledTrainer
    args = train_net.get_parser().parse_args(sys.argv[2:])
    train_net.main(args)


if __name__ == "__main__":
    main()
