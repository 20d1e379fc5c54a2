"""From frame and onset probabilities to notes (Onsets-and-Frames style), offline or incrementally.

A note starts where a key's onset probability rises above ``onset_threshold`` and lasts while its
key-down (frame) probability, or its onset probability, stays above threshold; a new onset on a sounding
key ends the note and starts another. Notes shorter than ``min_note_seconds`` are dropped. Offline
decoding is the streaming decoder run over the whole array, so both always agree.

AudioNet v2 also gives a key-down probability (the key pressed, not held by the pedal) and a sustain-pedal
probability per frame: a note's ``key_offset`` is the first frame after its onset where the key-down
probability falls below ``key_threshold`` (never after the sounding end), and :func:`decode_pedal` turns
the pedal probability into intervals with hysteresis and a minimum length (:class:`StreamingPedal`
incrementally; the :class:`StreamingDecoder` runs one when it is given the pedal head and keeps the
intervals in ``pedals``). What a note's end means in the outputs, the key release or the key release
extended by those intervals, is chosen when they are written (``--note-length``,
:func:`pianonotes.notes.with_note_length`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.notes import Note, PedalEvent


#: Threshold overrides (:meth:`DecodeOptions.for_model`) that turn off every rule that waits for look-ahead
#: frames (frame-rise onsets, harmonic ghosts): ``listen --low-latency``.
NO_LOOKAHEAD = {"rise_onset": 0.0, "ghost_onset": 0.0}


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How probabilities become notes and pedal intervals; checked when made (one PianonotesError).

    The thresholds are probabilities in (0, 1) compared with the network's per-frame, per-key outputs
    ((T, 88) float32 at the model's frame rate; the pedal (T, 1)); the lengths are in seconds. A
    checkpoint's calibrated values are in its JSON's ``decode`` section: :meth:`for_model` (or
    :meth:`pianonotes.inference.ModelConfig.decode_options`) reads them.
    """

    #: Onset probability at or above which a note starts on a key.
    onset_threshold: float = constants.ONSET_THRESHOLD
    #: Frame (key sounding) probability at or above which a started note goes on sounding.
    frame_threshold: float = constants.FRAME_THRESHOLD
    #: Notes shorter than this (seconds, onset to sounding end) are dropped.
    min_note_seconds: float = constants.MIN_NOTE_SECONDS
    #: v2 models: the key-down probability below which the key counts as released (``Note.release``).
    key_threshold: float = 0.5
    #: v2 models: the sustain pedal is down from a frame whose pedal probability reaches ``pedal_on``
    #: until one falls below ``pedal_off`` (hysteresis; ``pedal_off <= pedal_on``).
    pedal_on: float = 0.6
    pedal_off: float = 0.4
    #: Pedal intervals shorter than this (seconds) are dropped.
    min_pedal_seconds: float = 0.1
    #: Frame-rise onsets (0: off): a note also starts on a frame whose onset probability is at least
    #: ``rise_onset`` (and not falling) where the key's frame probability stays below ``rise_before`` over
    #: the ``rise_frames`` frames before and reaches ``rise_frame`` within the ``rise_frames`` after: the
    #: key starts sounding but the onset head is unsure (soft notes, chords on real pianos). Decoding
    #: then waits ``rise_frames`` frames for that look-ahead.
    rise_onset: float = 0.0
    rise_before: float = 0.2
    rise_frame: float = 0.6
    rise_frames: int = 3
    #: Harmonic ghosts (0: off): an onset on a key whose onset probability peaks below ``ghost_onset``
    #: (over the frame before to the frame after) starts no note where a key an octave, a twelfth or two
    #: octaves below has an onset at least as probable within 2 frames and this key's frame probability,
    #: over the onset frame and the ``rise_frames`` after, averages below ``ghost_ratio`` times that
    #: lower key's: the upper partials of a struck note heard as a note of their own. It uses the same
    #: look-ahead as frame-rise onsets (``rise_frames`` frames).
    ghost_onset: float = 0.0
    ghost_ratio: float = 0.7

    def __post_init__(self):
        if not self.pedal_off <= self.pedal_on:
            raise PianonotesError(f"pedal off threshold {self.pedal_off} must not exceed the on threshold {self.pedal_on}")
        for name in ("onset_threshold", "frame_threshold", "key_threshold", "pedal_on", "pedal_off"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise PianonotesError(f"{name.replace('_', ' ')} must be between 0 and 1, got {v}")
        if not 0 <= self.min_note_seconds < float("inf"):  # NaN too
            raise PianonotesError(f"minimum note length must be >= 0 seconds, got {self.min_note_seconds}")
        if not 0.0 <= self.rise_onset < 1.0:  # NaN too
            raise PianonotesError(f"rise onset must be 0 (off) or between 0 and 1, got {self.rise_onset}")
        for name in ("rise_before", "rise_frame"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise PianonotesError(f"{name.replace('_', ' ')} must be between 0 and 1, got {getattr(self, name)}")
        if not (isinstance(self.rise_frames, int) and 1 <= self.rise_frames <= 25):
            raise PianonotesError(f"rise frames must be a whole number from 1 to 25, got {self.rise_frames}")
        if not 0.0 <= self.ghost_onset <= 1.0:  # NaN too
            raise PianonotesError(f"ghost onset must be 0 (off) or between 0 and 1, got {self.ghost_onset}")
        if not 0.0 < self.ghost_ratio < float("inf"):
            raise PianonotesError(f"ghost ratio must be above 0, got {self.ghost_ratio}")

    @property
    def lookahead_frames(self) -> int:
        """Frames that decoding waits for before a frame's notes are final (frame-rise onsets and
        harmonic ghosts look ahead; 0 without either)."""
        return self.rise_frames if self.rise_onset > 0 or self.ghost_onset > 0 else 0

    @classmethod
    def for_model(cls, decode: Mapping[str, Any] | None, *, onset_threshold: float | None = None,
                  frame_threshold: float | None = None, min_note_seconds: float | None = None,
                  rise_onset: float | None = None, ghost_onset: float | None = None) -> "DecodeOptions":
        """A model's calibrated thresholds (library defaults where it has none), with overrides (None
        keeps the model's; ``rise_onset=0`` turns frame-rise onsets off, ``ghost_onset=0`` the harmonic-ghost
        rule: both together, decoding's look-ahead).

        ``decode``: the model's ``decode`` mapping (field name to value): :attr:`ModelConfig.decode
        <pianonotes.inference.ModelConfig.decode>`, the checkpoint JSON's ``decode`` section as an
        activations file or a take records it; None: the library defaults. With a ``ModelConfig`` at
        hand, :meth:`~pianonotes.inference.ModelConfig.decode_options` says the same in one call.
        """
        if decode is not None and not isinstance(decode, Mapping):  # a damaged file
            raise PianonotesError(f"the model's decode thresholds are {decode!r:.60}, not names with numbers; "
                                  "re-download or retrain it")
        if decode is not None and isinstance(decode.get("decode"), Mapping):
            raise TypeError("for_model takes the decode mapping (ModelConfig.decode), not the whole checkpoint "
                            "config")
        d = decode or {}
        def pick(given, key, default):
            if given is not None:
                return given
            try:
                return float(d.get(key, default))
            except (TypeError, ValueError):
                raise PianonotesError(f"the checkpoint's decode.{key} is {d.get(key)!r}, not a number; "
                                      "re-download or retrain it") from None
        base = cls()
        return cls(pick(onset_threshold, "onset_threshold", constants.ONSET_THRESHOLD),
                   pick(frame_threshold, "frame_threshold", constants.FRAME_THRESHOLD),
                   pick(min_note_seconds, "min_note_seconds", constants.MIN_NOTE_SECONDS),
                   pick(None, "key_threshold", base.key_threshold), pick(None, "pedal_on", base.pedal_on),
                   pick(None, "pedal_off", base.pedal_off), pick(None, "min_pedal_seconds", base.min_pedal_seconds),
                   pick(rise_onset, "rise_onset", base.rise_onset), pick(None, "rise_before", base.rise_before),
                   pick(None, "rise_frame", base.rise_frame), int(pick(None, "rise_frames", base.rise_frames)),
                   pick(ghost_onset, "ghost_onset", base.ghost_onset), pick(None, "ghost_ratio", base.ghost_ratio))


class StreamingPedal:
    """Sustain-pedal intervals from pedal-down probabilities fed in chunks (see :func:`decode_pedal`):
    ``push`` returns the intervals that ended, ``flush`` the one still down at the end (a
    :class:`pianonotes.streaming.Stream`)."""

    def __init__(self, fps: float, options: DecodeOptions = DecodeOptions(), *, time_offset: float = 0.0):
        self.fps, self.opt, self.t0 = fps, options, time_offset
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.down_since: int | None = None  # frame where the open interval started

    def _event(self, start: int, end: int) -> list[PedalEvent]:
        if (end - start) / self.fps >= self.opt.min_pedal_seconds - 1e-9:
            return [PedalEvent(self.t0 + start / self.fps, self.t0 + end / self.fps)]
        return []

    def push(self, pedal: np.ndarray) -> list[PedalEvent]:
        """(n,) or (n, 1) probabilities for the next n frames."""
        p = np.asarray(pedal, np.float32).reshape(len(pedal), -1)[:, 0] if len(pedal) else np.zeros(0, np.float32)
        out: list[PedalEvent] = []
        for i, v in enumerate(p):
            if self.down_since is None and v >= self.opt.pedal_on:
                self.down_since = self.n + i
            elif self.down_since is not None and v < self.opt.pedal_off:
                out += self._event(self.down_since, self.n + i)
                self.down_since = None
        self.n += len(p)
        return out

    def flush(self) -> list[PedalEvent]:
        """End the pedal (if down) at the last frame consumed."""
        out = self._event(self.down_since, self.n) if self.down_since is not None else []
        self.down_since = None
        return out


class StreamingDecoder:
    """Feed probability frames in chunks; get finished notes as soon as they end (a
    :class:`pianonotes.streaming.Stream`: ``push(probs)`` with the network stream's output, ``flush()``,
    ``reset()``; ``concat(push(...)..., flush())``, sorted, equals :func:`decode` of the whole arrays).
    Given the pedal head (v2 models), it also collects the sustain-pedal intervals in :attr:`pedals`
    (finished ones; all of them after :meth:`flush`)."""

    def __init__(self, fps: float, options: DecodeOptions = DecodeOptions(), *, time_offset: float = 0.0):
        self.fps = fps
        self.opt = options
        self.t0 = time_offset
        self.reset()

    def reset(self) -> None:
        """Forget every frame pushed, the open notes and the pedal intervals."""
        self.n = 0  # frames consumed
        self.prev_on = np.zeros(constants.N_KEYS, bool)
        self.active_start = np.full(constants.N_KEYS, -1, np.int64)
        self.active_conf = np.zeros(constants.N_KEYS, np.float32)
        self.active_vel = np.zeros(constants.N_KEYS, np.float32)
        self._key_up = np.zeros((0, constants.N_KEYS), bool)  # key-down prob below threshold, from frame _key_from
        self._key_from = 0
        self._pedal = StreamingPedal(self.fps, self.opt, time_offset=self.t0)
        self.pedals: list[PedalEvent] = []
        self._held: dict[str, np.ndarray] | None = None  # frame-rise onsets: frames awaiting their look-ahead
        self._before = np.zeros((0, constants.N_KEYS), np.float32)  # frame probs of the frames before them
        self._prev_onset = np.zeros(constants.N_KEYS, np.float32)  # raw onset prob of the last frame decoded
        self._before_on = np.zeros((0, constants.N_KEYS), np.float32)  # raw onset probs of the frames before
        self._ghost_run = np.zeros(constants.N_KEYS, bool)  # keys whose onset run so far is a harmonic ghost

    @property
    def pedal_down(self) -> bool:
        """Whether the sustain pedal is down at the last frame consumed."""
        return self._pedal.down_since is not None

    def active(self) -> list[tuple[int, float, float]]:
        """Sounding keys now: (pitch, onset seconds, confidence)."""
        ks = np.nonzero(self.active_start >= 0)[0]
        return [(int(k) + constants.MIN_PITCH, self.t0 + self.active_start[k] / self.fps, float(self.active_conf[k]))
                for k in ks]

    def _note(self, k: int, a: int, b: int, conf: float, vel: float) -> Note | None:
        if (b - a) / self.fps < self.opt.min_note_seconds - 1e-9 or b <= a:
            return None
        v = int(np.clip(round(vel * 127), 1, 127)) if vel > 0 else constants.DEFAULT_VELOCITY
        key_off = None
        if len(self._key_up):
            lo, hi = a + 1 - self._key_from, b - self._key_from
            ups = np.nonzero(self._key_up[max(lo, 0):max(hi, 0), k])[0]
            r = (max(lo, 0) + int(ups[0]) + self._key_from) if len(ups) else b
            key_off = self.t0 + max(r, a + 1) / self.fps
        return Note(self.t0 + a / self.fps, self.t0 + b / self.fps, int(k) + constants.MIN_PITCH, v, key_offset=key_off,
                    confidence=round(float(conf), 4))

    def push(self, frame: np.ndarray | Mapping[str, np.ndarray], onset: np.ndarray | None = None,
             velocity: np.ndarray | None = None, key: np.ndarray | None = None,
             pedal: np.ndarray | None = None) -> list[Note]:
        """frame, onset, velocity and (v2 models) key: (n, 88) probabilities in [0, 1] for the next n
        frames; pedal (v2): (n, 1); or, as the only argument, a dict of them by head (the output of
        :class:`pianonotes.engine.NetworkStream`; other heads are ignored). Returns the notes that ended;
        pedal intervals go to :attr:`pedals`."""
        if isinstance(frame, Mapping):
            probs = frame
            frame, onset, velocity = probs["frame"], probs["onset"], probs.get("velocity")
            key, pedal = probs.get("key"), probs.get("pedal")
        elif onset is None:
            raise TypeError("StreamingDecoder.push needs the onset probabilities (or one dict of all heads)")
        n = len(frame)
        if pedal is not None and len(pedal):
            if len(pedal) != n:
                raise PianonotesError(f"the pedal head has {len(pedal)} frames, the frame head {n}")
            self.pedals += self._pedal.push(pedal)
        if n == 0:
            return []
        if self.opt.lookahead_frames:
            return self._push_rise({"frame": frame, "onset": onset, "velocity": velocity, "key": key}, final=False)
        return self._decode_frames(frame, onset, velocity, key)

    def _push_rise(self, new: dict | None, *, final: bool) -> list[Note]:
        """Decoding with look-ahead (frame-rise onsets, harmonic ghosts): add the new frames to the held
        ones, decode those whose look-ahead is complete (all of them when ``final``), hold the rest."""
        D = self.opt.rise_frames
        held = self._held
        if new is not None:
            new = {k: (None if v is None else np.asarray(v, np.float32)) for k, v in new.items()}
            held = new if held is None else {k: (None if held[k] is None or new[k] is None
                                                 else np.concatenate([held[k], new[k]])) for k in new}
        if held is None:
            return []
        n_ready = len(held["frame"]) if final else max(0, len(held["frame"]) - D)
        if n_ready == 0:
            self._held = held
            return []
        fr, on = held["frame"], held["onset"]
        ctx = np.concatenate([self._before, fr])  # frames before the held ones, then the held ones
        b0 = len(self._before)
        o = self.opt
        ready_on = on[:n_ready]
        boosted = ready_on
        if o.rise_onset > 0:
            before = np.zeros((n_ready, constants.N_KEYS), np.float32)
            after = np.zeros((n_ready, constants.N_KEYS), np.float32)
            for i in range(1, D + 1):
                lo = b0 - i  # index in ctx of the frame i before held frame 0
                if lo + n_ready > 0:  # (a negative end would wrap around)
                    src = ctx[max(lo, 0): lo + n_ready]
                    before[n_ready - len(src):] = np.maximum(before[n_ready - len(src):], src)
                ahead = fr[i: i + n_ready]
                after[: len(ahead)] = np.maximum(after[: len(ahead)], ahead)
            prev_on = np.vstack([self._prev_onset[None], on[: n_ready - 1]])
            rise = ((ready_on >= o.rise_onset) & (ready_on < o.onset_threshold) & (ready_on >= prev_on)
                    & (before < o.rise_before) & (after >= o.rise_frame))
            boosted = np.where(rise, np.float32(1.0), ready_on)
        if o.ghost_onset > 0:
            boosted = self._drop_ghosts(boosted, on, fr, n_ready)
        self._prev_onset = ready_on[-1].copy()
        self._before = ctx[: b0 + n_ready][-D:]
        self._before_on = np.concatenate([self._before_on, ready_on])[-2:]
        part = {k: (None if v is None else v[:n_ready]) for k, v in held.items()}
        rest = {k: (None if v is None else v[n_ready:]) for k, v in held.items()}
        self._held = rest if len(rest["frame"]) else None
        return self._decode_frames(part["frame"], boosted, part["velocity"], part["key"], conf=ready_on)

    def _drop_ghosts(self, boosted: np.ndarray, on: np.ndarray, fr: np.ndarray, n_ready: int) -> np.ndarray:
        """``boosted`` (the ready frames' onsets) with every harmonic ghost's onset run (see
        :attr:`DecodeOptions.ghost_onset`) set to 0; ``on``/``fr``: the held raw onset and frame
        probabilities, the ready frames first, then their look-ahead."""
        o = self.opt
        D = o.rise_frames
        above = boosted >= o.onset_threshold
        boosted = boosted.copy()
        # an onset run carried over from the last call that was a ghost stays one until it ends
        for k in np.nonzero(self._ghost_run)[0]:
            stop = np.nonzero(~above[:, k])[0]
            end = int(stop[0]) if len(stop) else n_ready
            boosted[:end, k] = 0.0
            above[:end, k] = False
            self._ghost_run[k] = end == n_ready
        prev = np.vstack([self.prev_on[None], above[:-1]])
        ts, ks = np.nonzero(above & ~prev)
        if len(ts) == 0:
            return boosted
        h = len(self._before_on)
        raw = np.concatenate([self._before_on, on])  # raw onsets; ready frame t is row t + h
        n_raw = len(raw)
        for t, k in zip(ts.tolist(), ks.tolist()):
            r = t + h
            peak = float(raw[max(r - 1, 0): min(r + 2, n_raw), k].max())
            if peak >= o.ghost_onset:
                continue
            mine = float(fr[t: t + D + 1, k].mean())
            ghost = False
            for iv in (12, 19, 24):
                q = k - iv
                if q < 0:
                    break
                if (raw[max(r - 2, 0): min(r + 1 + min(2, D), n_raw), q].max() >= peak
                        and mine < o.ghost_ratio * float(fr[t: t + D + 1, q].mean())):
                    ghost = True
                    break
            if ghost:
                stop = np.nonzero(~above[t:, k])[0]
                end = t + int(stop[0]) if len(stop) else n_ready
                boosted[t:end, k] = 0.0
                above[t:end, k] = False
                if end == n_ready:
                    self._ghost_run[k] = True
        return boosted

    def _decode_frames(self, frame: np.ndarray, onset: np.ndarray, velocity: np.ndarray | None,
                       key: np.ndarray | None, conf: np.ndarray | None = None) -> list[Note]:
        """Decode frames whose onsets are final (``onset``: frame-rise onsets boosted to 1); a note's
        confidence is the largest of ``conf`` (the network's own onset probabilities; default
        ``onset``) over its frames, so a frame-rise note keeps its low onset probability."""
        n = len(frame)
        if conf is None:
            conf = onset
        if key is not None:
            self._key_up = np.concatenate([self._key_up, np.asarray(key) < self.opt.key_threshold])
        o = self.opt
        on = onset >= o.onset_threshold
        keep = (frame >= o.frame_threshold) | on
        prev = np.vstack([self.prev_on[None], on[:-1]])
        edge = on & ~prev
        out: list[Note] = []
        busy = np.nonzero(edge.any(0) | (self.active_start >= 0))[0]
        for k in busy:
            edges = np.nonzero(edge[:, k])[0]
            offs = np.nonzero(~keep[:, k])[0]
            t = 0
            ei = 0
            while True:
                if self.active_start[k] >= 0:
                    # the active note ends at the next off frame or the next edge after t
                    nxt_off = offs[np.searchsorted(offs, t)] if np.searchsorted(offs, t) < len(offs) else None
                    nxt_edge = edges[ei] if ei < len(edges) and edges[ei] >= t else None
                    while nxt_edge is not None and nxt_edge < t:
                        ei += 1
                        nxt_edge = edges[ei] if ei < len(edges) else None
                    cands = [c for c in (nxt_off, nxt_edge) if c is not None]
                    if not cands:
                        a_local = max(0, self.active_start[k] - self.n)
                        self.active_conf[k] = max(self.active_conf[k], float(conf[a_local:, k].max()))
                        break
                    end = min(cands)
                    a_local = max(0, self.active_start[k] - self.n)
                    if end > a_local:
                        self.active_conf[k] = max(self.active_conf[k], float(conf[a_local:end, k].max()))
                    note = self._note(k, int(self.active_start[k]), self.n + int(end),
                                      float(self.active_conf[k]), float(self.active_vel[k]))
                    if note:
                        out.append(note)
                    self.active_start[k] = -1
                    t = int(end)
                    if nxt_edge is not None and end == nxt_edge:
                        self._start(k, int(end), conf, velocity)
                        ei += 1
                        t = int(end) + 1
                else:
                    while ei < len(edges) and edges[ei] < t:
                        ei += 1
                    if ei >= len(edges):
                        break
                    self._start(k, int(edges[ei]), conf, velocity)
                    t = int(edges[ei]) + 1
                    ei += 1
        self.prev_on = on[-1].copy()
        self.n += n
        if len(self._key_up):  # keep the key history only as far back as the oldest sounding note
            starts = self.active_start[self.active_start >= 0]
            keep_from = int(starts.min()) if len(starts) else self.n
            drop = keep_from - self._key_from
            if drop > 0:
                self._key_up = self._key_up[drop:]
                self._key_from = keep_from
        out.sort()
        return out

    def _start(self, k: int, t_local: int, conf: np.ndarray, velocity: np.ndarray | None) -> None:
        self.active_start[k] = self.n + t_local
        self.active_conf[k] = float(conf[t_local, k])
        self.active_vel[k] = float(velocity[t_local, k]) if velocity is not None else 0.0

    def flush(self) -> list[Note]:
        """End every sounding note (and the pedal, if down) at the last frame pushed."""
        self.pedals += self._pedal.flush()
        out = self._push_rise(None, final=True) if self.opt.lookahead_frames else []
        for k in np.nonzero(self.active_start >= 0)[0]:
            note = self._note(int(k), int(self.active_start[k]), self.n, float(self.active_conf[k]),
                              float(self.active_vel[k]))
            if note:
                out.append(note)
            self.active_start[k] = -1
        return sorted(out)


def decode(frame: np.ndarray, onset: np.ndarray, velocity: np.ndarray | None = None, *, fps: float,
           options: DecodeOptions = DecodeOptions(), key: np.ndarray | None = None) -> list[Note]:
    """Offline decoding of (T, 88) probability arrays into sorted notes (``key``: v2 key-down, optional)."""
    dec = StreamingDecoder(fps, options)
    notes = dec.push(np.asarray(frame), np.asarray(onset), None if velocity is None else np.asarray(velocity),
                     None if key is None else np.asarray(key))
    return sorted(notes + dec.flush())


def decode_pedal(pedal: np.ndarray, *, fps: float, options: DecodeOptions = DecodeOptions(),
                 time_offset: float = 0.0) -> list[PedalEvent]:
    """Sustain-pedal intervals from per-frame pedal-down probabilities (T,) or (T, 1): down once the
    probability reaches ``pedal_on``, up once it falls below ``pedal_off``; shorter than
    ``min_pedal_seconds`` dropped. Returns PedalEvents in seconds (:class:`StreamingPedal` over the
    whole array, so streaming and offline agree)."""
    stream = StreamingPedal(fps, options, time_offset=time_offset)
    return stream.push(pedal) + stream.flush()


@dataclasses.dataclass
class Activations:
    """The network's outputs for one recording: (T, 88) float arrays and the frame rate."""

    frame: np.ndarray
    onset: np.ndarray
    velocity: np.ndarray | None
    fps: float
    source: str = ""
    decode_defaults: dict = dataclasses.field(default_factory=dict)  # the model's calibrated thresholds
    extra: dict = dataclasses.field(default_factory=dict)  # v2 heads: "key" (T, 88), "pedal" (T, 1)

    def decode(self, options: DecodeOptions | None = None) -> list[Note]:
        options = options or DecodeOptions.for_model(self.decode_defaults)
        return decode(self.frame, self.onset, self.velocity, fps=self.fps, options=options, key=self.extra.get("key"))

    def decode_pedal(self, options: DecodeOptions | None = None) -> list[PedalEvent]:
        """The sustain-pedal intervals (empty without a pedal head: a v1 model)."""
        if "pedal" not in self.extra:
            return []
        options = options or DecodeOptions.for_model(self.decode_defaults)
        return decode_pedal(self.extra["pedal"], fps=self.fps, options=options)

    def save(self, path: str | os.PathLike) -> None:
        import io

        from pianonotes.fileio import write_bytes_atomic

        buf = io.BytesIO()
        arrays = {"frame": self.frame.astype(np.float16), "onset": self.onset.astype(np.float16),
                  "fps": np.array(self.fps), "source": np.array(self.source),
                  "decode_defaults": np.array(json.dumps(self.decode_defaults))}
        if self.velocity is not None:
            arrays["velocity"] = self.velocity.astype(np.float16)
        for k, v in self.extra.items():
            arrays[f"extra_{k}"] = np.asarray(v).astype(np.float16)
        np.savez_compressed(buf, **arrays)
        write_bytes_atomic(path, buf.getvalue())

    MAX_FRAMES = 1_000_000  # 5.5 hours at 50 fps: about 1 GB as float32; a longer claim is a damaged file

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Activations":
        """Read a ``--save-activations`` file, validating it before any large read: ``frame`` and
        ``onset`` (and ``velocity`` if present) of one shape (T, 88) with finite values, ``fps`` a
        positive number. Raises PianonotesError (never unpickles)."""
        import zipfile

        what = f"{path} is not a pianonotes activations file (a .npz written by --save-activations)"
        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise PianonotesError(f"{what}: it holds one bare array")
            with z:
                missing = [k for k in ("frame", "onset", "fps") if k not in z.files]
                if missing:
                    raise PianonotesError(f"{what}: no {' or '.join(repr(k) for k in missing)} array in it")
                names = [k for k in ("frame", "onset", "velocity") if k in z.files]
                shapes = {k: _npz_member_shape(z, k) for k in names}
                if shapes["frame"] is not None and (len(shapes["frame"]) != 2 or shapes["frame"][1] != constants.N_KEYS):
                    raise PianonotesError(f"{what}: 'frame' has shape {shapes['frame']}, expected (frames, {constants.N_KEYS})")
                for k in names:
                    if shapes[k] is not None and shapes[k] != shapes["frame"]:
                        raise PianonotesError(f"{what}: '{k}' has shape {shapes[k]}, 'frame' {shapes['frame']}")
                    if shapes[k] is not None and shapes[k][0] > cls.MAX_FRAMES:
                        raise PianonotesError(f"{what}: '{k}' claims {shapes[k][0]} frames (at most "
                                              f"{cls.MAX_FRAMES}); transcribe the recording again")
                arrays = {k: np.asarray(z[k]) for k in names}
                extra = {}
                for k, width in (("key", constants.N_KEYS), ("pedal", 1)):  # the v2 heads, when saved
                    if f"extra_{k}" in z.files:
                        want = (arrays["frame"].shape[0], width)
                        if _npz_member_shape(z, f"extra_{k}") != want:
                            raise PianonotesError(f"{what}: 'extra_{k}' does not have the shape {want}")
                        extra[k] = np.asarray(z[f"extra_{k}"])
                        if extra[k].dtype.kind not in "fiu" or not np.all(np.isfinite(extra[k])):
                            raise PianonotesError(f"{what}: 'extra_{k}' holds non-numbers, NaN or inf")
                fps = np.asarray(z["fps"])
                source = str(z["source"]) if "source" in z.files else ""
                defaults = str(z["decode_defaults"]) if "decode_defaults" in z.files else "{}"
        except PianonotesError:
            raise
        except FileNotFoundError as exc:
            raise PianonotesError(f"activations file {path} not found") from exc
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            detail = "" if "pickle" in str(exc) else f": {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            raise PianonotesError(f"{what}{detail}") from exc
        for k, a in arrays.items():
            if a.ndim != 2 or a.shape != arrays["frame"].shape or a.shape[1] != constants.N_KEYS:
                raise PianonotesError(f"{what}: '{k}' has shape {a.shape}, expected (frames, {constants.N_KEYS})")
            if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
                raise PianonotesError(f"{what}: '{k}' holds {'non-numbers' if a.dtype.kind not in 'fiu' else 'NaN or inf'}")
        if fps.shape != () or fps.dtype.kind not in "fiu" or not (0 < float(fps) <= 1000):
            raise PianonotesError(f"{what}: 'fps' is {fps.tolist()!r}, expected frames per second (e.g. 50)")
        try:
            decode_defaults = json.loads(defaults)
        except ValueError:
            decode_defaults = None
        if not isinstance(decode_defaults, dict):
            raise PianonotesError(f"{what}: 'decode_defaults' is not a JSON object")
        return cls(arrays["frame"].astype(np.float32), arrays["onset"].astype(np.float32),
                   arrays["velocity"].astype(np.float32) if "velocity" in arrays else None,
                   float(fps), source, decode_defaults, {k: v.astype(np.float32) for k, v in extra.items()})


def _npz_member_shape(z, name: str) -> tuple[int, ...] | None:
    """The shape an .npz member's header claims, read without loading the array (None if unreadable)."""
    try:
        with z.zip.open(f"{name}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(fh)
            return tuple(int(n) for n in shape)
    except Exception:  # unreadable header: the full read below reports it
        return None
