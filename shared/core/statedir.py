"""The state dir holds the embedded database (every BMC password, encrypted, and every account's
password hash), the generated keys that decrypt and sign them, and the broker's data: only the
account running Racksmith may read it. Directories are 0700 and files 0600.

Files are created private rather than fixed afterwards, so there is no moment when another local
user could open them; ``make_private`` tightens what older versions left readable.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
# For child processes (the embedded nats-server) that create files of their own in it.
UMASK = 0o077


def ensure_dir(path: Path) -> Path:
    """``path`` (and missing parents) created; the directory itself 0700 if this created it."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def create_file(path: Path) -> None:
    """An empty 0600 file at ``path`` unless one exists (SQLite then opens it, and gives its
    -wal and -shm files the database file's mode)."""
    ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def write_file(path: Path, text: str) -> None:
    """``text`` into a new or existing file at ``path``, which is 0600 before anything is in it."""
    create_file(path)
    os.chmod(path, FILE_MODE)
    path.write_text(text)


def make_private(root: Path) -> None:
    """``root`` and everything under it: directories 0700, files 0600 (symlinks untouched)."""
    ensure_dir(root)
    os.chmod(root, DIR_MODE)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs:
            path = Path(directory, name)
            if not path.is_symlink():
                os.chmod(path, DIR_MODE)
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                os.chmod(path, FILE_MODE)
