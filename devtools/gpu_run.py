"""One prepared GPU training run (issue 12, item 5): everything a bare GPU machine needs in one folder of
at most 64 MiB with the working tree, and one command there that renders, trains and hands back the
checkpoint inside a time budget.

Here (with the train extra and the pianos fetched: ``make pianos``)::

    python -m devtools.gpu_run pack .gpu          # make gpu-pack: wheels, sampled pianos, room bank

There (the GPU machine: Python 3.12 with PyTorch, numpy and scipy, nothing else of ours; no network)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl &&
    PYTHONPATH=/tmp/site:. python3 -m devtools.gpu_run device .gpu --out $OUT/gpu-run --budget-minutes 9

``pack`` stores what the machine lacks: the wheels of our dependencies it does not have (cp312,
manylinux x86-64), both sampled pianos coded as Opus (mono mid channel only; Salamander's 16 layers and
its key-release noises, Iowa's one recorded ff layer, its softer layers derived again there as ``data
pianos`` derives them) and half the room bank as float16. The MIDI corpus travels with the tree (data/midi).
``device`` decodes the pianos into a private cache, renders a dry dataset from the corpus's training
split over every core (Salamander twice as likely as Iowa; FluidSynth's SoundFonts are not on that
machine), trains AudioNet with the online acoustics, warm-started from the shipped checkpoint, on the
GPU with bf16 autocast until its budget is spent (``train --max-minutes``: the cosine decay follows the
clock), and writes the best (synthetic validation) and last checkpoints with their metrics and a summary
into ``--out``. Calibration and the model card stay here, where the real recordings are
(``python -m devtools.ship OUT/best models/audionet --real ../shared/data/real-dev ...``).

Library code is not touched: this is a maintenance tool; it prints its progress.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CARRY_LIMIT = 64 * 1024 * 1024  # the device tool's limit on the working tree plus carried paths
# what our training imports that the GPU image lacks (or holds at another version); versions from this venv
WHEELS = ("soundfile", "cffi", "pycparser", "soxr", "mido", "mir_eval", "decorator", "pedalboard", "typer",
          "click", "platformdirs")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
GAP = 1600  # samples of silence between coded samples (0.1 s at 16 kHz): no codec frame spans two samples
# which layers of each piano travel; the others are derived there (Iowa: from its one recorded layer)
PACK_LAYERS = {"salamander": None, "iowa": [3]}
OPUS_LEVEL = 0.9  # libsndfile's Opus compression level: about 31 kbit/s mono at 16 kHz
ROOMS = 150  # rooms of the bank that travel (of make rooms' 300), as float16: 4.6 MB instead of 18


def _encode(chunks: list[np.ndarray], path: Path, sample_rate: int, level: float) -> list[int]:
    import soundfile as sf

    lengths = [len(c) for c in chunks]
    parts = []
    for c in chunks:
        parts += [c.astype(np.float32), np.zeros(GAP, np.float32)]
    audio = np.concatenate(parts) if parts else np.zeros(GAP, np.float32)
    with sf.SoundFile(path, "w", sample_rate, 1, format="OGG", subtype="OPUS", compression_level=level) as f:
        f.write(audio)
    return lengths


def _decode(path: Path, lengths: list[int]) -> list[np.ndarray]:
    import soundfile as sf

    audio, _ = sf.read(path, dtype="float32")
    out, pos = [], 0
    for n in lengths:
        if pos + n > len(audio):
            raise ValueError(f"{path.name} holds {len(audio)} samples, fewer than its index says")
        out.append(audio[pos:pos + n].astype(np.float16))
        pos += n + GAP
    return out


def pack_piano(sset, folder: Path, layers: list[int] | None = None, level: float = OPUS_LEVEL) -> dict:
    """Code one :class:`~pianonotes.datasets.synth.pianos.SampleSet` into ``folder`` (NAME.json + one Opus
    file per packed layer + one for the release noises); returns the index written."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = list(range(len(sset.layer_velocity))) if layers is None else list(layers)
    index = {"name": sset.name, "sample_rate": sset.sample_rate, "pitches": [int(p) for p in sset.pitches],
             "layer_velocity": [int(v) for v in sset.layer_velocity], "layers": {}, "release": {}}
    for li in layers:
        f = folder / f"{sset.name}-layer{li}.opus"
        index["layers"][str(li)] = {"file": f.name, "lengths": _encode(sset.mid[li], f, sset.sample_rate, level)}
    if sset.release:
        ps = sorted(sset.release)
        f = folder / f"{sset.name}-release.opus"
        index["release"] = {"file": f.name, "pitches": ps,
                            "lengths": _encode([sset.release[p] for p in ps], f, sset.sample_rate, level)}
    (folder / f"{sset.name}.json").write_text(json.dumps(index))
    return index


