"""`pianonotes serve`: the real server (uvicorn) on a loopback port, driven over HTTP and WebSockets.

The model is a small random AudioNet with saturated heads (as in test_live/test_transcribe): its notes are
arbitrary but deterministic and far from the thresholds, so every check compares the server with
`transcribe` (Transcriber.transcribe_file) on the same audio: same engine, same notes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pianonotes import constants

from conftest import FLUIDR3, assert_one_line_error, random_checkpoint, sine

websockets = pytest.importorskip("websockets")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from websockets.sync.client import connect  # noqa: E402

SR = constants.SAMPLE_RATE
BLOCK = int(0.05 * SR)  # the page sends ~20 ms; the issue asks for 50 ms blocks
UPLOAD_BYTES = 3_000_000
UPLOAD_SECONDS = 60.0
RESUME_SECONDS = 3.0  # how long a dropped take waits for its page (20 s by default)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("serve-cache")
    mp.setenv("PIANONOTES_CACHE", str(folder))
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("model") / "rand",
                             {"channels": [8, 8], "hidden": 64, "dilations": [1, 2]}, record_lookahead=True)


def _render(path: Path, keys, seconds: float) -> Path:
    if shutil.which("fluidsynth") and Path(FLUIDR3).exists():
        from pianonotes.datasets.synth.render import render

        audio = render(keys, [], seconds, FLUIDR3, 0, SR)
    else:  # sines at the keys' pitches: the random model does not care that it is not a piano
        audio = np.zeros(int(seconds * SR), np.float32)
        for on, off, pitch, vel in keys:
            tone = sine(440.0 * 2 ** ((pitch - 69) / 12), off - on, amp=0.2 * vel / 127)
            a = int(on * SR)
            audio[a: a + len(tone)] += tone
    sf.write(path, audio.astype(np.float32), SR, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("clips")
    a = _render(work / "chord.wav", [(0.3, 1.3, 60, 90), (0.3, 1.3, 64, 90), (0.3, 1.3, 67, 90),
                                     (1.8, 2.6, 72, 80), (2.0, 3.0, 48, 70), (3.2, 3.8, 55, 100)], 4.0)
    b = _render(work / "bass.wav", [(0.2, 1.0, 36, 100), (1.2, 2.0, 43, 90), (2.2, 3.4, 84, 80)], 3.6)
    return a, b


@pytest.fixture(scope="module")
def model(ckpt):
    from pianonotes.serve import core

    return core.load_model(ckpt)


@pytest.fixture(scope="module")
def expected(model, clips):
    """What `transcribe` gives for each clip (the same Transcriber the CLI uses)."""
    from pianonotes.transcribe import Transcriber

    tr = Transcriber(model.path, device="cpu")
    out = {p: tr.transcribe_file(p).notes for p in clips}
    for notes in out.values():
        assert 3 < len(notes) < 2000
    return out


@pytest.fixture(scope="module")
def server(cache, model):
    from pianonotes.serve import core
    from pianonotes.serve.app import create_app
    from pianonotes.serve.server import ServerThread

    app = create_app(model, limits=core.Limits(max_upload_bytes=UPLOAD_BYTES, max_upload_seconds=UPLOAD_SECONDS,
                                               resume_seconds=RESUME_SECONDS))
    with ServerThread(app) as srv:
        yield srv


# ------------------------------------------------------------------------------------------- helpers
def _http(srv, path, *, data=None, headers=None, method=None, timeout=120):
    req = urllib.request.Request(srv.url + path, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _json(srv, path, **kw):
    status, body, _ = _http(srv, path, **kw)
    return status, json.loads(body)


def _ws(srv, *, origin=None):
    return connect(f"ws://{srv.host}:{srv.port}/ws/record", origin=origin or f"http://{srv.host}:{srv.port}",
                   open_timeout=30, max_size=None)


def _blocks(path: Path, block=BLOCK):
    audio, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return [audio[i: i + block] for i in range(0, len(audio), block)]


def _stream(srv, path: Path, *, fmt="f32le", pace: float = 0.0):
    """Record ``path`` over the socket in 50 ms blocks; returns (updates, done message)."""
    updates = []
    with _ws(srv) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": SR, "format": fmt, "title": path.stem}))
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready" and ready["sample_rate"] == SR, ready
        for b in _blocks(path):
            ws.send((np.clip(b, -1, 32767 / 32768) * 32768).astype("<i2").tobytes() if fmt == "s16le"
                    else b.astype("<f4").tobytes())
            if pace:
                time.sleep(pace)
        ws.send(json.dumps({"type": "stop"}))
        while True:
            msg = json.loads(ws.recv(timeout=120))
            if msg["type"] == "done":
                return updates, msg
            assert msg["type"] == "update", msg
            updates.append(msg)


def _same(got, want):
    """Notes from the JSON output ([onset, offset, pitch, velocity, conf]) against Note objects."""
    assert [n[2] for n in got] == [n.pitch for n in want]
    np.testing.assert_allclose([n[0] for n in got], [n.onset for n in want], atol=1e-3)
    np.testing.assert_allclose([n[1] for n in got], [n.offset for n in want], atol=1e-3)
    assert [n[3] for n in got] == [n.velocity for n in want]


def _offline(model, audio):
    """The offline reference: one Engine, the whole audio pushed at once, then finish."""
    eng = model.engine()
    return sorted(eng.push(audio).notes + eng.finish().notes)


def _wait_status(srv, take, statuses, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, info = _json(srv, f"/api/takes/{take}")
        if status == 200 and info["status"] in statuses:
            return info
        time.sleep(0.1)
    raise AssertionError(f"take {take} never reached {statuses}: {info}")


# --------------------------------------------------------------------------------------------- tests
def test_recording_over_the_socket_equals_transcribe(server, clips, expected):
    updates, done = _stream(server, clips[0], pace=0.01)
    want = expected[clips[0]]
    take = done["take"]
    assert take["status"] == "complete" and take["kind"] == "browser" and not take["interrupted"]
    assert take["notes"] == len(want)
    _same(take["notes_list"], want)
    assert set(take["downloads"]) == {"mid", "musicxml", "pdf", "svg", "csv", "json"}, take["errors"]
    assert take["pages"] >= 1
    # the live view: every note was announced as it started (or arrived finished), keys and level sent
    started = {(s[1], round(s[0], 2)) for u in updates for s in u["starts"]}
    finished = {(n[2], round(n[0], 2)) for u in updates for n in u["notes"]}
    assert {(n.pitch, round(n.onset, 2)) for n in want} <= started | finished
    assert all(len(u["keys"]) == 88 for u in updates)
    assert max(u["level_db"] for u in updates) > -45
    assert updates[-1]["elapsed"] == pytest.approx(4.0, abs=0.051)
    # the downloads are what `transcribe` writes
    from pianonotes.notes import read_midi

    status, body, headers = _http(server, f"/api/takes/{take['id']}/download/mid")
    assert status == 200 and headers["content-type"] == "audio/midi"
    assert 'filename="chord.mid"' in headers["content-disposition"]
    mid = server_tmp = Path(os.environ["PIANONOTES_CACHE"]) / "check.mid"
    mid.write_bytes(body)
    assert sorted(n.pitch for n in read_midi(server_tmp)) == sorted(n.pitch for n in want)
    status, body, headers = _http(server, f"/api/takes/{take['id']}/score/1")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml") and b"<svg" in body[:500]
    status, body, _ = _http(server, f"/api/takes/{take['id']}/download/pdf")
    assert status == 200 and body[:5] == b"%PDF-"
    # the take is journaled like `listen`: audio bit-exact, notes in events.jsonl
    from pianonotes.live.journal import read_journal_audio
    from pianonotes.live.recovery import journal_notes

    folder = Path(os.environ["PIANONOTES_CACHE"]) / "takes" / take["id"]
    np.testing.assert_array_equal(read_journal_audio(folder), sf.read(clips[0], dtype="float32")[0])
    assert journal_notes(folder) == want
    assert take["id"] in [t["id"] for t in _json(server, "/api/takes")[1]["takes"]]


def test_a_full_journal_disk_is_reported_while_the_take_goes_on(server, clips, expected, monkeypatch):
    """The journal's disk fills after the first block (ENOSPC at the boundary): the socket's updates carry
    the warning during the take, and the take still ends with every note."""
    import errno
    import os

    from pianonotes.live.journal import Journal

    real_append = Journal._append
    calls = {"n": 0}

    def append(self, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_append(self, data)

    monkeypatch.setattr(Journal, "_append", append)
    updates, done = _stream(server, clips[0])
    warned = [u["warning"] for u in updates if u.get("warning")]
    assert warned and "No space left" in warned[0], [u.get("warning") for u in updates][:5]
    assert done["take"]["notes"] == len(expected[clips[0]])


def test_int16_blocks_equal_transcribe_of_the_16_bit_file(server, clips, model, tmp_path):
    audio, _ = sf.read(clips[1], dtype="float32")
    pcm16 = tmp_path / "bass16.wav"
    sf.write(pcm16, audio, SR, subtype="PCM_16")
    from pianonotes.transcribe import Transcriber

    want = Transcriber(model.path, device="cpu").transcribe_file(pcm16).notes
    _, done = _stream(server, clips[1], fmt="s16le")
    _same(done["take"]["notes_list"], want)


def test_two_sockets_at_once_are_independent(server, clips, expected):
    results = {}

    def run(path):
        results[path] = _stream(server, path, pace=0.01)[1]

    threads = [threading.Thread(target=run, args=(p,)) for p in clips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert set(results) == set(clips)
    assert results[clips[0]]["take"]["id"] != results[clips[1]]["take"]["id"]
    for p in clips:
        _same(results[p]["take"]["notes_list"], expected[p])
        # both engraved, though built from two server threads (verovio only engraves in its first thread)
        assert {"svg", "pdf"} <= set(results[p]["take"]["downloads"]), results[p]["take"]["errors"]


def test_takes_started_in_the_same_second_get_their_own_folders(server, model):
    """Four sockets opened at once (four tabs): four takes, four journals."""
    barrier = threading.Barrier(4)
    ids, errors = [], []

    def one():
        with _ws(server) as ws:
            barrier.wait(30)
            ws.send(json.dumps({"type": "start", "sample_rate": 48000}))
            msg = json.loads(ws.recv(timeout=60))
            (ids if msg["type"] == "ready" else errors).append(msg.get("take") or msg)
            ws.send(json.dumps({"type": "stop"}))
            while json.loads(ws.recv(timeout=120))["type"] != "done":
                pass

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors and len(set(ids)) == 4, (ids, errors)
    # the race itself, many at once: live.Journal names folders by the second
    from pianonotes.serve import core

    barrier, folders, failures = threading.Barrier(16), [], []

    def make():
        barrier.wait(30)
        try:
            j = core.new_journal(SR, {"kind": "test"})
            folders.append(j.folder)
            j.close(status="finished")  # not "complete": the cache prunes those beyond the last 10
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            failures.append(str(exc))

    threads = [threading.Thread(target=make) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures and len(set(folders)) == 16, failures


def test_dropped_socket_keeps_the_take_then_recover(server, clips, model):
    from pianonotes.live.journal import read_journal_audio

    blocks = _blocks(clips[0])[:50]  # 2.5 s, then the connection dies without a stop
    try:
        with _ws(server) as ws:
            ws.send(json.dumps({"type": "start", "sample_rate": SR, "format": "f32le", "title": "dropped"}))
            take = json.loads(ws.recv(timeout=30))["take"]
            for b in blocks:
                ws.send(b.astype("<f4").tobytes())
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the server has them all (updates report the audio seen)
                msg = json.loads(ws.recv(timeout=30))
                if msg["type"] == "update" and msg["elapsed"] >= 2.5 - 1e-6:
                    break
            ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: a tab killed, a network gone
            ws.socket.close()
    except (OSError, websockets.exceptions.WebSocketException):
        pass
    info = _wait_status(server, take, ("complete",))
    assert info["interrupted"] and info["seconds"] == pytest.approx(2.5)
    folder = Path(os.environ["PIANONOTES_CACHE"]) / "takes" / take
    audio = read_journal_audio(folder)
    np.testing.assert_array_equal(audio, np.concatenate(blocks))
    want = _offline(model, audio)
    _same(info["notes_list"], want)
    # and the journal rebuilds it (re-transcribing its audio, as `pianonotes recover` does)
    status, rec = _json(server, f"/api/takes/{take}/recover", data=b"", method="POST")
    assert status == 200 and rec["status"] == "complete" and rec["notes"] == len(want)
    status, info = _json(server, f"/api/takes/{take}")
    _same(info["notes_list"], want)


def _until_received(ws, samples):
    """Read updates until the server reports ``samples`` client samples received; the last update."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=60))
        if msg["type"] == "update" and msg["received"] >= samples:
            return msg
    raise AssertionError(f"the server never reported {samples} samples")


