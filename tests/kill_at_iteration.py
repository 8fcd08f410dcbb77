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
from detectron2.engine import SimpleTrainer  # noqa: E402


def main():
    kill_at = int(sys.argv[1])

    class KilledTrainer(SimpleTrainer):
        def after_step(self):
            super().after_step()  # every hook of this iteration, whenever it was registered
            if self.iter == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    train_net.SimpleTrainer = KilledTrainer
    args = train_net.get_parser().parse_args(sys.argv[2:])
    train_net.main(args)


if __name__ == "__main__":
    main()
