"""Writes that are never seen half-done, and a lock that keeps two writers out of one folder.

Every output of the project goes through here: a reader either sees the old file, or the whole new
one, never a prefix. Paths may be local or any ``tf.io.gfile`` URL (``gs://``, ``ram://``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtime.storage import gfile, is_url


def tmp_name(path: str) -> str:
    """The temporary sibling a file is written to before it is renamed into place."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp-{os.getpid()}")


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    if is_url(path):
        tmp = tmp_name(path)
        with gfile().GFile(tmp, "wb") as f:
            f.write(data)
        gfile().rename(tmp, path, overwrite=True)
        return
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str) -> str:
    """SHA-256 of a (local or URL) file, as recorded in every manifest."""
    import hashlib

    from runtime.storage import read_bytes

    return hashlib.sha256(read_bytes(path)).hexdigest()


def commit(tmp: str, path: str) -> None:
    """Rename a finished temp file into place (fsync first where the disk is local)."""
    if is_url(path):
        gfile().rename(tmp, path, overwrite=True)
        return
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish(local: str, path: str) -> None:
    """Move a finished local file to ``path`` (a local path or a URL), atomically."""
    if is_url(path):
        tmp = tmp_name(path)
        gfile().copy(local, tmp, overwrite=True)
        commit(tmp, path)
        os.remove(local)
    else:
        commit(local, path)


def scratch(path: str) -> str:
    """Where to write a file bound for ``path`` first: beside it when local (same disk: the rename
    is atomic), else in the system's temporary folder."""
    name = f".tmp-{os.getpid()}-{os.path.basename(path.rstrip('/'))}"
    return os.path.join(tempfile.gettempdir() if is_url(path) else os.path.dirname(path), name)


class LockedError(RuntimeError):
    """Another live process holds the output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


@contextlib.contextmanager
def folder_lock(folder: str) -> Iterator[None]:
    """Hold ``folder/.lock`` (owner's pid and host) while the block runs.

    A second writer is refused with ``LockedError`` naming the owner; a lock left by a killed
    process on this host is detected as stale and taken over. Object stores have no atomic
    create-if-absent, so URLs are not locked (documented in the README).
    """
    if is_url(folder):
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    lock = os.path.join(folder, ".lock")
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(Path(lock).read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            pid = int(owner.get("pid", 0) or 0)
            if owner.get("host") == me["host"] and pid and not _pid_alive(pid):
                os.unlink(lock)  # stale: its owner was killed
                continue
            raise LockedError(
                f"{folder} is being written by pid {pid or '?'} on {owner.get('host', '?')}; "
                f"wait for it, or delete {lock} if that process is gone"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
