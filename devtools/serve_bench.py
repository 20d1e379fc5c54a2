"""Benchmark of ``pianonotes serve``: N simultaneous recordings over loopback WebSockets at real-time pace.

    python -m devtools.serve_bench --clients 1 --clients 4 [--seconds 30] [--rate 48000] [--browser] [-o out.json]

Each client plays the shipped example (or ``--input``) like the page does: blocks of 20 ms at the
browser's rate (48 kHz: the server resamples), sent when they would have been captured. Reported:

- onset audio to client: from the moment a note's onset sample was "captured" (its block's send time
  less the samples after it, as the page counts it) to the moment the client received that note's start: includes the model's 100 ms look-ahead, the 20 ms
  block, the server's 50 ms update and the network; a browser adds one animation frame (<= 17 ms);
- server latency: LiveSession's own measure (the block completing a note's look-ahead to the update
  leaving the server), the same figure ``listen`` reports;
- CPU per recording: the LiveSession worker's thread CPU over the take's wall time, and the whole
  server process's CPU (a separate ``pianonotes serve`` process, read from /proc) divided by the
  number of recordings;
- dropped blocks.

A tool: it prints. Nothing here is imported by the server.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BLOCK_SECONDS = 0.02


def _client(url: str, audio: np.ndarray, rate: int, out: dict) -> None:
    from websockets.sync.client import connect

    block = int(BLOCK_SECONDS * rate)
    sent_at: list[tuple[int, float]] = []  # (end sample, monotonic time sent)
    lat: list[float] = []
    done: dict = {}

    def captured(t: float) -> float | None:
        s = t * rate
        for end, when in sent_at:
            if s < end:
                return when - (end - s) / rate  # when that sample was "captured" (as the page counts it)
        return None

    with connect(url, origin=url.replace("ws://", "http://").rsplit("/ws/", 1)[0], max_size=None) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": rate, "format": "f32le", "title": "bench"}))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready", ready

        def receiver() -> None:
            while True:
                msg = json.loads(ws.recv(timeout=120))
                now = time.monotonic()
                if msg["type"] == "update":
                    for s in msg["starts"]:
                        t = captured(s[0])
                        if t is not None:
                            lat.append((now - t) * 1000.0)
                elif msg["type"] == "done":
                    done.update(msg["take"])
                    return
                elif msg["type"] == "error":
                    done["error"] = msg["message"]

        rx = threading.Thread(target=receiver, daemon=True)
        rx.start()
        t0 = time.monotonic()
        pos = 0
        for i in range(0, len(audio), block):
            chunk = audio[i: i + block]
            due = t0 + (pos + len(chunk)) / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pos += len(chunk)
            sent_at.append((pos, time.monotonic()))
            ws.send(chunk.astype("<f4").tobytes())
        ws.send(json.dumps({"type": "stop"}))
        rx.join(300)
    out.update(latencies=lat, take=done)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(clients: int, seconds: float, rate: int, audio_path: Path | None) -> dict:
    """One round: a fresh ``pianonotes serve`` process (its CPU measured from /proc), ``clients`` recordings."""
    import subprocess
    import sys

    from pianonotes.live.journal import takes_dir
    from pianonotes.live.recovery import take_meta
    from pianonotes.audio import load_audio

    path = audio_path or Path(__file__).resolve().parents[1] / "pianonotes" / "examples" / "twohands.flac"
    audio = load_audio(path, rate)
    if seconds:
        reps = int(np.ceil(seconds * rate / len(audio)))
        audio = np.tile(audio, reps)[: int(seconds * rate)]
    proc = subprocess.Popen([sys.executable, "-m", "pianonotes", "serve", "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, COLUMNS="300", NO_COLOR="1"))
    try:
        line = proc.stdout.readline()
        http = line.split()[2].rstrip("/")
        url = http.replace("http://", "ws://").replace("localhost", "127.0.0.1") + "/ws/record"
        backend = line.split("model ")[-1].split(";")[0] if "model " in line else ""
        results = [dict() for _ in range(clients)]
        cpu0, wall0 = _cpu_seconds(proc.pid), time.monotonic()
        threads = [threading.Thread(target=_client, args=(url, audio, rate, r)) for r in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu, wall = _cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
    finally:
        proc.terminate()
        proc.wait(30)
    lat = [x for r in results for x in r.get("latencies", [])]
    takes = [r.get("take", {}) for r in results]
    meta = []
    for t in takes:
        try:
            meta.append(take_meta(takes_dir() / t["id"]))
        except Exception:
            meta.append({})
    worker = [m["worker_cpu_seconds"] / m["wall_seconds"] for m in meta if m.get("wall_seconds")]
    p50 = [m["latency_ms_p50"] for m in meta if m.get("latency_ms_p50") is not None]
    p95 = [m["latency_ms_p95"] for m in meta if m.get("latency_ms_p95") is not None]
    return {
        "clients": clients, "audio_seconds": len(audio) / rate, "client_rate": rate, "model": backend,
        "onset_to_client_ms_p50": float(np.percentile(lat, 50)) if lat else None,
        "onset_to_client_ms_p95": float(np.percentile(lat, 95)) if lat else None,
        "server_latency_ms_p50": float(np.median(p50)) if p50 else None,
        "server_latency_ms_p95": float(np.median(p95)) if p95 else None,
        "worker_cpu_per_recording": float(np.mean(worker)) if worker else None,
        "server_cpu_per_recording": cpu / wall / clients,
        "dropped_blocks": sum(int(m.get("dropped_blocks") or 0) for m in meta),
        "notes": [t.get("notes") for t in takes], "errors": [t.get("error") for t in takes if t.get("error")],
        "load_average": os.getloadavg()[0], "cores": os.cpu_count(),
    }


def browser_latency(seconds: float, audio_path: Path | None) -> dict:
    """The page itself in headless Chromium (Selenium + Debian's chromedriver), its fake microphone
    playing the example: the page's own onset-audio-to-screen latencies (window.pnStats.latencies:
    capture time of the onset sample to the animation frame that drew the key)."""
    import shutil
    import subprocess
    import sys

    import soundfile as sf
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from pianonotes.audio import load_audio

    work = Path(tempfile.mkdtemp(prefix="pianonotes-bench-browser-"))
    path = audio_path or Path(__file__).resolve().parents[1] / "pianonotes" / "examples" / "twohands.flac"
    wav = work / "mic.wav"
    sf.write(wav, load_audio(path, 48000), 48000, subtype="PCM_16")
    proc = subprocess.Popen([sys.executable, "-m", "pianonotes", "serve", "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, COLUMNS="300", NO_COLOR="1"))
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for f in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
              "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-audio-capture={wav}", f"--user-data-dir={work / 'profile'}"):
        opts.add_argument(f)
    driver = None
    try:
        url = proc.stdout.readline().split()[2].replace("localhost", "127.0.0.1")
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                  options=opts)
        driver.get(url)
        time.sleep(1.0)
        driver.find_element("id", "rec-start").click()
        time.sleep(seconds)
        lat = driver.execute_script("return window.pnStats.latencies")
        rate = driver.execute_script("return window.pnStats.rate")
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return {"page_notes": len(lat), "page_rate": rate,
            "page_onset_to_screen_ms_p50": float(np.percentile(lat, 50)) if lat else None,
            "page_onset_to_screen_ms_p95": float(np.percentile(lat, 95)) if lat else None,
            "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, action="append", help="simultaneous recordings (repeat)")
    ap.add_argument("--seconds", type=float, default=30.0, help="audio per recording")
    ap.add_argument("--rate", type=int, default=48000, help="the clients' sample rate")
    ap.add_argument("--input", type=Path, default=None, help="audio to play (default: the shipped example)")
    ap.add_argument("--browser", action="store_true", help="also the page in headless Chromium (its own latency)")
    ap.add_argument("-o", "--output", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    os.environ.setdefault("PIANONOTES_CACHE", tempfile.mkdtemp(prefix="pianonotes-bench-"))
    rows = []
    for n in args.clients or [1]:
        r = run(n, args.seconds, args.rate, args.input)
        rows.append(r)
        fmt = lambda v, unit="": "-" if v is None else f"{v:.0f}{unit}"  # noqa: E731
        print(f"{n} recording(s), {r['audio_seconds']:.0f} s each at {args.rate} Hz: "
              f"onset audio to client median {fmt(r['onset_to_client_ms_p50'], ' ms')}, "
              f"p95 {fmt(r['onset_to_client_ms_p95'], ' ms')}; server latency median "
              f"{fmt(r['server_latency_ms_p50'], ' ms')}; worker CPU "
              f"{100 * (r['worker_cpu_per_recording'] or 0):.0f} % of a core per recording, server process "
              f"{100 * r['server_cpu_per_recording']:.0f} %; dropped blocks {r['dropped_blocks']}; "
              f"load average {r['load_average']:.1f} on {r['cores']} cores", flush=True)
    if args.browser:
        r = browser_latency(args.seconds, args.input)
        rows.append(r)
        print(f"the page in headless Chromium ({r['page_rate']} Hz): onset audio to screen median "
              f"{r['page_onset_to_screen_ms_p50']:.0f} ms, p95 {r['page_onset_to_screen_ms_p95']:.0f} ms over "
              f"{r['page_notes']} notes; load average {r['load_average']:.1f}", flush=True)
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