def test_the_page_reconnects_and_the_take_goes_on(server, clips, expected):
    """A take over three sockets: the second takes over from a first the server still thinks alive,
    drops without a word, the third resumes from the samples the server has: the notes of the whole
    clip, as one uninterrupted take."""
    from websockets.exceptions import ConnectionClosed

    with contextlib.ExitStack() as stack:
        blocks = _blocks(clips[0])
        ws1 = stack.enter_context(_ws(server))
        ws1.send(json.dumps({"type": "start", "sample_rate": SR}))
        ready = json.loads(ws1.recv(timeout=30))
        take, key = ready["take"], ready["key"]
        for b in blocks[:20]:
            ws1.send(b.astype("<f4").tobytes())
        _until_received(ws1, 20 * BLOCK)
        with _ws(server) as bad:  # the take's id is not enough
            bad.send(json.dumps({"type": "resume", "take": take, "key": "guess"}))
            msg = json.loads(bad.recv(timeout=30))
            assert msg["type"] == "error" and "resume key" in msg["message"]
        ws2 = stack.enter_context(_ws(server))
        ws2.send(json.dumps({"type": "resume", "take": take, "key": key}))
        ready2 = json.loads(ws2.recv(timeout=30))
        assert ready2["type"] == "ready" and ready2["resumed"] and ready2["take"] == take
        assert ready2["received"] == 20 * BLOCK
        with pytest.raises(ConnectionClosed) as closed:  # the first socket is closed by the takeover
            while True:
                ws1.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        for b in blocks[20:40]:
            ws2.send(b.astype("<f4").tobytes())
        _until_received(ws2, 40 * BLOCK)
        ws2.socket.shutdown(socket.SHUT_RDWR)  # gone without a close frame
        ws2.socket.close()
        time.sleep(0.5)
        with _ws(server) as ws3:
            ws3.send(json.dumps({"type": "resume", "take": take, "key": key}))
            ready3 = json.loads(ws3.recv(timeout=30))
            assert ready3["type"] == "ready" and ready3["received"] == 40 * BLOCK
            for b in blocks[ready3["received"] // BLOCK:]:
                ws3.send(b.astype("<f4").tobytes())
            ws3.send(json.dumps({"type": "stop"}))
            while (msg := json.loads(ws3.recv(timeout=120)))["type"] != "done":
                pass
    info = msg["take"]
    assert info["id"] == take and not info["interrupted"]
    _same(info["notes_list"], expected[clips[0]])
    from pianonotes.live.journal import read_journal_audio

    audio = read_journal_audio(Path(os.environ["PIANONOTES_CACHE"]) / "takes" / take)
    np.testing.assert_array_equal(audio, sf.read(clips[0], dtype="float32")[0])


def test_a_take_interrupted_by_a_crash_is_listed_and_recovered(server, clips, model):
    """A journal left in 'recording' (the server was killed mid-take) shows as interrupted; recover works."""
    from pianonotes.live.journal import Journal

    audio, _ = sf.read(clips[1], dtype="float32")
    journal = Journal(None, SR, {"model": str(model.path), "kind": "browser", "title": "crashed"})
    journal.write_audio(audio)
    journal.maybe_flush(force=True)  # never closed: what SIGKILL leaves
    take = journal.folder.name
    listed = {t["id"]: t for t in _json(server, "/api/takes")[1]["takes"]}
    assert listed[take]["status"] == "interrupted" and listed[take]["recoverable"]
    status, rec = _json(server, f"/api/takes/{take}/recover", data=b"", method="POST")
    assert status == 200, rec
    _same(_json(server, f"/api/takes/{take}")[1]["notes_list"], _offline(model, audio))


def test_upload_equals_transcribe(server, clips, expected):
    data = clips[1].read_bytes()
    status, info = _json(server, "/api/upload", data=data, headers={"X-Filename": "my%20bass.wav"}, method="POST")
    assert status == 200, info
    assert info["kind"] == "upload" and info["title"] == "my bass"
    status, full = _json(server, f"/api/takes/{info['id']}")
    _same(full["notes_list"], expected[clips[1]])


@pytest.mark.parametrize("what", ["not-audio", "empty", "truncated", "too-long", "too-large"])
def test_bad_upload_is_a_clear_message_and_the_server_keeps_running(server, clips, tmp_path, what):
    if what == "not-audio":
        data, needle = b"%PDF-1.4 this is not sound" * 100, "cannot decode audio"
    elif what == "empty":
        data, needle = b"", "empty"
    elif what == "truncated":
        data, needle = clips[0].read_bytes()[:30], "cannot decode audio"
    elif what == "too-long":
        long = tmp_path / "long.wav"
        sf.write(long, np.zeros(int((UPLOAD_SECONDS + 5) * 8000), np.int16), 8000, subtype="PCM_16")
        data, needle = long.read_bytes(), "minutes long; the limit is 1 minutes"
    else:
        data, needle = None, "the upload limit is 3 MB"
    before = len(_json(server, "/api/takes")[1]["takes"])
    if data is None:  # refused from its Content-Length, before a byte of the body is read
        import http.client

        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.putrequest("POST", "/api/upload")
        conn.putheader("Content-Length", str(UPLOAD_BYTES + 1))
        conn.putheader("X-Filename", "song%20%2F..%2Fx.wav")
        conn.endheaders()
        resp = conn.getresponse()
        status, body = resp.status, json.loads(resp.read())
        conn.close()
    else:
        status, body = _json(server, "/api/upload", data=data, headers={"X-Filename": "song%20%2F..%2Fx.wav"},
                             method="POST")
    assert status in (400, 413), body
    msg = body["error"]
    assert needle in msg and "x.wav" in msg, msg
    assert "pianonotes-upload" not in msg and "/tmp" not in msg, msg  # no server path leaks
    assert _json(server, "/api/info")[0] == 200
    assert len(_json(server, "/api/takes")[1]["takes"]) == before  # no half take left behind


def test_websocket_origin_and_host_checks(server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as exc:
        _ws(server, origin="http://evil.example")
    assert exc.value.response.status_code == 403
    status, body = _json(server, "/api/upload", data=b"x", method="POST",
                         headers={"Origin": "http://evil.example", "X-Filename": "a.wav"})
    assert status == 403 and "cross-origin" in body["error"]
    status, body = _json(server, "/api/info", headers={"Host": "evil.example:8765"})  # DNS rebinding
    assert status == 403 and "localhost" in body["error"]
    assert _json(server, "/api/info", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_bad_start_and_bad_blocks_are_clear_messages(server):
    with _ws(server) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 1000}))
        msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "error" and "8000-192000 Hz" in msg["message"]
    with _ws(server) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": SR}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(b"\0\0\0")  # not whole float32 samples
        msgs = [json.loads(ws.recv(timeout=60)) for _ in range(3)]
        errors = [m for m in msgs if m["type"] == "error"]
        assert errors and "whole number" in errors[0]["message"], msgs


