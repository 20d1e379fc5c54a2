"""Resumable download and safe unzip, against an HTTP server on 127.0.0.1 only (never the network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import stat
import threading
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest

from pianonotes.datasets import download as dl
from pianonotes.errors import PianonotesError

PAYLOAD = bytes((i * 7 + i // 251) % 256 for i in range(3 * (1 << 20) + 12345))  # > CHUNK, odd size


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if srv.drops > 0:  # send part of the body, then drop the connection
            srv.drops -= 1
            self.wfile.write(chunk[: len(chunk) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


Server = namedtuple("Server", "url httpd")


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"/data.bin": PAYLOAD}
    httpd.requests = []
    httpd.drops = 0
    httpd.ranges = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------------------------------ download
def test_download_verifies_and_reports_progress(server, tmp_path):
    seen = []
    out = dl.download(f"{server.url}/data.bin", tmp_path / "data.bin", expected_size=len(PAYLOAD),
                      sha256=_sha(PAYLOAD), md5=hashlib.md5(PAYLOAD).hexdigest(),
                      on_progress=lambda d, t: seen.append((d, t)))
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and all(a[0] < b[0] for a, b in zip(seen, seen[1:]))
    n = len(server.httpd.requests)
    assert dl.download(f"{server.url}/data.bin", out, expected_size=len(PAYLOAD)) == out  # present: no fetch
    assert len(server.httpd.requests) == n


def test_interrupted_transfer_resumes_within_a_call(server, tmp_path):
    server.httpd.drops = 1
    out = dl.download(f"{server.url}/data.bin", tmp_path / "d.bin", expected_size=len(PAYLOAD),
                      sha256=_sha(PAYLOAD))
    assert out.read_bytes() == PAYLOAD
    ranges = [r for _, r in server.httpd.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(PAYLOAD) // 3}-"


def test_interrupted_transfer_resumes_on_the_next_call(server, tmp_path):
    server.httpd.drops = 1
    with pytest.raises(PianonotesError, match="interrupted.*again to resume"):
        dl.download(f"{server.url}/data.bin", tmp_path / "d.bin", retries=0)
    part = tmp_path / "d.bin.part"
    assert part.stat().st_size == len(PAYLOAD) // 3 and not (tmp_path / "d.bin").exists()
    out = dl.download(f"{server.url}/data.bin", tmp_path / "d.bin", sha256=_sha(PAYLOAD), retries=0)
    assert out.read_bytes() == PAYLOAD and not part.exists()
    assert server.httpd.requests[-1][1] == f"bytes={len(PAYLOAD) // 3}-"


def test_server_without_range_support_restarts(server, tmp_path):
    server.httpd.ranges = False
    (tmp_path / "d.bin.part").write_bytes(b"garbage that is not the file")
    out = dl.download(f"{server.url}/data.bin", tmp_path / "d.bin", sha256=_sha(PAYLOAD))
    assert out.read_bytes() == PAYLOAD


def test_complete_part_file_is_verified(server, tmp_path):
    (tmp_path / "d.bin.part").write_bytes(PAYLOAD)
    out = dl.download(f"{server.url}/data.bin", tmp_path / "d.bin", sha256=_sha(PAYLOAD))  # server says 416
    assert out.read_bytes() == PAYLOAD


def test_size_mismatch(server, tmp_path):
    with pytest.raises(PianonotesError, match=f"offers {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        dl.download(f"{server.url}/data.bin", tmp_path / "d.bin", expected_size=len(PAYLOAD) + 1)
    assert not (tmp_path / "d.bin").exists()


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    with pytest.raises(PianonotesError, match="wrong sha256"):
        dl.download(f"{server.url}/data.bin", tmp_path / "d.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_http_errors_and_bad_urls(server, tmp_path):
    with pytest.raises(PianonotesError, match="HTTP 404"):
        dl.download(f"{server.url}/missing.zip", tmp_path / "m.zip")
    with pytest.raises(PianonotesError, match="only http and https"):
        dl.download("file:///etc/passwd", tmp_path / "p")
    with pytest.raises(PianonotesError, match="does not exist"):
        dl.download(f"{server.url}/data.bin", tmp_path / "no" / "d.bin")


def test_not_enough_disk_space(server, tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 ** 6, 0, 10 ** 6))
    with pytest.raises(PianonotesError, match="not enough disk space"):
        dl.download(f"{server.url}/data.bin", tmp_path / "d.bin")
    assert not (tmp_path / "d.bin").exists()


# --------------------------------------------------------------------------------------------- unzip
def _zip(entries) -> bytes:
    """entries: (name, data) or (ZipInfo, data)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_safe_extract(tmp_path):
    arc = tmp_path / "a.zip"
    arc.write_bytes(_zip([("top/", b""), ("top/x/y.npy", b"123"), ("top/z.txt", b"hello"),
                          ("other.txt", b"o")]))
    dest = tmp_path / "out"
    seen = []
    created = dl.safe_extract(arc, dest, on_progress=lambda d, t: seen.append((d, t)))
    assert sorted(p.name for p in created) == ["other.txt", "top"]
    assert (dest / "top" / "x" / "y.npy").read_bytes() == b"123"
    assert _tree(dest) == {"top", "top/x", "top/x/y.npy", "top/z.txt", "other.txt"}
    assert seen[-1] == (9, 9)
    with pytest.raises(PianonotesError, match="already exists"):
        dl.safe_extract(arc, dest)


