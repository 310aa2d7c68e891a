"""Durable file operations: atomic whole-file writes, synced appends, directory syncs, shredding.

Evidence, run state, keys and scratch files must survive a crash at any instant, and whatever
we delete must not stay readable in the file: these are the only places that know how.
Everything is created 0600 whatever the umask (DESIGN.md §7).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def fsync_dir(directory: Path) -> None:
    """Sync a directory, so a rename or unlink inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a whole file through a synced temporary file and a rename (or a link).

    Readers see the old file or the new one, never a half-written one.

    Args:
        path: the file to write.
        data: its whole content.
        exclusive: refuse to replace an existing file (raises ``FileExistsError``); used for
            keys, which are never silently replaced.
    """
    _place(path, data, exclusive=exclusive, sync=True)
    fsync_dir(path.parent)


def _place(path: Path, data: bytes, *, exclusive: bool, sync: bool) -> None:
    """Write ``data`` to a temporary file beside ``path`` and link (``exclusive``) or rename it
    into place: readers never see half a file. ``sync``: fsync the data first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)  # fails if the file exists, atomically
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk or a refused link leaves no partial file behind


def create_new_files(files: Sequence[tuple[Path, bytes]]) -> None:
    """Create many new small files, each whole or not at all, then make them all durable at once.

    Each is written to a temporary file and linked into place (never replacing a file), and one
    ``syncfs`` of their file system then makes every one of them durable before this returns:
    two fsyncs per file made thousands of keys (one per transferred child) take minutes on a
    busy disk. Where ``syncfs`` is missing, ``os.sync`` does the same for every file system.

    Args:
        files: each new file's path and whole content; all on one file system.

    Raises:
        FileExistsError: a file exists already; the files this call created before it are
            removed again, so none of ``files`` is left half made.
    """
    created: list[Path] = []
    try:
        for path, data in files:
            _place(path, data, exclusive=True, sync=False)  # one syncfs below makes all durable
            created.append(path)
    except FileExistsError:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    if files:
        sync_file_system(files[0][0].parent)


def sync_file_system(directory: Path) -> None:
    """Write everything cached for the file system holding ``directory`` to disk, and wait (Linux
    ``syncfs``; elsewhere ``os.sync``)."""
    syncfs = getattr(_libc(), "syncfs", None)
    fd = os.open(directory, os.O_RDONLY)
    try:
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def append_line(path: Path, line: bytes) -> None:
    """Append one line with a single write, then sync the file (and the directory if new)."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def move(source: Path, target: Path) -> None:
    """Rename within one file system and sync both directories."""
    os.replace(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def shred_file(path: Path) -> bool:
    """Overwrite a file with random bytes, sync, unlink it and sync its directory.

    On a conventional file system this leaves no readable copy in the free list. (Copy-on-write
    file systems and SSD wear levelling keep old blocks whatever software does: that is why what
    must not come back is encrypted and its key destroyed, and this is only the second line.)

    Returns:
        True if the file existed.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    with open(path, "r+b", buffering=0) as fh:
        remaining = max(size, 1)
        while remaining > 0:
            chunk = min(remaining, 1 << 20)
            fh.write(os.urandom(chunk))
            remaining -= chunk
        os.fsync(fh.fileno())
    path.unlink()
    fsync_dir(path.parent)
    return True


def tighten(root: Path) -> int:
    """Make ``root`` and everything under it owner-only (dirs 0700, files 0600); return how many changed.

    Run at start: whatever the umask was when a file was made, or what an earlier version left,
    nobody else on the machine may read the home (it holds the registers in plain text). Other
    processes may be working in the home meanwhile (Airflow runs several LAs' tasks at once): a
    file or directory that disappears during the walk (a temporary file renamed into place) is
    simply not there to tighten.
    """
    changed = 0
    if not root.exists():
        return changed
    for directory, subdirectories, files in os.walk(root):  # os.walk skips a directory that vanished
        for path in (Path(directory), *(Path(directory, name) for name in files)):
            try:
                if path.is_symlink():
                    continue
                mode = path.stat().st_mode & 0o777
                if mode & 0o077:  # group or others may read, write or enter: take it away
                    path.chmod((mode & 0o700) | (0o700 if path.is_dir() else 0))
                    changed += 1
            except FileNotFoundError:
                continue
        subdirectories[:] = [d for d in subdirectories if not Path(directory, d).is_symlink()]
    return changed
