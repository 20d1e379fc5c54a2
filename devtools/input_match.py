"""Measure the training audio's mean spectrum and store it in a checkpoint as its ``input_match``.

    python -m devtools.input_match CHECKPOINT [--data DATASET] [--windows 150] [--seconds 10] [--seed 0]

The reference (:func:`pianonotes.features.match.reference_spectrum`) is measured over ``--windows``
random windows of the training split of the checkpoint's dataset (``--data`` overrides it), each
passed through the online acoustics the checkpoint was trained with (rooms, EQ, noise, level; dry
when it was trained without), so it is the average spectrum the network saw. Only the checkpoint's
JSON changes (written atomically); the weights and the ONNX export stay as they are. ``devtools.ship``
runs the same measurement before it calibrates, so ``make model`` reproduces it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def measure_input_match(cfg: dict, data: str | Path | None = None, *, windows: int = 150, seconds: float = 10.0,
                        seed: int = 0) -> dict:
    """The ``input_match`` block for checkpoint config ``cfg`` (its front end, dataset and augmentation)."""
    import soundfile as sf

    from pianonotes.datasets.synth.acoustics import NO_ONLINE_AUGMENT, OnlineAugment, augment_window, load_room_bank
    from pianonotes.errors import PianonotesError
    from pianonotes.features import frontend_from_config
    from pianonotes.features.match import MatchSettings, reference_spectrum

    fe = frontend_from_config(dict(cfg["frontend"]))
    root = Path(data or (cfg.get("data") or {}).get("dataset", ""))
    files = sorted((root / "train").glob("*.flac"))
    if not files:
        raise PianonotesError(f"no training shards in {root / 'train'}; pass --data with the checkpoint's dataset")
    aug_cfg = (cfg.get("data") or {}).get("online_augment")
    augment = OnlineAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug_cfg.items()}) if aug_cfg \
        else NO_ONLINE_AUGMENT
    rooms = load_room_bank() if aug_cfg and augment.room_p > 0 else None
    rng = np.random.default_rng(seed)
    n = int(seconds * fe.sample_rate)

    def draws():
        made = 0
        for k in rng.permutation(len(files)):
            if made >= windows:
                return
            audio, sr = sf.read(str(files[int(k)]), dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)
            if sr != fe.sample_rate or len(audio) < n:
                continue
            s = int(rng.integers(0, len(audio) - n + 1))
            w = audio[s:s + n]
            if aug_cfg:
                w, _ = augment_window(w, rng, augment, rooms, fe.sample_rate)
            made += 1
            yield w

    ref = reference_spectrum(draws(), fe)
    source = (f"mean band magnitude of {windows} windows of {seconds:g} s from {root.name}/train, seed {seed}, "
              + ("through the online acoustics of training" if aug_cfg else "dry"))
    return MatchSettings(tuple(float(v) for v in ref), source=source).to_dict()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=None, help="the dataset folder (default: the checkpoint's)")
    ap.add_argument("--windows", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from pianonotes.fileio import write_text_atomic
    from pianonotes.nn import checkpoint as ckpt

    path = Path(args.checkpoint)
    json_path = path if path.suffix == ".json" else path.with_suffix(".json")
    cfg = ckpt.read_config(json_path)
    cfg["input_match"] = measure_input_match(cfg, args.data, windows=args.windows, seconds=args.seconds, seed=args.seed)
    write_text_atomic(json_path, json.dumps(cfg, indent=2, sort_keys=True))
    print(f"{json_path}: input_match from {cfg['input_match']['source']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
