"""Cheap structural checks of the files interp reads: a damaged file is named in one line.

A truncated download, an interrupted copy or a file that is not what its name says would
otherwise fail deep inside a reader (``cannot mmap an empty file``, ``cannot reshape array``, a
Rust panic from safetensors) with a traceback that does not name the file. These checks read
only headers and sizes, so they cost milliseconds even for large checkpoints, and raise
:class:`~interp.errors.DamagedFileError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from interp.errors import DamagedFileError

_DAMAGED = "is damaged or incomplete"


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object, or raise :class:`DamagedFileError` naming the file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except UnicodeDecodeError as error:
        raise DamagedFileError(f"{path} {_DAMAGED}: not a text file ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise DamagedFileError(
            f"{path} {_DAMAGED}: not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno})"
        ) from error
    if not isinstance(document, dict):
        raise DamagedFileError(f"{path} {_DAMAGED}: expected a JSON object")
    return document


def check_safetensors(path: str | os.PathLike) -> None:
    """Check a ``.safetensors`` file's header and that every tensor's bytes are present."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise DamagedFileError(f"{path} {_DAMAGED}: {size} bytes, too short for safetensors")
        length = int.from_bytes(head, "little")
        if length > size - 8:
            raise DamagedFileError(
                f"{path} {_DAMAGED}: its header claims {length} bytes but the file has {size}"
            )
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DamagedFileError(f"{path} {_DAMAGED}: unreadable safetensors header") from error
    if not isinstance(header, dict):
        raise DamagedFileError(f"{path} {_DAMAGED}: unreadable safetensors header")
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        raise DamagedFileError(
            f"{path} {_DAMAGED}: truncated ({size} of {needed} bytes; the tensors do not fit)"
        )


def check_gguf(path: str | os.PathLike) -> None:
    """Check a ``.gguf`` file: magic, header, and that every tensor's bytes are present."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DamagedFileError(f"{path} {_DAMAGED}: the file is empty")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise DamagedFileError(f"{path} {_DAMAGED}: not a GGUF file (no GGUF magic bytes)")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))  # reads the header and maps every tensor
    except (ValueError, IndexError, KeyError, OSError, EOFError) as error:
        raise DamagedFileError(f"{path} {_DAMAGED}: truncated or corrupt ({size} bytes)") from error
    for tensor in reader.tensors:
        if tensor.data_offset + tensor.n_bytes > size:
            raise DamagedFileError(
                f"{path} {_DAMAGED}: truncated in tensor {tensor.name!r} ({size} bytes)"
            )
