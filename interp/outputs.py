"""Where interp writes: checks before the work, atomic writes, and what ``--overwrite`` may replace.

Every output goes through :func:`write_atomically`: the content is written into a temporary
sibling (named ``.<name>.interp-tmp-<pid>-<hex>``) and renamed into place, so a crash or a SIGTERM
never leaves half a result, and a temporary left by a killed process is swept at the next write
into the same folder. Three rules protect the user's files:

- an existing path is replaced only with ``overwrite=True`` **and** only when interp wrote it
  (:func:`written_by_interp`: a result folder, a run folder, a report, saved activations, anything
  under interp's cache, or anything carrying interp's mark);
- a missing parent folder is never created (``--out /nonexistent/dir/x`` is refused), except
  inside interp's own cache;
- :func:`check_output` probes the location (a real file is created and removed) so a read-only
  folder, ``/proc`` or a parent that is a file is refused before minutes of compute.

Written files and folders follow the process umask (temporary files made by libraries such as
safetensors are created 0600; they are reset to what ``open`` would have given).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from interp.errors import OutputExistsError, OutputLocationError

MARK_ATTR = "user.interp"  # extended attribute set on every file interp writes (where supported)
MARK_FILE = ".interp"  # small JSON file inside every folder interp writes
_TMP = ".interp-tmp-"
_STALE = re.compile(r"^\..+" + re.escape(_TMP) + r"(\d+)-\w+$")
_UMASK_LOCK = threading.Lock()


def cache_root() -> Path:
    """interp's cache: ``$INTERP_CACHE`` or ``~/.cache/interp``."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp")).expanduser()


CACHE_AREAS = ("gguf", "depth", "unsaved")  # the cache's subfolders, each written only by interp


def in_cache(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in one of interp's cache areas (interp owns everything there).

    Only the known subfolders count, so a cache root set to a shared folder (``INTERP_CACHE=~``)
    never makes the user's own files replaceable.
    """
    path, root = Path(path).absolute(), cache_root().absolute()
    return path.is_relative_to(root) and path.relative_to(root).parts[:1] in [
        (area,) for area in CACHE_AREAS
    ]


def written_by_interp(path: str | os.PathLike) -> bool:
    """Whether ``path`` is something interp wrote, so that ``--overwrite`` may replace it."""
    path = Path(path)
    if in_cache(path):
        return True
    if path.is_dir() and not path.is_symlink():
        return (path / MARK_FILE).is_file() or _is_result_folder(path) or _is_run_folder(path)
    # Formats with room for a mark are judged by their content (a file edited in place keeps its
    # extended attributes, so the attribute alone would not do); other files by the attribute.
    if path.suffix == ".html":
        return b'<meta name="generator" content="interp' in _head(path, 4096)
    if path.suffix == ".safetensors":
        return "interp_version" in _safetensors_metadata(path)
    return _has_mark(path)


def check_output(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output location before the work: taken, not interp's, missing or unwritable.

    Raises :class:`~interp.errors.OutputExistsError` or :class:`~interp.errors.OutputLocationError`
    with one line naming the path; returns the path.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputExistsError(
                f"{path} already exists; pass --overwrite (overwrite=True in Python) or choose "
                "another path"
            )
        if not written_by_interp(path):
            raise OutputExistsError(
                f"{path} exists and was not written by interp; --overwrite replaces only interp's "
                "own results, runs and reports: move it away or choose another path"
            )
    parent = path.absolute().parent
    if in_cache(path):
        return path
    if not parent.exists():
        existing = next(p for p in parent.parents if p.exists())
        if not existing.is_dir():
            raise OutputLocationError(f"cannot write {path}: {existing} is a file, not a folder")
        raise OutputLocationError(
            f"cannot write {path}: the folder {path.parent} does not exist (interp does not "
            "create it; make it first)"
        )
    if not parent.is_dir():
        raise OutputLocationError(f"cannot write {path}: {path.parent} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".probe{_TMP}{os.getpid()}-", dir=parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputLocationError(
            f"cannot write {path}: the folder {path.parent} is not writable ({reason})"
        ) from error
    return path


def write_atomically(
    path: str | os.PathLike, write: Callable[[Path], object], *, overwrite: bool = False
) -> Path:
    """Call ``write(tmp_path)`` then move what it wrote to ``path`` in one rename.

    The location is checked first (:func:`check_output`); a failure while writing raises
    :class:`~interp.errors.OutputLocationError` naming ``path`` (not the temporary). A SIGTERM
    during the write removes the temporary before the process ends.
    """
    path = Path(path)
    check_output(path, overwrite=overwrite)
    if in_cache(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path.parent)
    tmp_dir = path.parent / f".{path.name}{_TMP}{os.getpid()}-{secrets.token_hex(4)}"
    with _sigterm_raises():
        try:
            tmp_dir.mkdir()
            tmp = tmp_dir / path.name
            write(tmp)
            _finish(tmp)
            if path.exists() and not path.is_symlink() and (path.is_dir() or tmp.is_dir()):
                os.replace(path, tmp_dir / f"{path.name}.old")  # rename cannot replace a folder
            os.replace(tmp, path)
        except OSError as error:
            if isinstance(error, OutputLocationError):
                raise
            reason = error.strerror or str(error)
            raise OutputLocationError(f"could not write {path}: {reason}") from error
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def write_or_keep(path: Path, save: Callable[[Path], object]) -> Path:
    """``save(path)``; when that fails, save into the cache instead and say where, in one line.

    Used by the command line after the compute, so a full disk or a folder that became read-only
    does not lose minutes of work.
    """
    try:
        save(path)
        return path
    except OSError as error:
        kept = cache_root() / "unsaved" / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.name}"
        try:
            save(kept)
        except OSError:
            raise error from None
        raise OutputLocationError(f"{error}; the result was kept at {kept}") from error


def sweep_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries interp left in ``folder`` from processes that no longer run."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            match = _STALE.match(entry.name)
            if match and not _alive(int(match.group(1))):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that ``finally`` blocks run before the process ends."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn a SIGTERM into an exception for the block, then end the process the usual way.

    Only the main thread can install handlers, and only the default disposition is replaced (a
    program with its own SIGTERM handler keeps it).
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the temporary is gone: die as SIGTERM would
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _umask() -> int:
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _finish(tmp: Path) -> None:
    """Mark what was written as interp's and give it the modes the umask asks for."""
    mask = _umask()
    if tmp.is_dir():
        (tmp / MARK_FILE).write_text(json.dumps({"written_by": "interp"}))
        for root, dirs, files in os.walk(tmp):
            os.chmod(root, 0o777 & ~mask)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    else:
        os.chmod(tmp, 0o666 & ~mask)
    with contextlib.suppress(OSError):
        os.setxattr(tmp, MARK_ATTR, b"1")


def _has_mark(path: Path) -> bool:
    try:
        return os.getxattr(path, MARK_ATTR, follow_symlinks=False) == b"1"
    except (OSError, AttributeError):
        return False


def _head(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _is_result_folder(path: Path) -> bool:
    document = _read_json(path / "result.json")
    return "type" in document and "interp_version" in document


def _is_run_folder(path: Path) -> bool:
    document = _read_json(path / "config.json")
    return {"net", "task"} <= set(document) and (path / "weights.safetensors").is_file()


def _safetensors_metadata(path: Path) -> dict:
    head = _head(path, 8)
    if len(head) < 8:
        return {}
    length = int.from_bytes(head, "little")
    if length > 100_000_000:
        return {}
    try:
        with open(path, "rb") as handle:
            handle.seek(8)
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}
