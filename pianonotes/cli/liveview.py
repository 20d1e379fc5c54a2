"""The terminal views of ``pianonotes listen``: a Rich Live screen, or one plain line per note event.

The screen (refreshed whenever the worker publishes, at least 20 times a second)::

    pianonotes listen · default (16 kHz) · audionet
     <piano roll of the last seconds, newest row at the bottom, one column per white key>
     <keyboard strip: black keys, white keys, octave labels C1..C8; sounding keys lit>
    sounding  C4 ▇▇▇▇▅ 93%  E4 ▇▇▇▂  71% ...
    level ▕████████░░░░░░░░▏ -23 dB  elapsed 01:23.4  notes 42
    latency 48 ms (+100 ms look-ahead)  dropped 0
    warning: the take journal in ... failed ... (only once the journal failed: the take goes on)
    q stop and save · Ctrl-C stop and save

The keyboard needs 52 columns plus a margin; narrower terminals get the text lines only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import IO, Callable, Iterator

from pianonotes import constants
from pianonotes.notes import pitch_name

BLACK_PC = {1, 3, 6, 8, 10}
WHITE_KEYS = [p for p in range(constants.MIN_PITCH, constants.MAX_PITCH + 1) if p % 12 not in BLACK_PC]  # 52
KEYBOARD_MIN_WIDTH = len(WHITE_KEYS) + 2  # margin + 52 keys + the label C8
ROLL_ROWS = 8
BAR = " ▁▂▃▄▅▆▇█"
KEYS_HELP = "q stop and save · Ctrl-C stop and save"


# ------------------------------------------------------------------------------------ key and spelling
_LETTERS = "CDEFGAB"
_NATURAL = (0, 2, 4, 5, 7, 9, 11)
_MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
_FIFTHS_MAJOR = (0, -5, 2, -3, 4, -1, 6, 1, -4, 3, -2, 5)  # key signature (sharps > 0) by major tonic
_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_NEUTRAL = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def spelling_table(tonic: int, mode: str) -> list[str]:
    """Pitch class -> note name in the key (``mode`` "major" or "minor"), by the score's rule
    (:func:`pianonotes.export.score._spelling_table`): the scale's own spelling, plus the raised leading
    tone in minor; other black keys with flats in flat keys and sharps in sharp keys (C major / A minor:
    C#, Eb, F#, G#, Bb)."""
    name = (_MAJOR_TONICS if mode == "major" else _MINOR_TONICS)[tonic % 12]
    sharps = _FIFTHS_MAJOR[tonic % 12] if mode == "major" else _FIFTHS_MAJOR[(tonic + 3) % 12]
    table = list(_SHARPS if sharps > 0 else _FLATS if sharps < 0 else _NEUTRAL)
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10, 11)
    li = _LETTERS.index(name[0])
    for deg, step in enumerate(steps):
        letter = _LETTERS[(li + min(deg, 6)) % 7]
        pc = (tonic + step) % 12
        alter = (pc - _NATURAL[_LETTERS.index(letter)] + 6) % 12 - 6
        table[pc] = letter + ("#" * alter if alter > 0 else "b" * -alter)
    return table


class KeyTracker:
    """A running key estimate from the notes heard so far (each weighted by its length, up to 4 s):
    the key the score would choose for that pitch-class histogram
    (:func:`pianonotes.export.keys.best_key`, four key profiles). ``name(pitch)``
    spells a note in that key once ``min_notes`` notes are in, with sharps until then."""

    def __init__(self, min_notes: int = 8):
        self.hist = [0.0] * 12
        self.count = 0
        self.min_notes = min_notes
        self._last = -1.0
        self._table: list[str] | None = None

    def add(self, pitch: int, weight: float = 1.0) -> None:
        self.hist[pitch % 12] += max(weight, 0.05)
        self.count += 1
        self._table = None

    def update(self, notes) -> None:
        """Add the notes (with ``onset``, ``offset``, ``pitch``) that start after the last one added."""
        new = [n for n in notes if n.onset > self._last]
        for n in new:
            self.add(n.pitch, min(n.offset - n.onset, 4.0))
        if new:
            self._last = max(n.onset for n in new)

    def key(self) -> tuple[int, str] | None:
        if self.count < self.min_notes:
            return None
        from pianonotes.export.keys import best_key

        k = best_key(self.hist)
        return k.tonic, k.mode

    def name(self, pitch: int) -> str:
        if self._table is None:
            k = self.key()
            self._table = spelling_table(*k) if k is not None else list(_SHARPS)
        return f"{self._table[pitch % 12]}{pitch // 12 - 1}"


