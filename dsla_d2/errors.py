"""Errors in what the user gave (a config key or value, a data file, a path, a checkpoint),
as opposed to bugs.

Every refusal of user input in dsla_d2 raises a subclass of :class:`UserInputError`. The
command-line tools (``train_net.py``, ``demo.py``) print such an error as one line and exit
with status 2 (:func:`run_cli`); the traceback is printed only with ``--debug`` or
``DSLA_D2_DEBUG=1``. Any other exception is a bug and keeps its traceback.
"""
import logging
import os
import sys
from typing import Callable

__all__ = ["UserInputError", "UsageError", "UnknownConfigKeyError", "DEBUG_ENV", "debug_requested", "run_cli"]

DEBUG_ENV = "DSLA_D2_DEBUG"


class UserInputError(Exception):
    """Base of the errors that refuse user input; the message says what to change."""


class UsageError(UserInputError, ValueError):
    """Command-line arguments that do not go together or are incomplete."""


class UnknownConfigKeyError(UserInputError, KeyError):
    """A ``key=value`` override whose key is not in the config."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


def debug_requested(argv=None) -> bool:
    """``--debug`` among the arguments or ``DSLA_D2_DEBUG`` set to a non-empty, non-0 value."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _user_error(exc: BaseException):
    """The user-input error behind ``exc`` (itself, or a cause it was raised from), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserInputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__
    return None


def run_cli(main: Callable[[], object], prog: str, debug: bool = False):
    """Run ``main()``; a :class:`UserInputError` becomes ``prog: error: message`` on stderr
    and exit status 2 (with its traceback too when ``debug``)."""
    try:
        return main()
    except Exception as e:  # noqa: BLE001 (re-raised unless it is the user's)
        err = _user_error(e)
        if err is None or debug:
            raise
        logging.shutdown()
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
