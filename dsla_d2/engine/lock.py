"""One training (or evaluation) at a time per output directory.

Two runs writing into one directory interleave ``log.txt``, write every iteration twice
into ``metrics.json`` and overwrite each other's checkpoints. :class:`OutputDirLock` takes
an exclusive ``flock`` on ``<output_dir>/.dsla_d2.lock`` and writes who holds it (pid,
host, start time, command) into the file. The kernel releases the lock when its process
exits, however it exits (``kill -9`` included), so a lock left by a dead process is stale
by construction: the next run takes it. A second run while the first is alive is refused
with :class:`OutputDirLockedError` naming the first.
"""
import fcntl
import json
import os
import socket
import sys
import time
from typing import Optional

from ..errors import UserInputError

__all__ = ["LOCK_FILE", "OutputDirLockedError", "OutputDirLock"]

LOCK_FILE = ".dsla_d2.lock"


class OutputDirLockedError(UserInputError, RuntimeError):
    """Another live process is training or evaluating into the same output directory."""


def _holder_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        return f"pid {info['pid']} on {info['host']}, started {info['started']} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its details"


class OutputDirLock:
    """Exclusive lock on an output directory (a context manager; ``acquire``/``release``).

    Args:
        output_dir: created if missing (the lock file is the first file written there).
    """

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputDirLock":
        os.makedirs(self.output_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputDirLockedError(
                f"{self.output_dir} is in use by another run: {_holder_text(self.path)}. Wait for it to "
                "finish, stop it, or choose another train.output_dir."
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