def test_static_page_and_no_client_path_reaches_the_file_system(server):
    status, body, headers = _http(server, "/")
    assert status == 200 and b'id="keyboard"' in body and headers["content-type"].startswith("text/html")
    assert b"http://" not in body and b"https://" not in body  # nothing from a CDN
    for name in ("app.js", "worklet.js", "style.css"):
        status, body, _ = _http(server, f"/static/{name}")
        assert status == 200 and body and b"https://" not in body
    for path in ("/static/..%2Fcore.py", "/static/index.html", "/static/%2e%2e/app.py",
                 "/api/takes/..%2F..%2Fetc/download/mid", "/api/takes/20200101-000000/download/mid",
                 "/api/takes/x/score/1"):
        status, _, _ = _http(server, path)
        assert status == 404, path
    status, body = _json(server, "/api/takes/20200101-000000/download/exe")
    assert status in (400, 404) and "unknown format" in body["error"]


def test_token_required_when_not_on_loopback(model, cache):
    from pianonotes.serve.app import create_app
    from pianonotes.serve.server import ServerThread

    app = create_app(model, bind_host="0.0.0.0", token="s3cret")
    with ServerThread(app) as srv:  # served on loopback here; the app behaves as bound to the network
        assert _http(srv, "/")[0] == 200  # the page holds nothing private
        assert _json(srv, "/api/takes")[0] == 403
        assert _json(srv, "/api/takes?token=wrong")[0] == 403
        assert _json(srv, "/api/takes?token=s3cret")[0] == 200
        assert _json(srv, "/api/takes", headers={"X-Pianonotes-Token": "s3cret"})[0] == 200
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus):
            _ws(srv)


