"""The thin edge every script shares: one clear line on stderr and a non-zero exit for bad input,
a traceback only with ``--debug``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tfrecords.atomic import LockedError
from tfrecords.layout import DataError

# Errors that are the user's input, not our bug: reported as one line, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, LockedError, FileNotFoundError, ValueError)


def add_debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def run(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call ``fn(args)``; a user error becomes ``error: <one line>`` on stderr and exit code 2."""
    try:
        return int(fn(args) or 0)
    except USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
