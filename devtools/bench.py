"""``make bench``: speed and memory of every stage, on this machine (not timed tests).

    python -m devtools.bench [--quick] [--out bench.json]

Reports: render speed of `data synth`, `--help` start-up, inference x real time on ONNX Runtime (all
threads and one thread; PyTorch on one thread for comparison; start-up excluded), whole-process wall
time for a 30 s clip and a 10-minute file (start-up included and excluded), a 20-file folder with
``--jobs 1`` and ``--jobs 2``, peak RSS for a 2-hour file, and live latency / worker CPU over a take.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EXE = [sys.executable, "-m", "pianonotes"]


def _example_audio(sr: int) -> np.ndarray:
    from pianonotes.audio import load_audio

    return load_audio(Path(__file__).resolve().parents[1] / "pianonotes" / "examples" / "twohands.flac", sr)


def _long_file(path: Path, seconds: float, sr: int) -> Path:
    import soundfile as sf

    base = _example_audio(sr)
    reps = int(np.ceil(seconds * sr / len(base)))
    with sf.SoundFile(path, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(reps):
            f.write(base)
    return path


_WRAP = ("import resource, subprocess, sys\n"
         "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
         "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
         "print(r.ru_maxrss, r.ru_utime + r.ru_stime)\n")
LAST_CPU: list[float] = [0.0]  # CPU seconds (user + sys) of the last _run: robust to a loaded machine


def _run(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one command, measured in a fresh wrapper process; its CPU seconds
    go to ``LAST_CPU[0]``."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    rss, cpu = out.stdout.split()[-2:]
    LAST_CPU[0] = float(cpu)
    return wall, int(rss) / 1024


def bench_render(tmp: Path) -> dict:
    from pianonotes.datasets.synth.dataset import SynthConfig, synthesize

    cfg = SynthConfig(hours=0.0, eval_minutes=4.0, splits=("validation",), seed=5)
    t0, c0 = time.perf_counter(), time.process_time()
    m = synthesize(tmp / "render", cfg, workers=1)
    wall = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + kids.ru_utime + kids.ru_stime
    secs = m["totals"]["validation"]["hours"] * 3600
    return {"audio_seconds": round(secs, 1), "wall_s": round(wall, 2),
            "x_real_time_per_core": round(secs / max(cpu, 1e-9), 1)}


def bench_inference(threads: int | None = None, backend: str = "onnx") -> dict:
    """Front end, network and decoding speed (warm, start-up excluded) on ``threads`` threads."""
    from pianonotes.decode import decode
    from pianonotes.transcribe import Transcriber

    tr = Transcriber.from_checkpoint(None, device="cpu", backend=backend, threads=threads)
    if backend == "torch" and threads:
        import torch

        torch.set_num_threads(threads)
    fe = tr.frontend
    audio = np.tile(_example_audio(fe.sample_rate), 3)
    secs = len(audio) / fe.sample_rate
    tr.infer_features(fe(audio[: fe.sample_rate * 2]))  # warm-up: filterbanks, kernels
    t0 = time.perf_counter()
    feats = fe(audio)
    t1 = time.perf_counter()
    p = tr.infer_features(feats)
    t2 = time.perf_counter()
    decode(p["frame"], p["onset"], p["velocity"], fps=fe.fps, options=tr.options)
    t3 = time.perf_counter()
    return {"backend": tr.backend, "threads": threads or "all", "audio_seconds": round(secs, 1),
            "front_end_x": round(secs / (t1 - t0), 1), "network_x": round(secs / (t2 - t1), 1),
            "decode_x": round(secs / (t3 - t2), 1), "network_and_decoding_x": round(secs / (t3 - t1), 1),
            "total_x_real_time": round(secs / (t3 - t0), 1)}


def bench_jobs(tmp: Path, n_files: int = 20, seconds: float = 30.0) -> dict:
    """A folder of ``n_files`` clips, whole process, with --jobs 1 and --jobs 2."""
    folder = tmp / "batch"
    folder.mkdir(exist_ok=True)
    src = _long_file(tmp / "batch-src.flac", seconds, 16000)
    for i in range(n_files):
        (folder / f"clip{i:02d}.flac").write_bytes(src.read_bytes())
    out = {}
    for jobs in (1, 2):
        wall, rss = _run(EXE + ["transcribe", str(folder), "-o", str(tmp / f"batch-out-{jobs}"), "-f", "mid",
                                "--overwrite", "--quiet", "--jobs", str(jobs)])
        out[f"jobs_{jobs}_wall_s"] = round(wall, 2)
        out[f"jobs_{jobs}_cpu_s"] = round(LAST_CPU[0], 2)
    out["speed_up"] = round(out["jobs_1_wall_s"] / out["jobs_2_wall_s"], 2)
    out["files"], out["seconds_each"] = n_files, seconds
    return out


def bench_cli(tmp: Path, quick: bool) -> dict:
    out = {}
    exe = Path(sys.executable).with_name("pianonotes")
    for flag in ("--help", "--version"):
        out[f"{flag[2:]}_s"] = round(min(_run([str(exe), flag])[0] for _ in range(5)), 3)
    for name, seconds in (("30s", 30.0), ("10min", 600.0)) + ((("2h", 7200.0),) if not quick else ()):
        src = _long_file(tmp / f"{name}.flac", seconds, 16000)
        wall, rss = _run(EXE + ["transcribe", str(src), "-o", str(tmp / f"{name}.mid"), "--overwrite", "--quiet"])
        cpu = LAST_CPU[0]
        # start-up: the same process on a tiny file
        tiny = _long_file(tmp / "tiny.flac", 0.5, 16000)
        base, _ = _run(EXE + ["transcribe", str(tiny), "-o", str(tmp / "tiny.mid"), "--overwrite", "--quiet"])
        out[name] = {"wall_s": round(wall, 2), "x_real_time_whole_process": round(seconds / wall, 1),
                     "x_real_time_without_startup": round(seconds / max(wall - base, 1e-9), 1),
                     "startup_s": round(base, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(rss, 1)}
    return out


def bench_live(tmp: Path, seconds: float) -> dict:
    from pianonotes.live.session import LiveSession, percentile
    from pianonotes.live.sources import FileSource
    from pianonotes.transcribe import Transcriber

    src = _long_file(tmp / "live.flac", seconds, 16000)
    tr = Transcriber.from_checkpoint(None, device="cpu", threads=1)  # as `listen` runs it
    session = LiveSession(tr.engine(), FileSource(src, 16000))
    session.start()
    while not session.done:
        session.wait_update(0.05)
        session.mark_shown()
    res = session.finish()
    lat, olat = res.latencies_ms, res.onset_latencies_ms
    return {"audio_seconds": seconds, "notes": len(res.notes), "dropped_blocks": res.dropped,
            "processing_latency_ms_median": round(float(np.median(lat)), 1) if lat else None,
            "processing_latency_ms_p95": round(percentile(lat, 95), 1) if lat else None,
            "onset_to_screen_ms_median": round(float(np.median(olat)), 1) if olat else None,
            "onset_to_screen_ms_p95": round(percentile(olat, 95), 1) if olat else None,
            "worker_cpu_percent_of_one_core": round(100 * res.worker_cpu_seconds / max(res.wall_seconds, 1e-9), 1)}


def bench_live_memory(tmp: Path, seconds: float) -> dict:
    """Peak RSS of `listen --input LONG --fast`: memory must stay flat over an hour's take."""
    src = _long_file(tmp / "take.flac", seconds, 16000)
    env_cache = tmp / "cache"
    cmd = EXE + ["listen", "--input", str(src), "--fast", "--plain", "-o", str(tmp / "take.mid"), "--overwrite"]
    wall, peak = _run(cmd, env=dict(os.environ, PIANONOTES_CACHE=str(env_cache)))
    return {"audio_seconds": seconds, "wall_s": round(wall, 1), "peak_rss_mb": round(peak, 1)}


def _torch_or_none(fn):
    import importlib.util

    return fn() if importlib.util.find_spec("torch") else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the 1-hour file and shorten the live take")
    ap.add_argument("--out", default="bench.json")
    args = ap.parse_args(argv)
    results = {"machine": {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)}}
    with tempfile.TemporaryDirectory(prefix="pianonotes-bench-") as d:
        tmp = Path(d)
        for name, fn in (("render", lambda: bench_render(tmp)), ("inference", bench_inference),
                         ("inference_1_thread", lambda: bench_inference(1)),
                         ("inference_torch_1_thread", lambda: _torch_or_none(lambda: bench_inference(1, "torch"))),
                         ("cli", lambda: bench_cli(tmp, args.quick)),
                         ("jobs", lambda: bench_jobs(tmp, 8 if args.quick else 20)),
                         ("live", lambda: bench_live(tmp, 20.0 if args.quick else 60.0)),
                         ("live_memory", lambda: bench_live_memory(tmp, 600.0 if args.quick else 3600.0))):
            results[name] = fn()
            print(name, json.dumps(results[name]), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
