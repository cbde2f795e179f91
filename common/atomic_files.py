"""Atomic writes: a reader (or a crashed run) never sees a half-written output file or folder."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp file beside ``path`` to write; on success it replaces ``path`` in one rename.

    An existing ``path`` is refused unless ``overwrite``; on failure the temp file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and an atomic rename."""
    with atomic_file(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: Path, error: type[Exception], what: str) -> Any:
    """Parse the JSON file ``path``; a missing file or bad JSON raises ``error`` naming the file."""
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as problem:
        raise error(f"{path}: not valid JSON ({problem})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys, in order) as a CSV file with a header, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


@contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename.

    An existing ``path`` is refused unless ``overwrite``; on failure the temp folder is removed
    and ``path`` is left as it was. A run that is killed (SIGKILL, a lost node) cannot remove its
    temp folder, which may be as large as the output: the temp folder's name records the host and
    process, and the next run for the same ``path`` removes (and reports on stderr) those whose
    process on this host no longer runs. The output gets the usual umask permissions.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_folders(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{_owner()}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700, private to this account
        yield tmp
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temp_folders(path: Path) -> list[Path]:
    """Remove the temp folders of ``atomic_directory(path)`` left by processes of this host that no
    longer run; returns them. Folders of running processes or of other hosts are left alone."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?P<host>.+)-(?P<pid>\d+)\.[^.]+\.tmp")
    removed = []
    for candidate in sorted(path.parent.glob(f".{path.name}.*.tmp")):
        match = pattern.fullmatch(candidate.name)
        if candidate.is_dir() and match and match["host"] == socket.gethostname() and not _running(int(match["pid"])):
            shutil.rmtree(candidate, ignore_errors=True)
            print(f"removed {candidate}: the temporary folder of an earlier run (process {match['pid']}) that did not finish",
                  file=sys.stderr, flush=True)
            removed.append(candidate)
    return removed


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process
        return True
    return True


def replace_directory(source: Path, target: Path) -> None:
    """Move folder ``source`` to ``target``, replacing an existing ``target`` (old copy removed last)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)