@pytest.mark.parametrize("entry, why", [
    (("../evil.txt", b"x"), r"outside the target folder \(\.\.\)"),
    (("ok/../../evil.txt", b"x"), r"\.\."),
    (("/tmp/evil-abs.txt", b"x"), "absolute path"),
    (("C:\\evil.txt", b"x"), "absolute path"),
    (("..\\evil.txt", b"x"), r"\.\."),
    ((_symlink("top/link"), b"../../../etc/passwd"), "symbolic link"),
])
def test_malicious_archives_are_refused(tmp_path, entry, why):
    arc = tmp_path / "bad.zip"
    arc.write_bytes(_zip([("top/fine.txt", b"fine"), entry, ("top/after.txt", b"after")]))
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    before = _tree(tmp_path)
    with pytest.raises(PianonotesError, match=why):
        dl.safe_extract(arc, dest)
    assert _tree(tmp_path) == before  # nothing written inside or outside the target
    assert not Path("/tmp/evil-abs.txt").exists()


def test_a_leftover_staging_link_is_removed_not_followed(tmp_path):
    """A symlinked staging folder (left behind, or planted) must not be emptied or written through."""
    arc = tmp_path / "a.zip"
    arc.write_bytes(_zip([("top/z.txt", b"hello")]))
    dest = tmp_path / "out"
    dest.mkdir()
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (dest / ".a.zip.unpacking").symlink_to(elsewhere, target_is_directory=True)
    created = dl.safe_extract(arc, dest)
    assert [p.name for p in created] == ["top"]
    assert (dest / "top" / "z.txt").read_bytes() == b"hello"
    assert _tree(elsewhere) == {"keep.txt"} and (elsewhere / "keep.txt").read_text() == "mine"
    assert not (dest / ".a.zip.unpacking").exists()


def test_unzip_checks_disk_space_first(tmp_path, monkeypatch):
    arc = tmp_path / "a.zip"
    arc.write_bytes(_zip([("top/big.bin", b"\0" * 100_000)]))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 ** 6, 0, 1000))
    with pytest.raises(PianonotesError, match="not enough disk space"):
        dl.safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out" / "top").exists()


def test_not_a_zip(tmp_path):
    arc = tmp_path / "a.zip"
    arc.write_bytes(b"this is not a zip")
    with pytest.raises(PianonotesError, match="not a readable zip"):
        dl.safe_extract(arc, tmp_path / "out")


# ---------------------------------------------------------------------------------------------- MSMD
def test_download_msmd(server, tmp_path):
    from pianonotes.datasets.msmd import FOLDER_NAME

    body = _zip([(f"{FOLDER_NAME}/", b""), (f"{FOLDER_NAME}/P__o__f/meta.yml", b"a: 1\n")])
    server.httpd.files["/records/1/files/msmd.zip"] = body
    server.httpd.drops = 1
    stages = set()
    dest = tmp_path / "cache"
    root = dl.download_msmd(dest, url=f"{server.url}/records/1/files/msmd.zip?download=1",
                            expected_size=len(body), sha256=_sha(body),
                            on_progress=lambda stage, d, t: stages.add(stage))
    assert root == dest / FOLDER_NAME and (root / "P__o__f" / "meta.yml").read_text() == "a: 1\n"
    assert stages == {"download", "unpack"}
    assert sorted(p.name for p in dest.iterdir()) == [FOLDER_NAME]  # archive removed
    n = len(server.httpd.requests)
    assert dl.download_msmd(dest, url=f"{server.url}/nothing") == root and len(server.httpd.requests) == n


def test_download_msmd_wrong_archive(server, tmp_path):
    body = _zip([("something_else/file.txt", b"x")])
    server.httpd.files["/x.zip"] = body
    with pytest.raises(PianonotesError, match="did not contain"):
        dl.download_msmd(tmp_path, url=f"{server.url}/x.zip", expected_size=len(body))
