"""Checkpoints: weights as safetensors plus a JSON config beside them, and an ONNX export for inference.

``NAME.safetensors`` holds the tensors; ``NAME.json`` holds the front end, architecture, decoding
thresholds, data description and license, metrics, and the sha256 of the weights file. Loading never
unpickles, checks the hash, and is strict: a mismatched file is a clear error. ``pianonotes.training.onnx.export_onnx`` writes
``NAME.onnx`` (what :mod:`pianonotes.inference` runs without torch) and records its sha256 in the JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pianonotes.errors import PianonotesError

FORMAT = "pianonotes-checkpoint-v1"
TRAIN_HINT = "pip install 'pianonotes[train]'"


def default_checkpoint() -> Path:
    """The shipped AudioNet checkpoint (inside the installed package, or ``models/`` in a checkout)."""
    try:
        from importlib.resources import files

        path = Path(str(files("pianonotes.models") / "audionet.json"))
        if path.exists():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "models" / "audionet.json"


def resolve(path: str | os.PathLike | None) -> tuple[Path, Path]:
    """(config JSON, weights) for a checkpoint given as either file, or the stem."""
    p = Path(path) if path is not None else default_checkpoint()
    if p.is_dir():
        p = p / "audionet.json"
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    cfg, weights = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not cfg.exists() or not weights.exists():
        hint = " (reinstall pianonotes, or run `make model`)" if path is None else ""
        raise PianonotesError(f"checkpoint {stem} not found: need {cfg.name} and {weights.name}{hint}")
    return cfg, weights


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(path: str | os.PathLike, model, config: dict[str, Any], extra_tensors: dict | None = None) -> Path:
    """Write ``path``.safetensors and ``path``.json atomically (weights first)."""
    from safetensors.torch import save as st_save

    from pianonotes.fileio import write_bytes_atomic, write_text_atomic

    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix in (".json", ".safetensors") else stem
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = stem.with_suffix(".safetensors")
    write_bytes_atomic(weights, st_save(tensors))
    cfg = dict(config)
    cfg.pop("onnx", None)  # an export belongs to the weights it came from: export_onnx records a new one
    cfg["format"] = FORMAT
    cfg["weights_sha256"] = sha256(weights)
    cfg["weights_file"] = weights.name
    write_text_atomic(stem.with_suffix(".json"), json.dumps(cfg, indent=2, sort_keys=True))
    return stem.with_suffix(".json")


def read_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    cfg_path, _ = resolve(path)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PianonotesError(f"checkpoint config {cfg_path} is corrupt ({exc}); re-download or retrain it") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise PianonotesError(f"{cfg_path} is not a pianonotes checkpoint config")
    return cfg


def load(path: str | os.PathLike | None = None, *, device: str = "cpu"):
    """Load (model in eval mode, config). Verifies the weights' sha256 and loads strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from pianonotes.nn.archs import build

    cfg_path, weights = resolve(path)
    cfg = read_config(cfg_path)
    digest = sha256(weights)
    if digest != cfg.get("weights_sha256"):
        raise PianonotesError(
            f"checkpoint weights {weights} do not match their config (sha256 differs): the file is corrupt "
            "or belongs to another checkpoint"
        )
    try:
        tensors = load_file(os.fspath(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise PianonotesError(f"cannot read checkpoint weights {weights}: {exc}") from exc
    try:
        model = build(cfg["arch"], int(cfg["n_features"]), cfg.get("arch_config"))
        model.load_state_dict(tensors, strict=True)
    except (KeyError, RuntimeError, TypeError) as exc:
        msg = str(exc).splitlines()[0]
        raise PianonotesError(f"checkpoint {weights} does not fit its architecture ({msg})") from exc
    model.eval()
    return model.to(device), cfg
