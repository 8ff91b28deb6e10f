"""The thin edge every script shares: one clear line on stderr and a non-zero exit for bad input,
a traceback only with ``--debug``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable

from tfrecords.atomic import LockedError
from tfrecords.layout import DataError

# Errors that are the user's input or machine, not our bug: reported as one line, exit 2. OSError
# covers a path that is a file where a folder is wanted, permissions and a full disk.
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, LockedError, OSError, ValueError)


def add_debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def quiet_tensorflow() -> None:
    """Import TensorFlow (and start its CPU device) with stderr pointed at a temporary file: its C++
    start-up notices (absl's pre-init warning, oneDNN, CUDA probing) bypass Python and no
    environment variable silences them all, so an error would not be the only line on stderr. The
    notices are replayed if the import fails."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf

            tf.constant(0)
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            with contextlib.suppress(OSError):
                sys.stderr.buffer.write(log.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, tensorflow: bool = True) -> int:
    """Call ``fn(args)``; a user error becomes ``error: <one line>`` on stderr and exit code 2.
    ``tensorflow``: the command uses it, so import it first, quietly (not under ``--debug``);
    commands that fork image workers pass False (TensorFlow must not be loaded before a fork)."""
    try:
        if tensorflow and not getattr(args, "debug", False):
            quiet_tensorflow()
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
