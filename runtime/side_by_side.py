"""Two trainings at once on a small CPU host: each in its own spawned process, one intra-op thread each.

A training step here fills ~1.25 of the two cores whatever the thread settings, so two trainings side
by side do more work per second than one after the other. Left at TensorFlow's default threads (one
per core each) the two processes fight over the cores: one detector step pair measured 39 photos/s
together against 29 for one alone; with one intra-op thread each, 52-54 (docs/history.md, "Two
trainings side by side"). Spawned, not forked: TensorFlow is not fork-safe, and a fresh interpreter
takes its thread settings before the runtime starts.

    p = start(train_detector, (records, out, "default", 0), "detector")
    q = start(train_embedder, (crops, out2, "default", 0), "embedder")
    ...                                    # the parent's own work
    wait_all((p, "the detector's training"), (q, "the embedder's training"))  # SystemExit, one line,
                                                                              # at the first failure
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable


def start(target: Callable, args: tuple, name: str):
    """``target(*args)`` in a new spawned process with one intra-op thread; returns the started
    ``multiprocessing.Process``. It ends with its parent: a daemon (an interrupted parent ends it)
    that also stops itself when the parent is killed outright. ``target`` must be a module-level
    function (it is pickled by name)."""
    p = multiprocessing.get_context("spawn").Process(target=_one_thread, args=(target, args, os.getpid()),
                                                     name=name, daemon=True)
    p.start()
    return p


def _one_thread(target: Callable, args: tuple, parent: int) -> None:
    threading.Thread(target=_orphaned, args=(parent,), daemon=True).start()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # before the runtime starts: see the module
    target(*args)


def _orphaned(parent: int, every_s: float = 2.0) -> None:
    """Exit when ``parent`` is gone (a SIGKILL or SIGTERM skips the daemon clean-up; the child would
    train on alone)."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def wait(p, what: str) -> None:
    """Wait for ``start``'s process; ``SystemExit`` with one line naming ``what`` when it failed (its
    traceback is already on stderr)."""
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"{what} failed (exit code {p.exitcode}; its output is above)")


def wait_all(*jobs: tuple) -> None:
    """Wait for every ``(process, what)`` of ``start``, in the order they end: the first that fails
    raises at once (``wait``), not after the others have trained on for minutes."""
    from multiprocessing.connection import wait as ended

    left = {p.sentinel: (p, what) for p, what in jobs}
    while left:
        for sentinel in ended(list(left)):
            wait(*left.pop(sentinel))
