"""Atomic file writes (a temp file in the target folder, then a rename: nothing half-written) and the cache root."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from pianonotes.errors import PianonotesError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the target's suffix so writers that look at it (soundfile, music21) work.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise PianonotesError(f"{path} exists; pass --overwrite to replace it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise PianonotesError(f"output folder {folder} does not exist; create it first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=folder)
    except OSError as exc:
        raise PianonotesError(f"cannot write to {folder}: {exc.strerror}; choose a writable folder") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp_path, path)
    except OSError as exc:
        raise PianonotesError(f"cannot write {path}: {exc.strerror}; check the folder and free space") from exc
    except PianonotesError:
        raise
    except Exception as exc:
        if disk_full(folder):  # libsndfile and other writers report a full disk in their own words
            raise PianonotesError(f"cannot write {path}: No space left on device; free some space") from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def disk_full(folder: str | os.PathLike, *, below: int = 1 << 20) -> bool:
    """Whether the disk holding ``folder`` has less than ``below`` bytes free (False when unknown)."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < below
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


def check_outputs(outputs: Iterable[str | os.PathLike], *, inputs: Iterable[str | os.PathLike] = (),
                  overwrite: bool = False) -> None:
    """Before any work: refuse an output that is also an input (even with ``overwrite``), the same output
    named twice, and an existing output unless ``overwrite``. Raises PianonotesError naming the path."""
    def key(p: Path) -> Path:
        try:
            return p.resolve()
        except OSError:
            return p.absolute()

    ins = {key(Path(p)): Path(p) for p in inputs}
    seen: dict[Path, Path] = {}
    for out in map(Path, outputs):
        k = key(out)
        if k in ins:
            raise PianonotesError(f"{out} is also an input; choose another output name")
        if k in seen:
            raise PianonotesError(f"{out} is named twice as an output; give each output its own name")
        seen[k] = out
        if out.exists() and not overwrite:
            raise PianonotesError(f"{out} exists; pass --overwrite to replace it")


def cache_dir() -> Path:
    """The one cache root (takes, pianos, rooms, MSMD): ``$PIANONOTES_CACHE`` when set, else platformdirs'
    user cache folder for pianonotes: ``$XDG_CACHE_HOME/pianonotes`` or ``~/.cache/pianonotes`` on Linux,
    ``~/Library/Caches/pianonotes`` on macOS, ``%LOCALAPPDATA%\\pianonotes\\Cache`` on Windows."""
    env = os.environ.get("PIANONOTES_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pianonotes", appauthor=False))
