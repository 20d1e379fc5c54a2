"""The ``pianonotes`` command line. The only layer that prints or exits.

Heavy modules (torch, music21) are imported inside the commands that use them, so ``--help`` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from pianonotes import __version__
from pianonotes import constants as C
from pianonotes.errors import PianonotesError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Piano audio to notes and sheet music, from a file or live from the microphone.",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(no_args_is_help=True, help="Make training data.")
app.add_typer(data_app, name="data")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """One red line on stderr, then a non-zero exit."""
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pianonotes {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """pianonotes: transcribe piano recordings to MIDI, MusicXML and engraved scores."""


# ----------------------------------------------------------------------------------------------- data
@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Dataset folder to create (or resume)."),
    hours: float = typer.Option(1.0, help="Hours of training audio."),
    eval_minutes: float = typer.Option(10.0, help="Minutes each of validation and test audio."),
    split: List[str] = typer.Option(["train", "validation", "test"], help="Splits to render (repeat)."),
    soundfonts: str = typer.Option("fluidr3,fluidr3mono,timgm6mb", help="Comma-separated soundfont names or .sf2/.sf3 paths."),
    midi_dir: Optional[Path] = typer.Option(None, help="Folder of MIDI files (default: the shared piano corpus)."),
    weights: str = typer.Option("corpus=0.55,music21=0.1,textures=0.35", help="Source mix."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives byte-identical data."),
    workers: int = typer.Option(2, help="Parallel render processes."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Render clean audio."),
    evaluation_only: bool = typer.Option(False, help="Allow the reserved MuseScore soundfont (never for training)."),
    shard_seconds: float = typer.Option(120.0, help="Audio per shard."),
) -> None:
    """Render synthetic piano audio with labels (FluidSynth + augmentation)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from pianonotes.synth.augment import NO_AUGMENT, AugmentConfig
    from pianonotes.synth.dataset import SynthConfig, synthesize

    try:
        w = {k.strip(): float(v) for k, v in (item.split("=") for item in weights.split(",") if item.strip())}
    except ValueError:
        raise fail(f"--weights '{weights}' should look like corpus=0.5,music21=0.1,textures=0.4")
    cfg = SynthConfig(hours=hours, eval_minutes=eval_minutes, splits=tuple(split),
                      soundfonts=tuple(s.strip() for s in soundfonts.split(",") if s.strip()),
                      midi_dir=str(midi_dir) if midi_dir else None, weights=w, seed=seed,
                      augment=NO_AUGMENT if no_augment else AugmentConfig(), evaluation_only=evaluation_only,
                      shard_seconds=shard_seconds)
    console = _console()
    with Progress(TextColumn("rendering"), BarColumn(), TextColumn("{task.completed}/{task.total} shards"),
                  TimeRemainingColumn(), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("render", total=None)

        def on_progress(res, done, total):
            progress.update(task, completed=done, total=total)

        try:
            manifest = synthesize(out, cfg, workers=workers, on_progress=on_progress)
        except PianonotesError as exc:
            raise fail(str(exc))
        except KeyboardInterrupt:
            raise fail("interrupted; run the same command again to resume", 130)
    for split_name, t in manifest.get("totals", {}).items():
        console.print(f"{split_name}: {t['shards']} shards, {t['hours']} h, {t['notes']} notes")
    console.print(f"dataset written to {out}")


# ----------------------------------------------------------------------------------------------- train
@app.command()
def train(
    data: Optional[Path] = typer.Option(None, help="Dataset folder made by `pianonotes data synth`."),
    msmd: Optional[str] = typer.Option(None, help="MSMD dataset folder (see README); 'download' fetches it."),
    arch: str = typer.Option("audionet", help="audionet | seed-mlp | linear"),
    epochs: float = typer.Option(10.0, help="Passes over the training audio."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many steps (overrides --epochs)."),
    batch_size: int = typer.Option(16, help="Windows per step (per process)."),
    window: int = typer.Option(200, help="Frames per training window."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default 1e-3 AdamW; 0.01 SGD for the seed's models)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    resume: Optional[Path] = typer.Option(None, help="Checkpoint (e.g. runs/x/last) to continue from."),
    out: Path = typer.Option(Path("runs/audionet"), help="Output folder for checkpoints and metrics.jsonl."),
    seed: int = typer.Option(0),
    save_every: int = typer.Option(500, help="Save a resumable checkpoint every N steps."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    limit_hours: Optional[float] = typer.Option(None, help="Use only this much training audio."),
    msmd_split: Optional[Path] = typer.Option(None, "--split", help="MSMD split YAML {train, valid, test}."),
    msmd_preset: Optional[str] = typer.Option(None, "--preset", help="MSMD preset, e.g. 'authors'."),
) -> None:
    """Train AudioNet (or the seed's baselines) on the CPU or GPUs; torchrun for several processes."""
    import os
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from pianonotes.nn.train import TrainConfig
    from pianonotes.nn.train import train as run_train

    msmd_opts = None
    if msmd is not None:
        msmd_opts = {"root": msmd, "split_file": str(msmd_split) if msmd_split else None, "preset": msmd_preset}
    cfg = TrainConfig(data=str(data) if data else None, out=str(out), arch=arch, epochs=epochs, max_steps=max_steps,
                      batch_size=batch_size, window=window, lr=lr, device=device, seed=seed,
                      save_every=save_every, workers=workers, limit_hours=limit_hours, msmd=msmd_opts)
    rank = int(os.environ.get("RANK", "0"))
    console = _console()
    show = console.is_terminal and rank == 0
    state = {"t0": time.time()}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                  disable=not show) as progress:
        task = progress.add_task("loading data", total=None, info="")

        def on_event(kind, info):
            if kind == "loading":
                progress.update(task, completed=info["done"], total=info["total"])
            elif kind == "start":
                progress.update(task, description=f"training {arch}", completed=info["step"],
                                total=info["total_steps"])
                if rank == 0:
                    console.print(f"training {arch} on {info['device']} x{info['world']}: {info['params']:,} "
                                  f"parameters, {info['train_hours']} h of audio, {info['total_steps']} steps")
            elif kind == "step":
                progress.update(task, completed=info["step"],
                                info=f"loss {info['loss']:.4f}  {info['frames_per_s']:.0f} frames/s")
                if not show and rank == 0 and info["step"] % 100 == 0:
                    console.print(f"step {info['step']}/{info['total_steps']} loss {info['loss']:.4f} "
                                  f"{info['frames_per_s']:.0f} frames/s")
            elif kind == "val" and rank == 0:
                console.print(f"step {info['step']}: validation note F1 {info.get('note_f1', 0):.3f}, "
                              f"frame F1 {info.get('frame_f1', 0):.3f}")
            elif kind == "save" and not show and rank == 0:
                console.print(f"saved {info['path']} (step {info['step']})")

        try:
            result = run_train(cfg, resume=str(resume) if resume else None, on_event=on_event)
        except PianonotesError as exc:
            raise fail(str(exc))
        except KeyboardInterrupt:
            if rank == 0:
                console.print(f"interrupted: saved {out / 'last'}; continue with --resume {out / 'last'}")
            raise typer.Exit(130)
    if rank == 0:
        console.print(f"done: {result['step']} steps; checkpoints in {result['out']} (best, last)")


# -------------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    data: List[Path] = typer.Argument(..., help="Dataset folder(s), or audio files with a .mid beside each."),
    model: Optional[Path] = typer.Option(None, help="Checkpoint (default: the shipped AudioNet)."),
    split: str = typer.Option("test", help="Dataset split to score."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write metrics JSON here (and a PNG beside it)."),
    device: str = typer.Option("auto"),
    onset_threshold: float = typer.Option(C.ONSET_THRESHOLD),
    frame_threshold: float = typer.Option(C.FRAME_THRESHOLD),
    min_note: float = typer.Option(C.MIN_NOTE_SECONDS, help="Minimum note length in seconds."),
) -> None:
    """Score a checkpoint: mir_eval note/frame F1, the seed's exact-frame accuracy, per-pitch F1."""
    from pianonotes.decode import DecodeOptions
    from pianonotes.evaluate import evaluate as run_eval

    try:
        opts = DecodeOptions(onset_threshold, frame_threshold, min_note)
        result = run_eval(model, data, split=split, device=device, options=opts, output=output)
    except PianonotesError as exc:
        raise fail(str(exc))
    from rich.table import Table

    t = Table(title=f"{result['model']} on {result['recordings']} recordings ({result['hours']:.2f} h)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in result["overall"].items():
        t.add_row(k, f"{v:.4f}")
    console = _console()
    console.print(t)
    if output:
        console.print(f"wrote {output}" + (f" and {result.get('plot')}" if result.get("plot") else ""))


def main() -> None:
    try:
        app()
    except PianonotesError as exc:  # pragma: no cover - commands catch their own
        _console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