def test_cli_port_in_use_is_one_line(ckpt, tmp_path):
    from conftest import run_cli

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        proc = run_cli("serve", "--port", busy.getsockname()[1], "--no-browser", "--model", ckpt,
                       env={"PIANONOTES_CACHE": str(tmp_path)}, timeout=120)
    finally:
        busy.close()
    assert_one_line_error(proc, "in use", "--port")


def test_cli_serves_with_a_warning_and_a_token_off_loopback(ckpt, tmp_path):
    """`serve --host 0.0.0.0`: a warning, a token URL; the page answers; SIGINT stops it cleanly."""
    exe = Path(sys.executable).with_name("pianonotes")
    env = dict(os.environ, PIANONOTES_CACHE=str(tmp_path), COLUMNS="200", NO_COLOR="1")
    proc = subprocess.Popen([str(exe), "serve", "--host", "0.0.0.0", "--port", "0", "--no-browser",
                             "--model", str(ckpt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        line = proc.stdout.readline()
        assert "?token=" in line, line + proc.stderr.read()
        url = line.split()[2]
        port = int(url.split(":")[2].split("/")[0])
        token = url.split("token=")[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info?token={token}", timeout=30) as r:
            assert json.loads(r.read())["sample_rate"] == SR
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "warning" in err and "token" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_https_and_wss_with_a_certificate(model, cache, certificate, clips, expected):
    """--certfile/--keyfile: the page, the API and the recording socket over TLS (what a tablet needs
    for its microphone)."""
    import ssl

    from pianonotes.serve.app import create_app
    from pianonotes.serve.server import ServerThread

    ctx = ssl.create_default_context(cafile=str(certificate[0]))
    ctx.check_hostname = False
    with ServerThread(create_app(model), certfile=str(certificate[0]), keyfile=str(certificate[1])) as srv:
        assert srv.url.startswith("https://")
        with urllib.request.urlopen(srv.url + "/api/info", context=ctx, timeout=30) as r:
            assert json.loads(r.read())["sample_rate"] == SR
        import http.client

        with pytest.raises((OSError, http.client.HTTPException)):  # plain http on the TLS port: no answer
            urllib.request.urlopen(f"http://{srv.host}:{srv.port}/api/info", timeout=10)
        with connect(f"wss://{srv.host}:{srv.port}/ws/record", origin=f"https://{srv.host}:{srv.port}",
                     ssl=ctx, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "start", "sample_rate": SR}))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            for b in _blocks(clips[1]):
                ws.send(b.astype("<f4").tobytes())
            ws.send(json.dumps({"type": "stop"}))
            while (msg := json.loads(ws.recv(timeout=120)))["type"] != "done":
                pass
        _same(msg["take"]["notes_list"], expected[clips[1]])


def test_cli_bad_certificate_is_one_line(ckpt, tmp_path):
    from conftest import run_cli

    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    proc = run_cli("serve", "--port", "0", "--no-browser", "--model", ckpt, "--certfile", bad,
                   env={"PIANONOTES_CACHE": str(tmp_path)}, timeout=120)
    assert_one_line_error(proc, "cannot use the certificate", "PEM")
    proc = run_cli("serve", "--port", "0", "--no-browser", "--keyfile", bad, env={"PIANONOTES_CACHE": str(tmp_path)})
    assert_one_line_error(proc, "--keyfile needs --certfile")


def test_cli_opens_the_page_in_the_browser(ckpt, tmp_path):
    """Without --no-browser, `serve` opens its URL once it is listening (webbrowser honours $BROWSER)."""
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" > {opened}\n")
    script.chmod(0o755)
    exe = Path(sys.executable).with_name("pianonotes")
    env = dict(os.environ, PIANONOTES_CACHE=str(tmp_path), COLUMNS="200", NO_COLOR="1", BROWSER=f"{script} %s")
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([str(exe), "serve", "--port", "0", "--model", str(ckpt)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().split()[2]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (opened.exists() and opened.read_text().strip()):
            time.sleep(0.1)
        assert opened.read_text().strip() == url
        assert url.startswith("http://localhost:")
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b'id="keyboard"' in r.read()
    finally:
        proc.send_signal(2)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_take_writes_the_decoded_pedal_as_cc64(tmp_path):
    """The page's downloads are `transcribe`'s: key releases plus the sustain pedal as CC64 (v2 models)."""
    import mido

    from pianonotes.notes import Note, PedalEvent
    from pianonotes.serve import core

    notes = [Note(0.5, 0.9, 60, 80), Note(1.0, 1.4, 64, 80), Note(2.0, 2.5, 67, 80)]

    def cc64(pedals, name):
        out = tmp_path / name
        out.mkdir()
        errors = core.write_all_formats(str(out), notes, "pedal", pedals)
        assert "mid" not in errors, errors
        track = mido.MidiFile(out / "take.mid").tracks[0]
        return [m.value for m in track if m.type == "control_change" and m.control == 64]

    assert cc64([PedalEvent(0.4, 1.8)], "with") == [127, 0]
    assert cc64(None, "without") == []


def test_model_reads_the_typed_config_and_the_probe_wraps_an_engine(model):
    """The server's model reads the typed ModelConfig (no dict-or-attribute probing) and the page's probe
    engine passes through exactly what LiveSession reads of an Engine."""
    from pianonotes.serve import core

    cfg = model.transcriber.config
    assert cfg.lookahead_seconds is not None and model.lookahead_ms == pytest.approx(1000 * cfg.lookahead_seconds)
    assert model.transcriber.network.device == "cpu"
    eng = model.engine()
    probe = core._ProbeEngine(eng)
    assert (probe.sample_rate, probe.frontend, probe.latency_frames, probe.decoder) == (
        eng.sample_rate, eng.frontend, eng.latency_frames, eng.decoder)
    upd = probe.push(np.zeros(model.sample_rate, np.float32))
    assert probe.samples_in == eng.samples_in == model.sample_rate and probe.frames_out == eng.frames_out
    assert upd.n_frames and probe.last_frame.shape == (88,)
    probe.finish()
    assert not probe.last_frame.any()
    with pytest.raises(TypeError, match="wraps an Engine"):
        core._ProbeEngine(object())