def unpack_piano(folder: Path, name: str):
    """The :class:`SampleSet` of ``pack_piano``: mid from the Opus files, side silent; a four-layer piano
    packed with fewer layers gets the missing ones derived from its last packed layer (Iowa's rule,
    :func:`~pianonotes.datasets.synth.pianos.derive_layers`, which gives every layer, the loudest as is)."""
    from pianonotes.datasets.synth.pianos import SampleSet, derive_layers

    index = json.loads((folder / f"{name}.json").read_text())
    sr, n_layers, n_keys = index["sample_rate"], len(index["layer_velocity"]), len(index["pitches"])
    mid: list[list[np.ndarray] | None] = [None] * n_layers
    for li, entry in index["layers"].items():
        mid[int(li)] = _decode(folder / entry["file"], entry["lengths"])
    if any(m is None for m in mid):
        if n_layers != len(derive_layers(np.zeros(8, np.float16), np.zeros(8, np.float16), sr)):
            raise ValueError(f"{name}: layers are missing and only the Iowa rule (four layers) can derive them")
        src = mid[max(int(li) for li in index["layers"])]
        derived: list[list[np.ndarray]] = [[] for _ in range(n_layers)]
        for k in range(n_keys):
            m = src[k]
            for li, (dm, _) in enumerate(derive_layers(m, np.zeros_like(m), sr)):
                derived[li].append(dm)
        mid = [m if m is not None else derived[li] for li, m in enumerate(mid)]
    side = [[np.zeros_like(m) for m in layer] for layer in mid]
    release = {}
    if index["release"]:
        rel = _decode(folder / index["release"]["file"], index["release"]["lengths"])
        release = dict(zip(index["release"]["pitches"], rel))
    return SampleSet(name, sr, np.array(index["pitches"]), np.array(index["layer_velocity"]), mid, side, release)


def pack_rooms(bank: Path, dest: Path, n: int) -> int:
    """The first ``n`` impulse responses of a room bank as float16 (a lossless codec gains little on them and
    a lossy one smears the direct sound); returns how many were written."""
    from pianonotes.datasets.synth.acoustics import load_room_bank

    irs = load_room_bank(bank)[:n]
    np.savez(dest, **{f"ir_{i}": h.astype(np.float16) for i, h in enumerate(irs)})
    return len(irs)


def unpack_rooms(packed: Path, dest: Path) -> int:
    """The float32 room bank ``train --rooms`` reads, from :func:`pack_rooms`' file."""
    with np.load(packed, allow_pickle=False) as z:
        arrays = {k: z[k].astype(np.float32) for k in z.files}
    np.savez(dest, **arrays)
    return len(arrays)


