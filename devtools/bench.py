"""``make bench``: speed and memory of every stage, on this machine (not timed tests).

    python -m devtools.bench [--quick] [--out bench.json]

Reports: render speed of `data synth`, `--help` start-up, inference x real time on ONNX Runtime (all
threads and one thread; PyTorch on one thread for comparison; start-up excluded), whole-process wall
time for a 30 s clip and a 10-minute file (start-up included and excluded), a 20-file folder with
``--jobs 1`` and ``--jobs 2`` (with what two processes gain over one on this machine at all), peak RSS for a 2-hour file, and live latency / worker CPU over a take.
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


_WRAP = ("import resource, subprocess, sys, time\n"
         "t = time.perf_counter()\n"
         "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
         "wall = time.perf_counter() - t\n"
         "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
         "print(r.ru_maxrss, r.ru_utime + r.ru_stime, wall)\n")
LAST_CPU: list[float] = [0.0]  # CPU seconds (user + sys) of the last _run: robust to a loaded machine
REPEATS = 5  # whole-process timings are the median of this many runs
_PYCACHE: list[str] = []  # where the commands keep their bytecode (set by main)


def _env(env: dict | None = None) -> dict:
    """The commands' environment: bytecode is cached (in the bench's own folder), as in an installed
    package, even where PYTHONDONTWRITEBYTECODE is set; otherwise every run would compile pianonotes'
    modules again (30-50 ms a run that no installed copy pays)."""
    env = dict(os.environ if env is None else env)
    if _PYCACHE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE[0]
    return env


def _run(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one command, measured in a fresh wrapper process (the command's own
    wall time, without the wrapper's start-up); its CPU seconds go to ``LAST_CPU[0]``."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], check=True, capture_output=True, text=True,
                         env=_env(env))
    rss, cpu, wall = out.stdout.split()[-3:]
    LAST_CPU[0] = float(cpu)
    return float(wall), int(rss) / 1024


def _median_run(cmd: list[str], repeats: int = REPEATS, env: dict | None = None, warm_up: bool = True) -> dict:
    """Median wall and CPU seconds (and peak RSS) of ``repeats`` runs of ``cmd`` after one warm-up run
    (disk cache, bytecode), with the load average before and after."""
    if warm_up:
        _run(cmd, env)
    load0 = os.getloadavg()[0]
    walls, cpus, rss = [], [], 0.0
    for _ in range(repeats):
        wall, peak = _run(cmd, env)
        walls.append(wall)
        cpus.append(LAST_CPU[0])
        rss = max(rss, peak)
    return {"wall_s": round(float(np.median(walls)), 3), "cpu_s": round(float(np.median(cpus)), 3),
            "wall_min_s": round(min(walls), 3), "peak_rss_mb": round(rss, 1), "runs": repeats,
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}


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
    runs = []
    # ONNX Runtime plans its memory on the first two runs of an input shape (the first is about 1.7x slower,
    # the second 1.4x): two warm-up runs of the whole input, then REPEATS timed ones
    for _ in range(REPEATS + 2):
        t0 = time.perf_counter()
        feats = fe(audio)
        t1 = time.perf_counter()
        p = tr.infer_features(feats)
        t2 = time.perf_counter()
        decode(p["frame"], p["onset"], p["velocity"], fps=fe.fps, options=tr.options)
        t3 = time.perf_counter()
        runs.append((t1 - t0, t2 - t1, t3 - t2))
    first = runs[0]
    fe_s, net_s, dec_s = (float(np.median([r[i] for r in runs[2:]])) for i in range(3))
    return {"backend": tr.backend, "threads": threads or "all", "audio_seconds": round(secs, 1),
            "front_end_x": round(secs / fe_s, 1), "network_x": round(secs / net_s, 1),
            "decode_x": round(secs / dec_s, 1), "network_and_decoding_x": round(secs / (net_s + dec_s), 1),
            "network_and_decoding_x_first_run": round(secs / (first[1] + first[2]), 1),
            "total_x_real_time": round(secs / (fe_s + net_s + dec_s), 1), "runs": f"median of {len(runs) - 2} warm",
            "load_average": round(os.getloadavg()[0], 2)}


_SPIN = {  # a second or two of one kind of work, in a fresh process: its own wall time is printed
    "python": "x = 0\nfor i in range(8_000_000):\n    x += i * i",
    "numpy": "import numpy as np\na = np.random.default_rng(0).random((256, 256), dtype=np.float32)\n"
             "for _ in range(3000):\n    a @ a",
}


def _spin(kind: str, copies: int) -> float:
    """Mean wall seconds of ``copies`` simultaneous processes each doing the same :data:`_SPIN` work."""
    code = "import time\nt = time.perf_counter()\n" + _SPIN[kind] + "\nprint(time.perf_counter() - t)"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(copies)]
    return float(np.mean([float(p.communicate()[0]) for p in procs]))


def parallel_ceiling(repeats: int = 5) -> dict:
    """What two processes gain over one on this machine, for interpreter-bound (pure Python) and for
    vectorised (numpy matrix product) work: 2 x (one alone) / (each of two together), medians of
    ``repeats`` interleaved rounds, with the range of the per-round ratios. Two virtual cores that share a
    host core, or a host that throttles, give well under 2x: the bound on any ``--jobs 2`` speed-up."""
    out = {"load_average": round(os.getloadavg()[0], 2)}
    for kind in _SPIN:
        _spin(kind, 1)  # warm-up
        alone, pair = [], []
        for _ in range(repeats):
            alone.append(_spin(kind, 1))
            pair.append(_spin(kind, 2))
        ratios = [2 * a / b for a, b in zip(alone, pair)]
        out[f"{kind}_x"] = round(2 * float(np.median(alone)) / float(np.median(pair)), 2)
        out[f"{kind}_x_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
    return out


def bench_jobs(tmp: Path, n_files: int = 20, seconds: float = 30.0, repeats: int = REPEATS) -> dict:
    """A folder of ``n_files`` clips, whole process, with --jobs 1 and --jobs 2."""
    folder = tmp / "batch"
    folder.mkdir(exist_ok=True)
    src = _long_file(tmp / "batch-src.flac", seconds, 16000)
    for i in range(n_files):
        (folder / f"clip{i:02d}.flac").write_bytes(src.read_bytes())
    out = {}
    exe = Path(sys.executable).with_name("pianonotes")
    walls: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}
    load0 = os.getloadavg()[0]
    for i in range(repeats + 1):  # interleaved, so that a change of load hits both; the first round warms up
        for jobs in (1, 2):
            wall, rss = _run([str(exe), "transcribe", str(folder), "-o", str(tmp / f"batch-out-{jobs}"), "-f",
                              "mid", "--overwrite", "--quiet", "--jobs", str(jobs)])
            if i:
                walls[jobs].append(wall)
                cpus[jobs].append(LAST_CPU[0])
    for jobs in (1, 2):
        out[f"jobs_{jobs}_wall_s"] = round(float(np.median(walls[jobs])), 2)
        out[f"jobs_{jobs}_cpu_s"] = round(float(np.median(cpus[jobs])), 2)
    out["speed_up"] = round(out["jobs_1_wall_s"] / out["jobs_2_wall_s"], 2)
    out["runs"], out["load_average"] = repeats, [round(load0, 2), round(os.getloadavg()[0], 2)]
    out["files"], out["seconds_each"] = n_files, seconds
    out["two_processes_ceiling"] = parallel_ceiling()
    return out


def bench_cli(tmp: Path, quick: bool) -> dict:
    out = {}
    exe = Path(sys.executable).with_name("pianonotes")
    for flag in ("--help", "--version"):
        out[flag[2:]] = _median_run([str(exe), flag])
    example = Path(__file__).resolve().parents[1] / "pianonotes" / "examples" / "twohands.flac"
    out["example_to_midi"] = _median_run([str(exe), "transcribe", str(example), "-o", str(tmp / "example.mid"),
                                          "--overwrite", "--quiet"])
    wav = tmp / "30s-44k-stereo.wav"  # what a phone or a DAW exports: resampled on the way in
    _stereo_44k(wav, 30.0)
    out["30s_wav_44k_stereo_to_midi"] = _median_run([str(exe), "transcribe", str(wav), "-o", str(tmp / "wav.mid"),
                                                     "--overwrite", "--quiet"])
    # start-up: the same process on a tiny file
    tiny = _long_file(tmp / "tiny.flac", 0.5, 16000)
    base = _median_run([str(exe), "transcribe", str(tiny), "-o", str(tmp / "tiny.mid"), "--overwrite", "--quiet"])
    out["startup"] = base
    for name, seconds in (("30s", 30.0), ("10min", 600.0)) + ((("2h", 7200.0),) if not quick else ()):
        src = _long_file(tmp / f"{name}.flac", seconds, 16000)
        cmd = [str(exe), "transcribe", str(src), "-o", str(tmp / f"{name}.mid"), "--overwrite", "--quiet"]
        res = _median_run(cmd) if seconds <= 30 else _median_run(cmd, repeats=1, warm_up=False)
        wall = res["wall_s"]
        res.update(x_real_time_whole_process=round(seconds / wall, 1),
                   x_real_time_without_startup=round(seconds / max(wall - base["wall_s"], 1e-9), 1))
        out[name] = res
    return out


def _stereo_44k(path: Path, seconds: float) -> Path:
    import soundfile as sf

    from pianonotes.audio import resample

    mono = resample(_example_audio(16000), 16000, 44100)
    mono = np.tile(mono, int(np.ceil(seconds * 44100 / len(mono))))[: int(seconds * 44100)]
    sf.write(path, np.stack([mono, 0.8 * mono], axis=1), 44100, subtype="PCM_16")
    return path


def bench_install_size(tmp: Path) -> dict:
    """``pip install .`` into a fresh virtual environment (no torch: what pipx installs), then the size of
    its site-packages and of the biggest packages in it; and the same installed with ``--no-compile``
    (``pipx install . --pip-args=--no-compile``: no bytecode written ahead; Python caches what it
    imports on first use). Needs the package index."""
    import shutil
    import venv

    root = Path(__file__).resolve().parents[1]
    env_dir = tmp / "light"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(root)], check=True, capture_output=True)
    site = next((env_dir / "lib").glob("python*/site-packages"))

    def size(p: Path) -> int:
        if p.is_file():
            return p.stat().st_size
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())

    du = subprocess.run(["du", "-sk", str(site)], capture_output=True, text=True)
    parts: dict[str, int] = {}
    for p in site.iterdir():
        if p.name.endswith((".dist-info", ".pth")) or p.name == "__pycache__":
            continue
        name = p.name.split(".")[0].lstrip("_") if p.is_file() else p.name
        parts[name] = parts.get(name, 0) + size(p)
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:12]
    res = {"site_packages_mb": round(int(du.stdout.split()[0]) / 1024, 1) if du.returncode == 0 else None,
           "biggest_mb": {k: round(v / 2**20, 1) for k, v in top}}
    shutil.rmtree(env_dir, ignore_errors=True)
    venv.create(env_dir, with_pip=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-compile", str(root)], check=True,
                   capture_output=True)
    du = subprocess.run(["du", "-sk", str(next((env_dir / "lib").glob("python*/site-packages")))],
                        capture_output=True, text=True)
    res["no_compile_site_packages_mb"] = round(int(du.stdout.split()[0]) / 1024, 1) if du.returncode == 0 else None
    shutil.rmtree(env_dir, ignore_errors=True)
    return res


def bench_live(tmp: Path, seconds: float, overrides: dict | None = None) -> dict:
    from pianonotes.live.session import LiveSession, percentile
    from pianonotes.live.sources import FileSource
    from pianonotes.transcribe import Transcriber

    src = _long_file(tmp / "live.flac", seconds, 16000)
    tr = Transcriber.from_checkpoint(None, device="cpu", threads=1, overrides=overrides)  # as `listen` runs it
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
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only these parts (repeat): render, inference, inference_1_thread, "
                         "inference_torch_1_thread, cli, jobs, live, live_low_latency (listen --low-latency), "
                         "live_memory, install_size")
    ap.add_argument("--install-size", action="store_true",
                    help="also install the package into a fresh venv and report its size (downloads from PyPI)")
    args = ap.parse_args(argv)
    from pianonotes.decode import NO_LOOKAHEAD

    results = {"machine": {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)}}
    with tempfile.TemporaryDirectory(prefix="pianonotes-bench-") as d:
        tmp = Path(d)
        _PYCACHE[:] = [str(tmp / "pycache")]
        parts = (("render", lambda: bench_render(tmp)), ("inference", bench_inference),
                 ("inference_1_thread", lambda: bench_inference(1)),
                 ("inference_torch_1_thread", lambda: _torch_or_none(lambda: bench_inference(1, "torch"))),
                 ("cli", lambda: bench_cli(tmp, args.quick)),
                 ("jobs", lambda: bench_jobs(tmp, 8 if args.quick else 20)),
                 ("live", lambda: bench_live(tmp, 20.0 if args.quick else 60.0)),
                 ("live_low_latency", lambda: bench_live(tmp, 20.0 if args.quick else 60.0, NO_LOOKAHEAD)),
                 ("live_memory", lambda: bench_live_memory(tmp, 600.0 if args.quick else 3600.0)),
                 ("install_size", lambda: bench_install_size(tmp)))
        for name, fn in parts:
            if (args.only and name not in args.only) or (name == "install_size" and not (args.install_size
                                                                                         or name in args.only)):
                continue
            results[name] = fn()
            print(name, json.dumps(results[name]), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