def white_column(pitch: int) -> int:
    """Column of a key on the strip: a white key's own column; a black key shares the white key below."""
    if pitch % 12 in BLACK_PC:
        pitch -= 1
    return WHITE_KEYS.index(pitch)


_COLUMN = {p: white_column(p) for p in range(constants.MIN_PITCH, constants.MAX_PITCH + 1)}


def _bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` with eighth-block precision."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    s = "█" * full + (("▏▎▍▌▋▊▉"[part - 1]) if part and full < width else "")
    return s + " " * (width - len(s))


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m):02d}:{s:04.1f}"


def _vbar(fraction: float, width: int = 5) -> str:
    """Confidence bar: full blocks, last cell with eighth precision."""
    return _bar(fraction, width).replace(" ", "·")


class LiveView:
    """Builds the screen for a :class:`pianonotes.live.Snapshot`; pure (no I/O), easy to test."""

    def __init__(self, *, title: str, lookahead_ms: float | None = None, roll_seconds: float = constants.ROLL_SECONDS,
                 roll_rows: int = ROLL_ROWS):
        self.title = title
        self.lookahead_ms = lookahead_ms
        self.roll_seconds = roll_seconds
        self.roll_rows = roll_rows
        self.keys = KeyTracker()

    def render(self, snap, width: int):
        from rich.console import Group
        from rich.text import Text

        self.keys.update(snap.recent)
        title = Text(f"pianonotes listen · {self.title}", style="bold", no_wrap=True, overflow="ellipsis")
        lines: list = [title]
        if width >= KEYBOARD_MIN_WIDTH:
            lines += self._roll(snap)
            lines += self._keyboard(snap)
        lines.append(self._sounding(snap, width))
        lines += self._status(snap, width)
        if getattr(snap, "warning", None):  # wraps: the reason is at the end of the line
            lines.append(Text(f"warning: {snap.warning}", style="bold yellow"))
        lines.append(Text(KEYS_HELP, style="dim", no_wrap=True, overflow="ellipsis"))
        return Group(*lines)

    # ---- parts
    def _roll(self, snap) -> list:
        from rich.text import Text

        rows = self.roll_rows
        dt = self.roll_seconds / rows
        now = snap.elapsed
        spans = [(n.onset, n.offset, n.pitch, n.velocity) for n in snap.recent]
        spans += [(onset, now + 1e-9, pitch, 100) for pitch, onset, _ in snap.active]
        out = []
        for r in range(rows):
            t0 = now - (rows - r) * dt
            t1 = t0 + dt
            cells = [" "] * len(WHITE_KEYS)
            for a, b, p, _ in spans:
                if a < t1 and b > t0:
                    c = _COLUMN[p]
                    cells[c] = "▐" if p % 12 in BLACK_PC and cells[c] in (" ", "▐") else "█"
            text = Text(" ", no_wrap=True)
            text.append("".join(cells), style="green")
            out.append(text)
        return out

    def _keyboard(self, snap) -> list:
        from rich.text import Text

        lit = {p for p, _, _ in snap.active}
        black = Text(" ", no_wrap=True)
        white = Text(" ", no_wrap=True)
        labels = [" "] * (len(WHITE_KEYS) + 2)
        for i, p in enumerate(WHITE_KEYS):
            b = p + 1
            if b <= constants.MAX_PITCH and b % 12 in BLACK_PC:
                black.append("▐", style="bold magenta" if b in lit else "grey35")
            else:
                black.append(" ")
            white.append("█" if p in lit else "▇", style="bold cyan" if p in lit else "grey82")
            if p % 12 == 0:
                name = pitch_name(p)
                for j, ch in enumerate(name):
                    if i + 1 + j < len(labels):
                        labels[i + 1 + j] = ch
        return [black, white, Text("".join(labels), style="dim", no_wrap=True)]

    def _sounding(self, snap, width: int):
        """Sounding notes with confidence bars; without bars when narrow; "+N more" when still too many."""
        from rich.text import Text

        head = "sounding "
        text = Text(head, style="bold", no_wrap=True, overflow="ellipsis")
        active = sorted(snap.active)
        if not active:
            text.append("-", style="dim")
            return text
        full = 4 + 6 + 5  # "C#4 " + bar + " " + " 93% "
        compact = 4 + 5
        bars = len(head) + full * len(active) <= width
        item_len = full if bars else compact
        used = len(head)
        for i, (pitch, _, conf) in enumerate(active):
            reserve = 0 if i == len(active) - 1 else 9  # room for "+NN more"
            if used + item_len + reserve > width:
                text.append(f"+{len(active) - i} more", style="dim")
                break
            text.append(f"{self.keys.name(pitch):<4}", style="bold cyan")
            if bars:
                text.append(_vbar(conf, 5) + " ", style="yellow")
            text.append(f"{int(round(conf * 100)):3d}% ")
            used += item_len
        return text

    def _status(self, snap, width: int) -> list:
        from rich.text import Text

        level = min(max((snap.level_db + 60.0) / 60.0, 0.0), 1.0)  # -60 dBFS .. 0 dBFS
        meter_w = 16 if width >= 60 else 8
        style = "red" if snap.peak >= 0.99 else "yellow" if snap.level_db > -6 else "green"
        lvl = Text("level ▕", no_wrap=True)
        lvl.append(_bar(level, meter_w), style=style)
        lvl.append(f"▏{snap.level_db:4.0f} dB" if snap.level_db > -119 else "▏ -inf dB")
        elapsed = Text(f"elapsed {_clock(snap.elapsed)}", no_wrap=True)
        notes = Text(f"notes {snap.n_notes}", no_wrap=True)
        lat = "-" if snap.latency_ms is None else f"{snap.latency_ms:.0f} ms"
        if self.lookahead_ms is not None:
            lat += f" (+{self.lookahead_ms:.0f} ms look-ahead)"
        latency = Text(f"latency {lat}", no_wrap=True)
        dropped = Text(f"dropped {snap.dropped}", style="bold red" if snap.dropped else "", no_wrap=True)
        if width >= 60:
            line1 = Text("  ").join([lvl, elapsed, notes])
            line2 = Text("  ").join([latency, dropped])
            for t in (line1, line2):
                t.no_wrap, t.overflow = True, "ellipsis"
            return [line1, line2]
        return [t for t in (lvl, elapsed, notes, latency, dropped)]


# ----------------------------------------------------------------------------------------- key input
@contextlib.contextmanager
def key_reader(on_key, stream: IO | None = None) -> Iterator[None]:
    """Call ``on_key(char)`` for each key typed on a terminal stdin (cbreak mode, restored after).
    Does nothing when stdin is not a terminal."""
    stream = stream if stream is not None else sys.stdin
    try:
        fd = stream.fileno()
        is_tty = os.isatty(fd)
    except (AttributeError, OSError, ValueError):
        is_tty = False
    if not is_tty:
        yield
        return
    import select
    import termios
    import tty

    old = termios.tcgetattr(fd)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    ch = os.read(fd, 32).decode("utf-8", "ignore")
                    for c in ch:
                        on_key(c)
            except (OSError, ValueError):
                return

    tty.setcbreak(fd)
    thread = threading.Thread(target=run, name="pianonotes-keys", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=0.5)
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def run_screen(session, console, view: LiveView, *, refresh_seconds: float = constants.LIVE_UPDATE_SECONDS) -> None:
    """Show the Rich Live screen until the session ends; q stops it."""
    from rich.live import Live

    def on_key(c: str) -> None:
        if c in ("q", "Q"):
            session.stop()

    with key_reader(on_key), Live(view.render(session.snapshot(), console.width), console=console,
                                  auto_refresh=False, transient=False, redirect_stdout=False,
                                  redirect_stderr=False) as live:
        while not session.done:
            session.wait_update(refresh_seconds)
            live.update(view.render(session.snapshot(), console.width), refresh=True)
            session.mark_shown()
        live.update(view.render(session.snapshot(), console.width), refresh=True)


def format_event(ev, keys: KeyTracker | None = None) -> str:
    """One plain line per note start: time (s), note (spelled in the key so far with ``keys``),
    velocity, confidence."""
    name = keys.name(ev.pitch) if keys is not None else pitch_name(ev.pitch)
    return (f"{ev.time:9.3f}  {name:<4} velocity {ev.velocity:3d}  "
            f"confidence {ev.confidence:.2f}")


def run_plain(session, out: IO, *, refresh_seconds: float = constants.LIVE_UPDATE_SECONDS,
              warn: Callable[[str], None] | None = None) -> None:
    """Print one line per note event until the session ends; ``warn(text)`` once for each new warning of
    the session's snapshots (a failed journal), as soon as the worker publishes it."""
    warned: set[str] = set()

    def on_key(c: str) -> None:
        if c in ("q", "Q"):
            session.stop()

    keys = KeyTracker()
    with key_reader(on_key):
        while True:
            finished = session.done
            session.wait_update(refresh_seconds)
            events = session.events()
            for ev in events:
                keys.add(ev.pitch)
                out.write(format_event(ev, keys) + "\n")
            if events:
                out.flush()
            session.mark_shown()
            warning = getattr(session.snapshot(), "warning", None)
            if warning and warning not in warned and warn is not None:
                warned.add(warning)
                warn(warning)
            if finished:
                break
