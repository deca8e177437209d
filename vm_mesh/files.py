"""Atomic, durable file writes (temp file + fsync + rename + fsync of the directory) for
state, config and certificates, one file at a time or several that must change together (a
key and its certificate)."""

import contextlib
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

STAGE = ".next"  # where `write_together` puts the files before they move in place


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` atomically (temp file + rename) and durably (both synced to disk) with
    `mode`, creating parent dirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make the renames into `directory` durable: without this fsync a power cut may undo
    them, even though the files' own data was synced."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write secret material readable by the owner only (0600)."""
    write_file(path, data, mode=0o600)


def write_together(directory: Path, files: Sequence[tuple[str, bytes, int]]) -> None:
    """Replace the files (name, data, mode) of `directory` as one: a reader after a crash
    finds either all the old ones or, once `settle` has run, all the new ones. They are
    written to a stage first, the last one marking it complete, then moved in place."""
    stage = directory / STAGE
    shutil.rmtree(stage, ignore_errors=True)  # an earlier, cut-off one: these are newer
    try:
        for name, data, mode in files:
            write_file(stage / name, data, mode)
    except BaseException:  # nothing in place has changed yet: leave no half stage behind
        shutil.rmtree(stage, ignore_errors=True)
        raise
    settle(directory, [name for name, _, _ in files])


def settle(directory: Path, names: Sequence[str]) -> None:
    """Finish a `write_together` of `names` that was cut off, or is finishing now: a complete
    stage (its last file is there) is moved in place, that last file last. An incomplete one
    is left alone (it may still be being written), for the next writer to drop."""
    stage = directory / STAGE
    if not (stage / names[-1]).exists():
        return
    for name in names:
        with contextlib.suppress(FileNotFoundError):  # moved by the writer meanwhile
            (stage / name).replace(directory / name)
    sync_directory(directory)
    shutil.rmtree(stage, ignore_errors=True)
