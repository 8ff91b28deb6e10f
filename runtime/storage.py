"""Paths that may be local or ``tf.io.gfile`` URLs (``gs://`` on TPU, ``s3://``...): one set of
helpers that every package reads and writes through.

TensorFlow is imported lazily (``gfile()``) so that image workers and the synthesizer stay light.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Iterator


def is_url(path: str) -> bool:
    return "://" in str(path)


def gfile():
    """``tf.io.gfile``, imported on first use."""
    import tensorflow as tf

    return tf.io.gfile


def join(*parts: str) -> str:
    return posixpath.join(*parts) if is_url(parts[0]) else os.path.join(*parts)


def exists(path: str) -> bool:
    return gfile().exists(path) if is_url(path) else os.path.exists(path)


def read_bytes(path: str) -> bytes:
    if is_url(path):
        with gfile().GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def makedirs(path: str) -> None:
    if is_url(path):
        gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def isdir(path: str) -> bool:
    return gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def dirname(path: str) -> str:
    """The folder holding ``path`` (absolute when local)."""
    return posixpath.dirname(path) if is_url(path) else os.path.dirname(os.path.abspath(path))


def remove(path: str) -> None:
    gfile().remove(path) if is_url(path) else os.remove(path)


def rmtree(path: str) -> None:
    """Remove a folder and its contents; nothing when absent."""
    if is_url(path):
        if gfile().exists(path):
            gfile().rmtree(path)
    else:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def listdir(path: str) -> list[str]:
    names = gfile().listdir(path) if is_url(path) else os.listdir(path)
    return sorted(n.rstrip("/") for n in names)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path holding ``path``'s bytes (``path`` itself when local)."""
    if not is_url(path):
        yield path
        return
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        local = os.path.join(d, path.rsplit("/", 1)[-1])
        with open(local, "wb") as f:
            f.write(read_bytes(path))
        yield local
