"""Average the weights of checkpoints of one training run (a uniform "model soup").

    python -m devtools.average OUT CHECKPOINT CHECKPOINT [...] [--input-match-from CHECKPOINT]

Each checkpoint is a stem or a ``.json`` path (``runs/audionet-res2/best``). Every floating-point
tensor (weights, biases, batch-norm running statistics) becomes the mean over the checkpoints; integer
tensors (batch-norm step counters) come from the first. The configuration is the first checkpoint's,
with ``averaged_from`` listing the sources (path, step, weights' sha256) and ``step`` the last source's.
``--input-match-from`` copies the ``input_match`` block of another checkpoint (the shipped model the run
was warm-started from), so that ``devtools.ship --keep-input-match`` ships the average with the input
reference its parent was calibrated with.

Averaging is for checkpoints of one run or of runs warm-started from one another (the same basin);
checkpoints of other architectures or front ends are refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SAME = ("arch", "arch_config", "n_features", "frontend", "fps", "past_frames", "future_frames")


def average_checkpoints(dest, sources, *, input_match_from=None) -> Path:
    """Write the average of ``sources`` (checkpoint paths) as checkpoint ``dest``; returns its JSON path.
    Raises PianonotesError when the sources differ in architecture or front end, or when fewer than two."""
    import torch

    from pianonotes.errors import PianonotesError
    from pianonotes.nn import checkpoint as ckpt

    if len(sources) < 2:
        raise PianonotesError("averaging needs at least two checkpoints")
    loaded = [ckpt.load(s) for s in sources]
    model, cfg = loaded[0]
    for src, (_, other) in zip(sources[1:], loaded[1:]):
        for key in SAME:
            if other.get(key) != cfg.get(key):
                raise PianonotesError(f"{src} differs from {sources[0]} in {key}: only checkpoints of one "
                                      "architecture and front end can be averaged")
    states = [m.state_dict() for m, _ in loaded]
    mean = {}
    for name, tensor in states[0].items():
        if tensor.is_floating_point():
            total = torch.zeros_like(tensor, dtype=torch.float64)
            for st in states:
                total += st[name].to(torch.float64)
            mean[name] = (total / len(states)).to(tensor.dtype)
        else:
            mean[name] = tensor
    model.load_state_dict(mean, strict=True)
    out = dict(cfg)
    out["averaged_from"] = [{"checkpoint": str(s), "step": c.get("step"), "weights_sha256": c.get("weights_sha256")}
                            for s, (_, c) in zip(sources, loaded)]
    out["step"] = loaded[-1][1].get("step", cfg.get("step"))
    out.pop("metrics", None)  # measured on one source's weights, not the average's
    if input_match_from is not None:
        block = ckpt.read_config(input_match_from).get("input_match")
        if block is None:
            raise PianonotesError(f"{input_match_from} has no input_match block to copy")
        out["input_match"] = block
    return ckpt.save(dest, model, out)


def main(argv=None) -> int:
    from pianonotes.errors import PianonotesError

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dest", help="the averaged checkpoint to write (a stem, e.g. runs/audionet-avg/avg)")
    ap.add_argument("sources", nargs="+", help="checkpoints to average (two or more)")
    ap.add_argument("--input-match-from", default=None, metavar="CHECKPOINT",
                    help="copy this checkpoint's input_match block into the average")
    args = ap.parse_args(argv)
    try:
        Path(args.dest).parent.mkdir(parents=True, exist_ok=True)
        out = average_checkpoints(args.dest, args.sources, input_match_from=args.input_match_from)
    except PianonotesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} (the mean of {len(args.sources)} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
