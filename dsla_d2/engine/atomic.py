"""Atomic file replacement: a reader (or a resume after a kill) sees the old file or the
new one, never a truncated mix."""
import contextlib
import os
import tempfile

__all__ = ["atomic_open"]


def _default_mode() -> int:
    """0o666 minus the umask: the permissions ``open(path, "w")`` would give."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb"):
    """Open a temporary file next to ``path`` for writing; on a clean exit, flush it to
    disk and rename it over ``path`` (``os.replace`` is atomic on POSIX and Windows).
    On an exception the temporary file is removed and ``path`` is untouched."""
    if "w" not in mode:
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, _default_mode())  # mkstemp makes it private (0600)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
