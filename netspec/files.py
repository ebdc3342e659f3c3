"""Writing a file so that a reader never sees half of it: the converted specs of import-caffe and
export-caffe, a run folder's metrics and summaries."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """The whole file or none of it (a temporary beside it, then renamed): a reader never sees a
    half-written file, and a failed write leaves what was there. The file gets the mode a plain
    ``open`` would give it (the umask's), not ``mkstemp``'s owner-only 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name no other writer picks (pid and random bits), opened exclusively so a clash fails loudly.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
