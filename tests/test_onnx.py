"""ONNX export and ONNX Runtime inference: parity with PyTorch, strict loading, torch-free commands,
worker processes, and the ship tool's export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.nn import checkpoint as ckpt
from pianonotes.notes import read_midi
from pianonotes.training.onnx import export_onnx
from pianonotes.transcribe import Transcriber

from conftest import ROOT, assert_one_line_error, run_cli, sine

EXAMPLE = ROOT / "pianonotes" / "examples" / "twohands.flac"
shipped = pytest.mark.skipif(not ckpt.default_checkpoint().with_suffix(".onnx").exists(),
                             reason="no shipped ONNX export")
# Makes `import torch` fail in a process and in every process it starts (PYTHONPATH is inherited): what a
# light install without the train extra looks like.
NO_TORCH = ("import sys\n"
            "class _NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ModuleNotFoundError(\"No module named 'torch'\", name=name)\n"
            "        return None\n"
            "sys.meta_path.insert(0, _NoTorch())\n")


def _notes(notes):
    return [(n.pitch, round(n.onset, 4), round(n.offset, 4), n.velocity) for n in notes]


def _random_checkpoint(path: Path, arch_config: dict, seed: int) -> Path:
    import torch

    from pianonotes.features.logspec import LogSpecFrontEnd
    from pianonotes.nn.archs import build

    torch.manual_seed(seed)
    fe = LogSpecFrontEnd()
    model = build("audionet", fe.n_features, arch_config)
    with torch.no_grad():  # saturated heads: decisions far from the thresholds, robust to float noise
        for head in (model.onset, model.frame):
            head.weight.mul_(20.0)
            head.bias.mul_(20.0)
        for m in model.modules():  # non-trivial batch-norm statistics, as in a trained network
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    cfg = {"arch": "audionet", "arch_config": arch_config, "n_features": fe.n_features, "frontend": fe.to_dict(),
           "fps": fe.fps, "past_frames": model.past, "future_frames": model.future,
           "decode": {"onset_threshold": 0.5, "frame_threshold": 0.5, "min_note_seconds": 0.04}}
    return ckpt.save(path, model, cfg)


@pytest.fixture(scope="module")
def random_onnx(tmp_path_factory) -> Path:
    """A random AudioNet of another size than the shipped one, exported to ONNX."""
    path = _random_checkpoint(tmp_path_factory.mktemp("onnx") / "rand",
                              {"channels": [8, 8], "hidden": 64, "dilations": [1, 2, 4, 8]}, seed=3)
    export_onnx(path)
    return path


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("notorch")
    (d / "sitecustomize.py").write_text(NO_TORCH)
    return {"PYTHONPATH": str(d)}


# ------------------------------------------------------------------------------------------- parity
def _parity(stem, audio: np.ndarray) -> None:
    ort_tr = Transcriber.from_checkpoint(stem, device="cpu", backend="onnx")
    torch_tr = Transcriber.from_checkpoint(stem, device="cpu", backend="torch")
    assert ort_tr.backend == "onnx" and torch_tr.backend == "torch"
    feats = ort_tr.frontend(audio)
    a, b = ort_tr.infer_features(feats), torch_tr.infer_features(feats)
    assert set(a) == set(b) >= {"frame", "onset", "velocity"}
    for k in a:
        assert a[k].shape == b[k].shape and a[k].shape[0] == len(feats)  # every head, e.g. v2's pedal (T, 1)
        if k in ("frame", "onset", "velocity", "key"):
            assert a[k].shape[1] == constants.N_KEYS
        assert np.max(np.abs(a[k] - b[k])) < 1e-4, k
    ra = ort_tr.transcribe_blocks([audio[i: i + 16000] for i in range(0, len(audio), 16000)])
    rb = torch_tr.transcribe_blocks([audio])
    assert len(ra.notes) > 3
    assert _notes(ra.notes) == _notes(rb.notes)


@shipped
def test_shipped_onnx_equals_pytorch_on_the_example():
    from pianonotes.audio import load_audio

    _parity(None, load_audio(EXAMPLE, constants.SAMPLE_RATE))


def test_random_checkpoint_onnx_equals_pytorch(random_onnx):
    audio = np.concatenate([sine(262, 1.0), sine(330, 1.5) + sine(523, 1.5), np.zeros(8000, np.float32)])
    _parity(random_onnx, audio)
    cfg = json.loads(random_onnx.read_text())
    assert cfg["onnx"]["sha256"] == ckpt.sha256(random_onnx.with_suffix(".onnx"))
    assert cfg["onnx"]["weights_sha256"] == cfg["weights_sha256"]
    assert cfg["past_frames"] == 3 + 2 * (1 + 2 + 4 + 8) and cfg["future_frames"] == 3


@shipped
def test_shipped_model_runs_on_onnx_by_default():
    tr = Transcriber.from_checkpoint(None, device="cpu")
    assert tr.backend == "onnx" and tr.notice() is None
    assert tr.config.past_frames == 17 and tr.config.future_frames == 3
    assert tr.config.lookahead_seconds == pytest.approx(0.1)


# ------------------------------------------------------------------------------------- strict loading
def _copy(stem: Path, dest: Path) -> Path:
    for suffix in (".json", ".safetensors", ".onnx"):
        shutil.copy(stem.with_suffix(suffix), dest.with_suffix(suffix))
    return dest.with_suffix(".json")


def _rehash(cfg_path: Path) -> None:
    """Make the JSON vouch for whatever ONNX file is beside it (a hand-edited or half-copied checkpoint)."""
    cfg = json.loads(cfg_path.read_text())
    cfg["onnx"]["sha256"] = ckpt.sha256(cfg_path.with_suffix(".onnx"))
    cfg_path.write_text(json.dumps(cfg))


def test_corrupt_or_mismatched_onnx_is_one_clear_error(random_onnx, tmp_path):
    cases = []
    bad = _copy(random_onnx, tmp_path / "truncated")
    bad.with_suffix(".onnx").write_bytes(bad.with_suffix(".onnx").read_bytes()[:5000])
    cases.append((bad, "sha256 differs"))
    bad = _copy(random_onnx, tmp_path / "garbage")
    bad.with_suffix(".onnx").write_bytes(b"not an onnx file" * 100)
    _rehash(bad)
    cases.append((bad, "cannot load ONNX model"))
    gone = _copy(random_onnx, tmp_path / "gone")
    gone.with_suffix(".onnx").unlink()
    cases.append((gone, "missing"))
    other = _random_checkpoint(tmp_path / "other", {"channels": [8, 8], "hidden": 64, "dilations": [1, 2]}, seed=4)
    export_onnx(other)
    swapped = _copy(random_onnx, tmp_path / "swapped")  # another network's export, with a matching hash
    shutil.copy(other.with_suffix(".onnx"), swapped.with_suffix(".onnx"))
    _rehash(swapped)
    cases.append((swapped, "does not fit the context"))
    stale = _copy(random_onnx, tmp_path / "stale")  # weights replaced after the export
    shutil.copy(other.with_suffix(".safetensors"), stale.with_suffix(".safetensors"))
    cfg = json.loads(stale.read_text())
    cfg["weights_sha256"] = ckpt.sha256(stale.with_suffix(".safetensors"))
    stale.write_text(json.dumps(cfg))
    cases.append((stale, "exported from other weights"))
    for path, needle in cases:
        with pytest.raises(PianonotesError, match=needle) as err:
            Transcriber.from_checkpoint(path, device="cpu")
        assert "pianonotes export-onnx" in str(err.value) and "\n" not in str(err.value)
    wav = tmp_path / "a.wav"
    sf.write(wav, sine(440, 1.0), 16000)
    p = run_cli("transcribe", wav, "-o", tmp_path / "a.mid", "--model", cases[1][0])
    assert_one_line_error(p, "cannot load ONNX model", "export-onnx")
    assert not (tmp_path / "a.mid").exists()


def test_resaving_a_checkpoint_drops_its_stale_export(random_onnx, tmp_path):
    model, cfg = ckpt.load(random_onnx)
    assert "onnx" in cfg
    out = ckpt.save(tmp_path / "again", model, cfg)
    assert "onnx" not in json.loads(out.read_text())
    tr = Transcriber.from_checkpoint(out, device="cpu")
    assert tr.backend == "torch" and "pianonotes export-onnx" in tr.notice()


# --------------------------------------------------------------------------------- without torch
@shipped
def test_inference_commands_never_import_torch(no_torch, tmp_path):
    """transcribe, re-decoding, listen --input and recover in processes where torch cannot be imported."""
    mid, npz = tmp_path / "ex.mid", tmp_path / "ex.npz"
    p = run_cli("transcribe", EXAMPLE, "-o", mid, "--save-activations", npz, env=no_torch)
    assert p.returncode == 0, p.stderr
    assert "notes from" in p.stdout and "hint" not in p.stderr
    p = run_cli("transcribe", "--from-activations", npz, "-o", tmp_path / "again.csv", env=no_torch)
    assert p.returncode == 0, p.stderr
    cache = tmp_path / "cache"
    env = dict(no_torch, PIANONOTES_CACHE=str(cache))
    p = run_cli("listen", "--input", EXAMPLE, "--fast", "--plain", "--duration", "5", "-o", tmp_path / "live.mid",
                env=env)
    assert p.returncode == 0, p.stderr
    take = next((cache / "takes").iterdir())
    p = run_cli("recover", take, "-o", tmp_path / "rec.mid", env=env)
    assert p.returncode == 0, p.stderr
    assert "re-transcribed its audio" in p.stdout
    p = run_cli("evaluate", EXAMPLE, "-o", tmp_path / "metrics.json", env=no_torch)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["backend"] == "onnx"
    # and the commands that need the train extra say so in one line, with the extra's name intact
    p = run_cli("train", "--data", tmp_path, env=no_torch)
    assert_one_line_error(p, "pip install 'pianonotes[train]'")
    p = run_cli("export-onnx", ckpt.default_checkpoint(), env=no_torch)
    assert_one_line_error(p, "pip install 'pianonotes[train]'")


NO_SCIPY = NO_TORCH.replace("name == 'torch' or name.startswith('torch.')",
                            "name in ('torch', 'scipy') or name.startswith(('torch.', 'scipy.'))")


def test_the_default_install_transcribes_without_scipy(tmp_path):
    """The default install has neither torch nor scipy (both in the train extra): the front end runs on
    numpy's FFT, its notes match the scipy path's, and the data commands say what to install."""
    from pianonotes.features import logspec

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_SCIPY)
    env = {"PYTHONPATH": str(site)}
    mid = tmp_path / "ex.mid"
    p = run_cli("transcribe", EXAMPLE, "-o", mid, env=env)
    assert p.returncode == 0, p.stderr
    fast = run_cli("transcribe", EXAMPLE, "-o", tmp_path / "fast.mid")
    assert fast.returncode == 0, fast.stderr
    a, b = read_midi(mid), read_midi(tmp_path / "fast.mid")
    assert len(a) == len(b) and sum(x.pitch == y.pitch and abs(x.onset - y.onset) < 0.021 for x, y in zip(a, b)) >= 0.99 * len(b)
    for args in (["data", "synth", tmp_path / "ds", "--hours", "0.01"], ["data", "pianos", "--folder", tmp_path / "p"],
                 ["data", "rooms", "--out", tmp_path / "rooms.npz"], ["evaluate", EXAMPLE]):
        assert_one_line_error(run_cli(*args, env=env), "pip install 'pianonotes[train]'")
    # and in this process, the numpy path against scipy's pocketfft: float32 rounding apart
    audio = np.random.default_rng(5).standard_normal(16000 * 3).astype(np.float32) * 0.1
    fe = Transcriber.from_checkpoint(None, device="cpu", backend="onnx").frontend
    with_scipy = fe(audio)
    saved = list(logspec._R2C)
    logspec._R2C[:] = [None]
    try:
        with_numpy = fe(audio)
    finally:
        logspec._R2C[:] = saved
    assert np.abs(with_numpy - with_scipy).max() < 1e-5 and not np.array_equal(with_numpy, with_scipy)


def test_checkpoint_without_export_and_without_torch(random_onnx, no_torch, tmp_path):
    model, cfg = ckpt.load(random_onnx)
    plain = ckpt.save(tmp_path / "plain", model, cfg)
    wav = tmp_path / "a.wav"
    sf.write(wav, sine(440, 1.0), 16000)
    p = run_cli("transcribe", wav, "-o", tmp_path / "a.mid", "--model", plain, env=no_torch)
    assert_one_line_error(p, "no ONNX export", "pianonotes export-onnx", "pip install 'pianonotes[train]'")
    # with torch: it runs, with a one-line hint to export; after export-onnx the hint is gone
    p = run_cli("transcribe", wav, "-o", tmp_path / "a.mid", "--model", plain)
    assert p.returncode == 0, p.stderr
    assert [ln for ln in p.stderr.splitlines() if ln.strip()] == [
        f"hint: {plain.with_suffix('')} has no ONNX export, so PyTorch ran it (slow start-up): "
        f"pianonotes export-onnx {plain.with_suffix('')}"]
    p = run_cli("export-onnx", plain)
    assert p.returncode == 0 and "wrote" in p.stdout, p.stderr
    p = run_cli("transcribe", wav, "-o", tmp_path / "b.mid", "--model", plain, env=no_torch)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr


# --------------------------------------------------------------------------------------------- jobs
def test_jobs_give_the_same_outputs_and_a_bad_file_does_not_stop_the_others(random_onnx, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, f in enumerate((262, 330, 392, 523)):
        sf.write(src / f"clip{i}.wav", np.concatenate([sine(f, 1.0), sine(f * 1.5, 0.8)]), 16000)
    (src / "broken.wav").write_text("this is not audio\n" * 50)
    outs = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        p = run_cli("transcribe", src, "-o", out, "-f", "mid", "-f", "csv", "--model", random_onnx,
                    "--jobs", jobs, env={"COLUMNS": "400"})  # wide enough for the table's paths
        assert p.returncode == 1, p.stdout + p.stderr
        assert "5 files, 1 failed" in p.stdout and "broken.wav" in p.stdout and "cannot decode" in p.stdout
        outs[jobs] = {q.name: q.read_bytes() for q in sorted(out.iterdir())}
    assert sorted(outs[1]) == [f"clip{i}.{e}" for i in range(4) for e in ("csv", "mid")]
    assert outs[1] == outs[2]
    assert all(len(outs[1][f"clip{i}.csv"].splitlines()) > 1 for i in range(4))


# --------------------------------------------------------------------------------------------- ship
@shipped
def test_ship_tool_writes_the_onnx_export(tmp_path):
    from devtools import ship

    dest = tmp_path / "models" / "audionet"
    dest.parent.mkdir()
    # --no-input-match: measuring the spectrum needs the training renders, which a clean machine lacks
    ship.main([str(ckpt.default_checkpoint()), str(dest), "--no-calibrate", "--no-input-match"])
    cfg = json.loads(dest.with_suffix(".json").read_text())
    assert "input_match" not in cfg
    assert cfg["onnx"]["file"] == "audionet.onnx"
    assert cfg["onnx"]["sha256"] == ckpt.sha256(dest.with_suffix(".onnx"))
    assert cfg["metrics"]["onnx_max_abs_diff"] < 1e-4
    assert sorted(p.name for p in dest.parent.iterdir()) == ["MODEL_CARD.md", "audionet.json", "audionet.onnx",
                                                             "audionet.safetensors"]
    tr = Transcriber.from_checkpoint(dest, device="cpu")
    assert tr.backend == "onnx"
    src = ckpt.default_checkpoint()
    for suffix in (".safetensors", ".onnx"):  # the shipped checkpoint without its input matching
        shutil.copy(src.with_suffix(suffix), tmp_path / ("plain" + suffix))
    plain = json.loads(src.with_suffix(".json").read_text())
    del plain["input_match"]
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    assert _notes(tr.transcribe_file(EXAMPLE).notes) == _notes(Transcriber.from_checkpoint(
        tmp_path / "plain").transcribe_file(EXAMPLE).notes)


# ------------------------------------------------------------------------------------ config, device
def test_model_config_and_device_errors_are_one_line():
    from pianonotes.inference import ModelConfig, pick_device

    with pytest.raises(PianonotesError, match="lacks n_features, frontend"):
        ModelConfig.from_dict({"arch": "audionet"})
    with pytest.raises(PianonotesError, match="malformed"):
        ModelConfig.from_dict({"arch": "audionet", "n_features": "many", "frontend": {}})
    with pytest.raises(PianonotesError, match="unknown device 'tpu'"):
        pick_device("tpu", backend="onnx")
    assert pick_device("cpu", backend="onnx") == "cpu"
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert pick_device("auto", backend="onnx") == "cpu"
        with pytest.raises(PianonotesError, match="onnxruntime-gpu"):
            pick_device("cuda", backend="onnx")
    with pytest.raises(PianonotesError, match="unknown backend"):
        Transcriber.from_checkpoint(None, backend="tensorflow")


def test_networks_and_decode_options_through_declared_interfaces(random_onnx):
    """A backend network is an inference.Network (no probing of its attributes); a torch module is wrapped;
    the decoding options come from the typed ModelConfig's decode mapping, never from the JSON dict."""
    from pianonotes.decode import DecodeOptions
    from pianonotes.inference import Network, OnnxNetwork, TorchNetwork, as_network, load_network

    net, cfg = load_network(random_onnx, device="cpu")
    assert isinstance(net, OnnxNetwork) and isinstance(net, Network) and as_network(net) is net
    assert Transcriber.from_checkpoint(random_onnx, device="cpu").model is None  # ONNX Runtime: no module
    tr = Transcriber.from_checkpoint(random_onnx, device="cpu", backend="torch")
    assert isinstance(tr.network, TorchNetwork) and tr.model is tr.network.model
    assert not isinstance(tr.model, Network)
    wrapped = as_network(tr.model)
    assert isinstance(wrapped, TorchNetwork) and wrapped.model is tr.model and (wrapped.past, wrapped.future) == (
        net.past, net.future)

    assert cfg.decode["min_note_seconds"] == 0.04  # the checkpoint's, not the library default
    assert DecodeOptions.for_model(cfg.decode) == cfg.decode_options() and cfg.decode_options().min_note_seconds == 0.04
    o = cfg.decode_options(onset_threshold=0.7)
    assert o.onset_threshold == 0.7 and o.min_note_seconds == 0.04
    assert DecodeOptions.for_model(None) == DecodeOptions()
    with pytest.raises(TypeError, match="whole checkpoint config"):  # the old call: caught, never silent defaults
        DecodeOptions.for_model(dict(cfg.raw))
    with pytest.raises(PianonotesError, match="not names with numbers"):
        DecodeOptions.for_model([0.5])
