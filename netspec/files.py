"""Writing a file so that a reader never sees half of it: the converted specs of import-caffe and
export-caffe, a run folder's metrics and summaries."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from netspec.errors import Diagnostic, NetspecError


def unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be written as a file, as far as can be told without writing anything: it is a
    folder, or a file stands where one of its folders should be. None when nothing stands in the way."""
    target = Path(path)
    try:
        if target.is_dir():
            return "it is a folder"
        for parent in target.parents:  # the nearest one that exists must be a folder, to be created under
            if parent.exists():
                return None if parent.is_dir() else f"{parent} is a file, not a folder"
    except OSError as e:  # a name too long, a loop of links: the system will not look it up
        return e.strerror or str(e)
    return None


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """The whole file or none of it (a temporary beside it, then renamed): a reader never sees a
    half-written file, and a failed write leaves what was there. The file gets the mode a plain
    ``open`` would give it (the umask's), not ``mkstemp``'s owner-only 0600.

    An operating-system refusal (no permission, a full disk, a folder or file in the way) is the user's
    to fix: it raises NetspecError naming the file. Commands that name their output check it with
    ``unwritable`` first, before writing anything."""
    target = Path(path)
    # A name no other writer picks (pid and random bits), opened exclusively so a clash fails loudly.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise NetspecError([Diagnostic("error", f"cannot write {target}: {e.strerror or e}")]) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