def tree_bytes(repo: Path) -> int:
    """Bytes of the working tree that travels: tracked files plus untracked files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True).stdout
    return sum((repo / p).stat().st_size for p in out.decode().split("\0") if p and (repo / p).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def pack(dest: Path, *, level: float = OPUS_LEVEL, wheels: bool = True) -> dict:
    from pianonotes.datasets.synth import pianos
    from pianonotes.datasets.synth.acoustics import room_bank_path

    dest.mkdir(parents=True, exist_ok=True)
    summary: dict = {"made": time.strftime("%Y-%m-%d %H:%M:%S"), "opus_level": level, "wheels": {}}
    if wheels:
        wd = dest / "wheels"
        shutil.rmtree(wd, ignore_errors=True)
        wd.mkdir()
        for name in WHEELS:
            version = importlib.metadata.version(name)
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.12", "--implementation", "cp", "-d", str(wd), f"{name}=={version}"]
            for p in PLATFORMS:
                cmd += ["--platform", p]
            subprocess.run(cmd, check=True)
            summary["wheels"][name] = version
            print(f"wheel {name}=={version}", flush=True)
    for name, layers in PACK_LAYERS.items():
        t = time.time()
        sset = pianos.load(name)
        pack_piano(sset, dest / "pianos", layers, level)
        print(f"piano {name}: {time.time() - t:.0f} s", flush=True)
    rooms = room_bank_path()
    if not rooms.exists():
        raise SystemExit(f"no room bank at {rooms}: run `make rooms` first")
    pack_rooms(rooms, dest / "rooms.npz", ROOMS)
    repo = Path(__file__).resolve().parents[1]
    summary["bytes"] = {"carry": folder_bytes(dest), "tree": tree_bytes(repo)}
    (dest / "pack.json").write_text(json.dumps(summary, indent=1))
    total = summary["bytes"]["carry"] + summary["bytes"]["tree"]
    print(f"{dest}: {summary['bytes']['carry'] / 2**20:.1f} MiB carried + {summary['bytes']['tree'] / 2**20:.1f} "
          f"MiB tree = {total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f}", flush=True)
    if total > CARRY_LIMIT:
        raise SystemExit("over the device's 64 MiB: raise --level (smaller Opus) or pack fewer layers")
    return summary


def synth_command(data: Path, hours: float, eval_minutes: float, workers: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "pianonotes", "data", "synth", str(data), "--hours", str(hours),
            "--eval-minutes", str(eval_minutes), "--split", "train", "--split", "validation", "--seed", str(seed),
            "--workers", str(workers), "--no-augment", "--soundfonts", "salamander,salamander,iowa",
            "--weights", "corpus=0.75,textures=0.25", "--velocity-scale", "0.35,1.3", "--midi-dir", "data/midi"]


def train_command(data: Path, run: Path, rooms: Path, args: argparse.Namespace, minutes: float) -> list[str]:
    cmd = [sys.executable, "-m", "pianonotes", "train", "--data", str(data), "--arch", "audionet", "--pedal-heads",
           "--online-augment", "--rooms", str(rooms), "--device", args.device, "--batch-size", str(args.batch_size),
           "--lr", str(args.lr), "--workers", str(args.workers), "--max-steps", str(args.max_steps),
           "--max-minutes", f"{minutes:.2f}", "--save-every", str(args.save_every), "--seed", str(args.seed),
           "--out", str(run)]
    for opt in ("channels", "hidden", "dilations"):
        if getattr(args, opt) is not None:
            cmd += [f"--{opt}", str(getattr(args, opt))]
    if args.init_from:
        cmd += ["--init-from", args.init_from]
    return cmd


def device(args: argparse.Namespace) -> dict:
    t0 = time.time()
    src, out = Path(args.pack), Path(args.out)
    work = Path(args.work)
    cache = work / "cache"
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PIANONOTES_CACHE"] = str(cache)  # this process's pianos, and the children's
    from pianonotes.datasets.synth.pianos import decoded_path

    summary: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "args": vars(args), "times": {}}
    try:
        import torch

        summary["torch"] = torch.__version__
        summary["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        summary["torch"] = None

    def mark(what: str) -> None:
        summary["times"][what] = round(time.time() - t0, 1)
        print(f"[{summary['times'][what]:7.1f} s] {what}", flush=True)

    for name in PACK_LAYERS:
        path = decoded_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        unpack_piano(src / "pianos", name).save(path)
    mark("pianos decoded")
    rooms = work / "rooms.npz"
    summary["rooms"] = unpack_rooms(src / "rooms.npz", rooms)
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run(synth_command(data, args.hours, args.eval_minutes, args.render_workers, args.seed), check=True)
    mark("rendered")
    minutes = args.budget_minutes - (time.time() - t0) / 60 - args.reserve_minutes
    if minutes < 0.5:
        raise SystemExit(f"only {minutes:.1f} min of the budget left to train: render fewer --hours")
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    summary["train_minutes"] = round(minutes, 2)
    subprocess.run(train_command(data, run, rooms, args, minutes), check=True)
    mark("trained")
    for name in ("best.json", "best.safetensors", "last.json", "last.safetensors", "metrics.jsonl"):
        if (run / name).exists():
            shutil.copy2(run / name, out / name)
    last = json.loads((run / "last.json").read_text())
    summary["step"], summary["metrics"] = last.get("step"), last.get("metrics")
    mark("copied")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m devtools.gpu_run", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="make the carried folder (here)")
    p.add_argument("dest", type=Path)
    p.add_argument("--level", type=float, default=OPUS_LEVEL, help="Opus compression level 0-1 (1: smallest)")
    p.add_argument("--no-wheels", action="store_true", help="pianos and rooms only")
    d = sub.add_parser("device", help="render, train and hand back (there)")
    d.add_argument("pack")
    d.add_argument("--out", required=True)
    d.add_argument("--work", default="/tmp/pianonotes-gpu")
    d.add_argument("--budget-minutes", type=float, default=9.0, help="wall time of the whole command")
    d.add_argument("--reserve-minutes", type=float, default=1.0, help="kept for the last validation and copies")
    d.add_argument("--hours", type=float, default=12.0, help="hours of training audio to render")
    d.add_argument("--eval-minutes", type=float, default=6.0)
    d.add_argument("--render-workers", type=int, default=os.cpu_count() or 1)
    d.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="DataLoader workers")
    d.add_argument("--device", default="cuda")
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--lr", type=float, default=8e-4)
    d.add_argument("--max-steps", type=int, default=100000, help="the clock stops it first")
    d.add_argument("--save-every", type=int, default=500)
    d.add_argument("--seed", type=int, default=3)
    d.add_argument("--channels")
    d.add_argument("--hidden", default="256")
    d.add_argument("--dilations", default="1,2,4,8")
    d.add_argument("--init-from", default="models/audionet", help="warm start (tensors that fit)")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        pack(args.dest, level=args.level, wheels=not args.no_wheels)
    else:
        print(json.dumps(device(args), indent=1))


if __name__ == "__main__":
    main()
