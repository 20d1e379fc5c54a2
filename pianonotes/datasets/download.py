"""Resumable HTTP downloads with size and checksum verification, and a safe unzip.

* :func:`download` writes ``DEST.part`` and renames it onto ``DEST`` only once the size (and sha256 or
  md5, when given) match; an interrupted transfer resumes from the ``.part`` file with an HTTP Range
  request, within a call (``retries``) or on the next call.
* :func:`safe_extract` checks every entry of a zip before writing anything: no absolute paths, no
  ``..``, no symlinks or other special files, nothing that lands outside the target; then the disk space;
  then unpacks into a staging folder beside the target and moves the result into place.
* :func:`download_msmd` ties both together for the MSMD archive.

Library code: progress goes to a callback, failures are :class:`PianonotesError` with a message that
says what to do; nothing prints.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

from pianonotes.errors import PianonotesError

ProgressFn = Callable[[int, "int | None"], None]  # (bytes done, bytes total or None)
CHUNK = 1 << 20
DISK_MARGIN = 64 << 20  # bytes kept free beyond what a download or an unzip needs


# ------------------------------------------------------------------------------------------ download
def _check_space(folder: Path, needed: int, what: str) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise PianonotesError(f"cannot check free space in {folder}: {exc.strerror}") from exc
    if needed + DISK_MARGIN > free:
        raise PianonotesError(
            f"not enough disk space in {folder} for {what}: need {_fmt(needed + DISK_MARGIN)}, "
            f"{_fmt(free)} free; free some space or choose another folder")


def _fmt(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n} B"  # pragma: no cover


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, *, expected_size: int | None = None,
             sha256: str | None = None, md5: str | None = None, sha512_b64: str | None = None,
             on_progress: ProgressFn | None = None, retries: int = 3, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part`` if present) and verify it.

    Parameters
    ----------
    url : http(s) address.
    dest : final file path; its folder must exist.
    expected_size : bytes; checked against the server's length and the finished file.
    sha256, md5 : hex digests of the whole file (optional).
    sha512_b64 : base64 sha512 digest, as npm publishes it (``dist.integrity`` without ``sha512-``).
    on_progress : called with (bytes on disk, total bytes or None) as data arrives.
    retries : how many times a dropped connection is resumed within this call.
    timeout : seconds without data before the connection counts as dropped.

    Returns the path of the verified file. An existing ``dest`` is verified, not fetched again.
    """
    import http.client
    import urllib.error
    import urllib.request

    dest = Path(dest)
    if not url.lower().startswith(("http://", "https://")):
        raise PianonotesError(f"cannot download {url}: only http and https addresses are supported")
    if not dest.parent.is_dir():
        raise PianonotesError(f"download folder {dest.parent} does not exist; create it first")
    if dest.exists():
        _verify(dest, expected_size, sha256, md5, remove=False, sha512_b64=sha512_b64)
        return dest
    part = dest.with_name(dest.name + ".part")
    total = expected_size
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if total is not None and have > total:
            part.unlink()
            have = 0
        if total is not None and have == total:
            break
        req = urllib.request.Request(url, headers={"User-Agent": "pianonotes", "Accept-Encoding": "identity"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - scheme checked above
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # asked past the end: the part file is complete (or wrong)
                total = total or have
                break
            raise PianonotesError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise PianonotesError(
                    f"cannot reach {url} ({getattr(exc, 'reason', exc)}); check the network and run the same "
                    "command again (a partial download resumes)") from exc
            continue
        with resp:
            status = resp.status
            length = resp.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if status == 206:
                start, full = _content_range(resp.headers.get("Content-Range", ""))
                if start != have:
                    raise PianonotesError(f"download of {url}: the server resumed at byte {start}, not "
                                          f"{have}; delete {part} and try again")
            elif status == 200:
                start, full = 0, length
                have = 0  # the server ignored the Range header: start over
            else:
                raise PianonotesError(f"download of {url} failed: unexpected HTTP status {status}")
            if full is not None:
                if expected_size is not None and full != expected_size:
                    raise PianonotesError(
                        f"download of {url}: the server offers {full} bytes, expected {expected_size}; "
                        "the file changed upstream or the address is wrong")
                total = full
            end = start + length if length is not None else None
            if total is not None:
                _check_space(dest.parent, total - have, f"{dest.name}")
            mode = "ab" if status == 206 else "wb"
            try:
                with open(part, mode) as fh:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        have += len(block)
                        if on_progress:
                            on_progress(have, total)
                        if total is not None and have > total:
                            break
            except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:  # a dropped connection
                attempt += 1
                if attempt > retries:
                    raise PianonotesError(_interrupted(url, part, exc)) from exc
                continue
            except OSError as exc:
                raise PianonotesError(f"cannot write {part}: {exc.strerror or exc}") from exc
        if total is not None and have > total:
            part.unlink()
            raise PianonotesError(f"download of {url} sent more than the expected {total} bytes; deleted it")
        if end is not None and have < end:  # the connection closed early
            attempt += 1
            if attempt > retries:
                raise PianonotesError(_interrupted(url, part, "connection closed early"))
            continue
        if total is None:
            total = have
        break
    _verify(part, expected_size if expected_size is not None else total, sha256, md5, remove=True,
            sha512_b64=sha512_b64)
    os.replace(part, dest)
    return dest


def _interrupted(url: str, part: Path, why) -> str:
    return (f"download of {url} was interrupted ({why}); {_fmt(part.stat().st_size if part.exists() else 0)} "
            "kept: run the same command again to resume")


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    try:
        unit, rng = value.strip().split(" ", 1)
        span, full = rng.split("/", 1)
        start = int(span.split("-", 1)[0])
        if unit != "bytes":
            raise ValueError(unit)
        return start, (int(full) if full != "*" else None)
    except ValueError as exc:
        raise PianonotesError(f"the server sent a malformed Content-Range '{value}'") from exc


def _verify(path: Path, size: int | None, sha256: str | None, md5: str | None, *, remove: bool,
            sha512_b64: str | None = None) -> None:
    import base64

    actual = path.stat().st_size
    problem = None
    if size is not None and actual != size:
        problem = f"is {actual} bytes, expected {size}"
    else:
        for algo, want in (("sha256", sha256), ("md5", md5)):
            if want and _hash_file(path, algo) != want.lower():
                problem = f"has the wrong {algo} checksum"
                break
        if problem is None and sha512_b64:
            digest = base64.b64encode(bytes.fromhex(_hash_file(path, "sha512"))).decode()
            if digest != sha512_b64:
                problem = "has the wrong sha512 checksum"
    if problem:
        if remove:
            path.unlink()
            raise PianonotesError(f"downloaded file {path.name} {problem}; deleted it: try again, and if "
                                  "it fails again the file changed upstream")
        raise PianonotesError(f"{path} {problem}; delete it and download again")


# --------------------------------------------------------------------------------------------- unzip
def _member_target(info: zipfile.ZipInfo) -> PurePosixPath:
    """The relative path an entry may be written to; PianonotesError for anything unsafe."""
    name = info.filename
    ftype = stat.S_IFMT(info.external_attr >> 16)  # Unix file type bits; 0 when the archiver set none
    if ftype == stat.S_IFLNK:
        raise PianonotesError(f"archive entry '{name}' is a symbolic link; refusing to unpack this archive")
    if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise PianonotesError(f"archive entry '{name}' is not a plain file or folder; refusing to unpack it")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or "\x00" in norm:
        raise PianonotesError(f"archive entry '{name}' has an absolute path; refusing to unpack this archive")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PianonotesError(f"archive entry '{name}' points outside the target folder (..); refusing to "
                              "unpack this archive")
    if not parts:
        raise PianonotesError(f"archive entry '{name}' has an empty name; refusing to unpack this archive")
    return PurePosixPath(*parts)


def safe_extract(archive: str | os.PathLike, dest_dir: str | os.PathLike, *,
                 on_progress: ProgressFn | None = None) -> list[Path]:
    """Unpack a zip into ``dest_dir`` after checking every entry (see the module docstring).

    Returns the top-level paths created in ``dest_dir``. Nothing is written when any entry is unsafe,
    when a top-level entry already exists there, or when the disk is too full for the unpacked size.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PianonotesError(
            f"{archive} is not a readable zip archive ({exc}); delete it and download again") from exc
    with zf:
        infos = zf.infolist()
        targets = [(_member_target(i), i) for i in infos]
        tops = sorted({t.parts[0] for t, _ in targets})
        dest_dir.mkdir(parents=True, exist_ok=True)
        for top in tops:
            if (dest_dir / top).exists() or (dest_dir / top).is_symlink():
                raise PianonotesError(f"{dest_dir / top} already exists; remove it or unpack elsewhere")
        total = sum(i.file_size for _, i in targets if not i.is_dir())
        _check_space(dest_dir, total, f"unpacking {archive.name}")
        staging = dest_dir / f".{archive.name}.unpacking"
        if staging.is_symlink() or staging.is_file():  # a leftover link is removed, never followed
            staging.unlink()
        elif staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        root = staging.resolve()
        done = 0
        try:
            for rel, info in targets:
                out = staging.joinpath(*rel.parts)
                resolved = out.resolve()
                if resolved != root and root not in resolved.parents:  # belt and braces
                    raise PianonotesError(
                        f"archive entry '{info.filename}' resolves outside the target folder")
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "xb") as dst:
                    while True:
                        block = src.read(CHUNK)
                        if not block:
                            break
                        done += len(block)
                        if done > total:  # more data than the directory declared
                            raise PianonotesError(
                                f"{archive.name} holds more data than it declares; refusing it")
                        dst.write(block)
                        if on_progress:
                            on_progress(done, total)
            created = []
            for top in tops:
                os.replace(staging / top, dest_dir / top)
                created.append(dest_dir / top)
        except FileExistsError as exc:
            raise PianonotesError(
                f"{archive.name} holds the same entry twice ({exc.filename}); refusing it") from exc
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise PianonotesError(f"{archive} is damaged ({exc}); delete it and download again") from exc
        except OSError as exc:
            raise PianonotesError(f"cannot unpack {archive.name} into {dest_dir}: {exc.strerror}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return created


# ----------------------------------------------------------------------------------------------- MSMD
def download_msmd(dest_dir: str | os.PathLike, *, url: str | None = None, expected_size: int | None = None,
                  sha256: str | None = None, md5: str | None = None,
                  on_progress: Callable[[str, int, "int | None"], None] | None = None,
                  keep_archive: bool = False, retries: int = 3) -> Path:
    """Download and unpack the MSMD archive into ``dest_dir``; returns the dataset folder.

    ``on_progress(stage, done, total)`` with stage 'download' or 'unpack'. An already unpacked dataset
    is returned as is; a partial download resumes. The archive is deleted after unpacking unless
    ``keep_archive``.
    """
    from pianonotes.datasets.msmd import ARCHIVE_APPROX_BYTES, ARCHIVE_NAME, ARCHIVE_URL, FOLDER_NAME

    dest_dir = Path(dest_dir)
    target = dest_dir / FOLDER_NAME
    if target.is_dir():
        return target
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PianonotesError(f"cannot create {dest_dir}: {exc.strerror}") from exc
    archive = dest_dir / ARCHIVE_NAME
    part = archive.with_name(archive.name + ".part")
    need = (expected_size or ARCHIVE_APPROX_BYTES) - (part.stat().st_size if part.exists() else 0)
    if not archive.exists():
        _check_space(dest_dir, need, f"the MSMD archive ({_fmt(expected_size or ARCHIVE_APPROX_BYTES)})")
    dl_progress = (lambda d, t: on_progress("download", d, t)) if on_progress else None
    download(url or ARCHIVE_URL, archive, expected_size=expected_size, sha256=sha256, md5=md5,
             on_progress=dl_progress, retries=retries)
    un_progress = (lambda d, t: on_progress("unpack", d, t)) if on_progress else None
    created = safe_extract(archive, dest_dir, on_progress=un_progress)
    if not target.is_dir():
        holds = ", ".join(p.name for p in created) or "nothing"
        raise PianonotesError(f"{archive.name} did not contain {FOLDER_NAME}/ (it holds {holds}); "
                              "check the download address")
    if not keep_archive:
        archive.unlink()
    return target
