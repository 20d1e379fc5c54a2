"""``pianonotes devices``, ``pianonotes listen`` (live transcription from a microphone, or a file) and
``pianonotes recover`` (a take rebuilt from its journal).

``register(app)`` adds the three commands to the main Typer app; registering twice is harmless. Only this
layer prints or exits. The network runs on ONNX Runtime (torch only for a checkpoint without an ONNX
export); ``devices`` imports neither.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from pianonotes import constants
from pianonotes.cli.console import ExportDisplay, console, fail
from pianonotes.errors import PianonotesError
from pianonotes.notes import NOTE_LENGTH_HELP

# The score options `listen` and `recover` share (as `transcribe`'s, for the score and the MIDI of a take).
BPM_HELP = "Constant tempo of the score and MIDI in quarter notes per minute (default: tracked, following rubato)."
TIME_SIGNATURE_HELP = "Meter of the score and MIDI, e.g. 3/4 or 6/8 (default: estimated)."


_console = console
_fail = fail


def devices() -> None:
    """List audio input devices (index, name, channels, default rate; * marks the default)."""
    from pianonotes.live.devices import list_input_devices

    try:
        devs = list_input_devices()
    except PianonotesError as exc:
        raise _fail(str(exc))
    if not devs:
        raise _fail("no audio input device found; connect a microphone (or check that this user may use the "
                    "sound card)")
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col, just in (("", "left"), ("index", "right"), ("name", "left"), ("channels", "right"),
                      ("default rate", "right"), ("host API", "left")):
        t.add_column(col, justify=just)
    for d in devs:
        t.add_row("*" if d.is_default else "", str(d.index), d.name, str(d.channels),
                  f"{d.default_samplerate:g} Hz", d.hostapi)
    _console().print(t)


COMPUTE_DEVICES = ("auto", "cpu", "cuda")
LIVE_DEVICE_HELP = ("Compute device: auto | cpu | cuda (default cpu: a take's 50 ms steps run on one CPU thread; "
                    "the microphone is --input-device).")
RECOVER_HINT = "`pianonotes listen --recover` is now `pianonotes recover`; use that"


def _check_compute_device(device: str) -> None:
    """``--device`` is the compute device, as in ``transcribe``; a microphone given there is one clear line."""
    if device in COMPUTE_DEVICES or device.startswith("cuda:"):
        return
    raise PianonotesError(f"--device {device} is not a compute device ({', '.join(COMPUTE_DEVICES)}); choose "
                          f"the microphone with --input-device {device} (see `pianonotes devices`)")


def _check_score_options(bpm, time_signature, note_length, rhythm="fine") -> dict:
    """The score options of ``listen`` and ``recover``, checked before any work; returns them by name."""
    from pianonotes.export import parse_meter
    from pianonotes.notes import check_note_length, rhythm_grid

    if time_signature is not None:
        parse_meter(time_signature)
    if bpm is not None and not 20 <= bpm <= 400:
        raise PianonotesError("--bpm must be between 20 and 400")
    check_note_length(note_length)
    rhythm_grid(rhythm)
    return {"bpm": bpm, "time_signature": time_signature, "note_length": note_length, "rhythm": rhythm}


def listen(
    ctx: typer.Context,
    input_device: Optional[str] = typer.Option(None, "--input-device", help="Input device: index or part of its "
                                               "name (see `pianonotes devices`; default: the system default)."),
    device: str = typer.Option("cpu", "--device", help=LIVE_DEVICE_HELP),
    samplerate: Optional[int] = typer.Option(None, "--samplerate", help="Capture rate in Hz (default: the "
                                             "model's rate if the device takes it, else the device's; with "
                                             "--record the device's own rate)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Checkpoint (default: the shipped AudioNet)."),
    output: List[Path] = typer.Option([], "-o", "--output", help="Write the take here when it ends: .mid, "
                                      ".musicxml, .mxl, .pdf, .svg, .png, .csv, .json (repeat for several)."),
    record: Optional[Path] = typer.Option(None, "--record", help="Also save the audio (.wav, .flac, .ogg) at the "
                                         "device's (or --input file's) own sample rate."),
    plain: bool = typer.Option(False, "--plain", help="One line per note event instead of the live screen."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="Play this audio file through the live "
                                              "pipeline instead of the microphone (real-time pace)."),
    fast: bool = typer.Option(False, "--fast", help="With --input: as fast as possible."),
    duration: Optional[float] = typer.Option(None, "--duration",
                                             help="Stop after this many seconds of audio."),
    recover_take: bool = typer.Option(False, "--recover", hidden=True, help="Old spelling of `pianonotes "
                                      "recover [TAKE]` (kept as an alias)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    onset_threshold: Optional[float] = typer.Option(None, help="Onset probability that starts a note "
                                                    f"(default: the model's, else {constants.ONSET_THRESHOLD})."),
    frame_threshold: Optional[float] = typer.Option(None, help="Key-down probability that sustains a note "
                                                    f"(default: the model's, else {constants.FRAME_THRESHOLD})."),
    min_note: Optional[float] = typer.Option(None, help="Shortest note kept, in seconds "
                                             f"(default: the model's, else {constants.MIN_NOTE_SECONDS})."),
    bpm: Optional[float] = typer.Option(None, "--bpm", help=BPM_HELP),
    time_signature: Optional[str] = typer.Option(None, "--time-signature", help=TIME_SIGNATURE_HELP),
    note_length: str = typer.Option("key", "--note-length", metavar="key|sounding", help=NOTE_LENGTH_HELP),
    rhythm: str = typer.Option("fine", "--rhythm", metavar="fine|16ths", help=constants.RHYTHM_HELP),
    low_latency: bool = typer.Option(False, "--low-latency", help="Show notes about 60 ms sooner: no frame-rise "
                                     "onsets and no harmonic-ghost check (the model's decoding waits 3 frames for "
                                     "them), so the take finds fewer soft notes and more octave ghosts."),
) -> None:
    """Transcribe live from the microphone, with a keyboard, piano roll and level meter on screen.

    q, Ctrl-C or SIGTERM end the take and write it to every --output. The audio and notes are journaled
    as you play: `pianonotes recover` rebuilds a take after a crash.
    """
    from pianonotes.decode import NO_LOOKAHEAD

    thresholds = {"onset_threshold": onset_threshold, "frame_threshold": frame_threshold,
                  "min_note_seconds": min_note, **(NO_LOOKAHEAD if low_latency else {})}
    # a take folder is only for the old `listen --recover [TAKE]` (extra arguments: none in the usage line)
    if len(ctx.args) > 1 or (ctx.args and not recover_take):
        arg = " ".join(ctx.args)
        raise _fail(f"unexpected argument '{arg}': to rebuild a take, run `pianonotes recover {arg}`")
    take_dir = Path(ctx.args[0]) if ctx.args else None
    try:  # checked before the take starts
        _check_compute_device(device)
        score = _check_score_options(bpm, time_signature, note_length, rhythm)
    except PianonotesError as exc:
        raise _fail(str(exc))
    if recover_take:  # the old spelling: said once, then done as `pianonotes recover` does it
        _console(stderr=True).print(f"note: {RECOVER_HINT}", soft_wrap=True, markup=False)
        _recover(take_dir, model, output, overwrite, thresholds, score, device=device)
        return
    if fast and input_file is None:
        raise _fail("--fast only applies to --input FILE")
    if duration is not None and not 0 < duration < float("inf"):  # NaN and inf too
        raise _fail("--duration must be a positive number of seconds")
    if samplerate is not None and not 1000 <= samplerate <= 768000:
        raise _fail(f"--samplerate {samplerate}: give a capture rate in Hz between 1000 and 768000")
    named = [Path(o).resolve() for o in output or []]
    if len(set(named)) < len(named):
        twice = next(o for o in named if named.count(o) > 1)
        raise _fail(f"{twice} is named twice as an output; give each output its own name")
    _listen(input_device, samplerate, model, output, record, plain, input_file, fast, duration, overwrite,
            thresholds, score, device=device)


def recover_command(
    take: Optional[Path] = typer.Argument(None, help="The take's journal folder (default: the latest take in "
                                          "the cache's takes/ folder)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Checkpoint to re-transcribe the journal audio "
                                         "with (default: the one the take used)."),
    output: List[Path] = typer.Option([], "-o", "--output", help="Write the take here: .mid, .musicxml, .mxl, "
                                      ".pdf, .svg, .png, .csv, .json (repeat for several; default: the take's "
                                      "own outputs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    device: str = typer.Option("cpu", "--device", help="Compute device: auto | cpu | cuda."),
    onset_threshold: Optional[float] = typer.Option(None, help="Onset probability that starts a note "
                                                    "(default: the take's)."),
    frame_threshold: Optional[float] = typer.Option(None, help="Key-down probability that sustains a note "
                                                    "(default: the take's)."),
    min_note: Optional[float] = typer.Option(None, help="Shortest note kept, in seconds (default: the take's)."),
    bpm: Optional[float] = typer.Option(None, "--bpm", help=BPM_HELP),
    time_signature: Optional[str] = typer.Option(None, "--time-signature", help=TIME_SIGNATURE_HELP),
    note_length: str = typer.Option("key", "--note-length", metavar="key|sounding", help=NOTE_LENGTH_HELP),
    rhythm: str = typer.Option("fine", "--rhythm", metavar="fine|16ths", help=constants.RHYTHM_HELP),
) -> None:
    """Rebuild the outputs of an interrupted take (`listen` or `serve`) from its journal, then exit.

    The journal's audio is transcribed again with the take's model and thresholds (the notes the take
    would have given); without audio or a model, the journaled notes are used.
    """
    thresholds = {"onset_threshold": onset_threshold, "frame_threshold": frame_threshold,
                  "min_note_seconds": min_note}
    try:
        _check_compute_device(device)
        score = _check_score_options(bpm, time_signature, note_length, rhythm)
    except PianonotesError as exc:
        raise _fail(str(exc))
    _recover(take, model, output, overwrite, thresholds, score, device=device)


def _recover(take_dir, model, output, overwrite, thresholds, score=None, *, device: str = "cpu") -> None:
    from pianonotes.live.journal import latest_take
    from pianonotes.live.outputs import check_outputs, check_record, copy_recording, write_outputs
    from pianonotes.live.recovery import mark_recovered, recover, take_meta

    console = _console()
    try:
        folder = Path(take_dir) if take_dir is not None else latest_take()
        rec = recover(folder, model=model, device=device, **thresholds)
        if output:
            outputs = check_outputs(output, overwrite=overwrite)
        else:  # the take's own outputs: a crashed take never wrote them, so a file there is another one's
            outputs = check_outputs(rec.outputs or [folder / "take.mid"], overwrite=overwrite)
        record = check_record(rec.record, overwrite=overwrite) if rec.record else None
        with ExportDisplay(console, outputs[0].name, enabled=console.is_terminal) as shown:
            written = write_outputs(rec.notes, outputs, title=outputs[0].stem, pedals=rec.pedals,
                                    progress=shown.update, **(score or {}))
        if record is not None:
            written.append(copy_recording(folder, record, int(take_meta(folder).get("sample_rate", constants.SAMPLE_RATE))))
        unmarked = mark_recovered(folder, written)
    except PianonotesError as exc:
        raise _fail(str(exc))
    how = "re-transcribed its audio" if rec.method == "audio" else "from its note journal"
    console.print(f"recovered {len(rec.notes)} notes ({rec.seconds:.1f} s, {how}) from {folder}")
    if unmarked:
        from rich.markup import escape

        _console(stderr=True).print(f"warning: {escape(unmarked)}", soft_wrap=True)
    for p in written:
        console.print(f"wrote {p}")


def _listen(input_device, samplerate, model, output, record, plain, input_file, fast, duration, overwrite,
            thresholds, score=None, *, device: str = "cpu") -> None:
    from pianonotes.live.devices import choose_samplerate, resolve_device
    from pianonotes.live.journal import Journal
    from pianonotes.live.outputs import check_outputs, check_record, copy_recording, write_outputs
    from pianonotes.live.session import LiveSession, percentile
    from pianonotes.live.sources import FileSource, MicrophoneSource

    out_console = _console()
    err_console = _console(stderr=True)
    use_plain = plain or not out_console.is_terminal
    msg = err_console if use_plain else out_console
    msg.soft_wrap = True
    try:
        outputs = check_outputs(output, overwrite=overwrite)
        record_path = check_record(record, overwrite=overwrite)
        from pianonotes.nn import checkpoint
        from pianonotes.transcribe import Transcriber

        cfg_path, _ = checkpoint.resolve(model)
        # one thread, no spinning: 50 ms steps of a few frames each; the rest of the CPU is the capture's
        transcriber = Transcriber.from_checkpoint(cfg_path, device=device, threads=1, overrides=thresholds)
        options = transcriber.options
        engine_rate = int(transcriber.frontend.sample_rate)
        if input_file is not None:
            from pianonotes.audio import audio_info

            # with --record the file plays at its own rate, as a device delivers its audio (the network
            # still gets it resampled); without, at the model's rate, exactly as `transcribe` reads it
            source = FileSource(input_file, audio_info(input_file)[0] if record_path else engine_rate, fast=fast)
        else:
            dev = resolve_device(input_device)
            # with --record the device's own rate comes first: the recording keeps it
            native = int(dev.default_samplerate) if record_path and dev.default_samplerate > 0 else engine_rate
            rate = choose_samplerate(dev, samplerate, native)
            source = MicrophoneSource(dev, rate)
        engine = transcriber.engine()
        meta = {"model": str(cfg_path), "decode": dataclasses.asdict(options),  # all of it: recover decodes alike
                "outputs": [str(p.resolve()) for p in outputs],
                "record": str(record_path.resolve()) if record_path else None, "source": source.label}
        # --record: the journal keeps the audio at the source's rate (the recording is copied from it;
        # --recover resamples it for the network), else at the engine's
        journal = Journal(None, source.samplerate if record_path else engine.sample_rate, meta)
        session = LiveSession(engine, source, journal=journal, max_seconds=duration)
    except PianonotesError as exc:
        raise _fail(str(exc))
    except KeyboardInterrupt:
        raise _fail("interrupted before the take started", 130)
    try:
        session.start()
    except PianonotesError as exc:
        journal.close(status="failed")
        import shutil

        shutil.rmtree(journal.folder, ignore_errors=True)
        raise _fail(str(exc))

    def on_signal(signum, frame) -> None:
        session.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    lookahead_ms = 1000.0 * float(transcriber.config.lookahead_seconds)
    try:
        if use_plain:
            msg.print(f"listening to {source.label}; q or Ctrl-C stops and saves")
            from pianonotes.cli.liveview import run_plain

            from rich.markup import escape

            # a failed journal is said as it happens (the summary below says what it cost)
            run_plain(session, sys.stdout, warn=lambda w: msg.print(f"warning: {escape(w)}"))
        else:
            from pianonotes.cli.liveview import LiveView, run_screen

            view = LiveView(title=f"{source.label} · {Path(str(cfg_path)).stem}", lookahead_ms=lookahead_ms)
            run_screen(session, out_console, view)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    result = session.finish()
    targets = outputs or [journal.folder / "take.mid"]
    try:
        with ExportDisplay(out_console, targets[0].name, enabled=out_console.is_terminal) as shown:
            written = write_outputs(result.notes, targets, title=targets[0].stem,
                                    pedals=list(session.engine.decoder.pedals), progress=shown.update,
                                    **(score or {}))
        if record_path is not None:
            written.append(copy_recording(journal, record_path, journal.sample_rate))
        journal.update_meta(status="complete", written=[str(p) for p in written])
    except PianonotesError as exc:
        raise _fail(f"{exc}; the take is kept in {journal.folder}: "
                    f"pianonotes recover {journal.folder}"
                    + (f" (its journal failed after {journal.samples / journal.sample_rate:.1f} s)"
                       if journal.failed else ""))
    except KeyboardInterrupt:
        raise _fail(f"interrupted while saving; the take is kept in {journal.folder}: "
                    f"pianonotes recover {journal.folder}", 130)
    mins, secs = divmod(result.seconds, 60)
    msg.print(f"take: {len(result.notes)} notes in {int(mins)}:{secs:04.1f}"
              + (f", {result.dropped} audio blocks dropped" if result.dropped else ""))
    if result.latencies_ms and not fast:
        p50, p95 = percentile(result.latencies_ms, 50), percentile(result.latencies_ms, 95)
        msg.print(f"latency to screen: median {p50:.0f} ms, p95 {p95:.0f} ms "
                  f"(+{lookahead_ms:.0f} ms look-ahead)")
    if journal.warning():
        from rich.markup import escape

        msg.print(f"warning: {escape(journal.warning())}")
    for p in written:
        msg.print(f"wrote {p}")
    msg.print(f"journal: {journal.folder}")
    if transcriber.notice():
        from rich.markup import escape

        msg.print(f"hint: {escape(transcriber.notice())}")
    if result.error:
        raise _fail(f"{result.error}; the take so far is saved")


def register(app: typer.Typer) -> None:
    """Add ``devices``, ``listen`` and ``recover`` to ``app`` (a no-op for those already there)."""
    names = {c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands}
    if "devices" not in names:
        app.command("devices")(devices)
    if "listen" not in names:  # extra arguments: the take folder of the old `listen --recover TAKE`
        app.command("listen", context_settings={"allow_extra_args": True})(listen)
    if "recover" not in names:
        app.command("recover")(recover_command)
