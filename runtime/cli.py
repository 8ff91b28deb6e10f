"""The thin edge every script shares: one clear line on stderr and a non-zero exit for bad input,
a traceback only with ``--debug``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable

from runtime import flags
from runtime.atomic import LockedError


class DataError(ValueError):
    """A problem with an input file as a whole (not one bad row): reported as one line, exit 2."""


# Errors that are the user's input or machine, not our bug: reported as one line, exit 2. OSError
# covers a path that is a file where a folder is wanted, permissions and a full disk.
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, LockedError, OSError, ValueError)


def add_debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def add_common_flags(p: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--debug``, which every command takes."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_flag(p)


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags both trainers take beside their config: ``--resume``, ``--smoke``, ``--quiet``, ``--debug``."""
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--smoke", action="store_true",
                   help="tiny settings for smoke tests; options typed on the command line still apply")
    add_common_flags(p)


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


def parse_config(doc: str | None, cls: type, argv: list[str] | None, training: bool = False,
                 skip: tuple[str, ...] = ()) -> argparse.Namespace:
    """A command whose options are ``cls``'s fields (``runtime.flags``), plus ``--quiet`` and
    ``--debug`` (and, for a trainer, ``--resume`` and ``--smoke``), parsed from ``argv``."""
    p = flags.parser(doc)
    flags.add_config(p, cls, skip)
    (add_training_flags if training else add_common_flags)(p)
    return flags.parse(p, argv)


def train_main(doc: str | None, cls: type, smoke: Callable, train: Callable, argv: list[str] | None) -> int:
    """Both trainers' command: the config from the options (over ``smoke(records, out)`` with
    ``--smoke``), ``train(cfg, resume, progress)``, and its final metrics as one JSON line."""

    def go(a: argparse.Namespace) -> int:
        cfg = flags.config_from(cls, a, smoke(a.records, a.out) if a.smoke else None)
        print(json.dumps({"run_dir": a.out, **train(cfg, resume=a.resume, progress=not a.quiet)}))
        return 0

    return run(go, parse_config(doc, cls, argv, training=True))


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
