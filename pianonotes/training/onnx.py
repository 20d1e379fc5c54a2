"""Export a trained checkpoint to ONNX beside its weights (``NAME.onnx``, recorded in ``NAME.json``).

Needs torch and onnx (the ``train`` extra); inference then runs the export through ONNX Runtime.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pianonotes.errors import PianonotesError
from pianonotes.inference import ONNX_INPUT, ONNX_OPSET, TRAINING_ONLY_OUTPUTS, OnnxExport, import_torch
from pianonotes.nn.checkpoint import TRAIN_HINT, load, read_config, resolve, sha256


def export_onnx(path: str | os.PathLike | None = None, *, model=None) -> Path:
    """Write ``NAME.onnx`` beside a checkpoint and record it (file, sha256, the weights' sha256, opset,
    outputs) in ``NAME.json``; returns the ONNX path.

    The graph is the model's ``forward`` as it is (opset 17, dynamic batch and time axes); every output
    except the training-only ones is exported under its own name, so new heads need no change here.
    ``model``: the already loaded network (default: load it from ``path``). Needs torch and onnx.
    """
    import io
    import warnings

    from pianonotes.fileio import write_bytes_atomic, write_text_atomic

    torch = import_torch("exporting a checkpoint to ONNX")
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise PianonotesError(f"exporting to ONNX needs the onnx package: pip install onnx ({TRAIN_HINT})") from exc
    cfg_path, weights = resolve(path)
    cfg = read_config(cfg_path)
    if model is None:
        model, cfg = load(cfg_path)
    model = model.cpu().eval()
    past, future = int(model.past), int(model.future)
    x = torch.zeros(1, past + 8 + future, int(cfg["n_features"]))
    with torch.inference_mode():
        keys = [k for k in model(x) if k not in TRAINING_ONLY_OUTPUTS]

    class _Outputs(torch.nn.Module):  # dict outputs as a tuple in a fixed order
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, features):
            out = self.net(features)
            return tuple(out[k] for k in keys)

    wrapper = _Outputs(model).eval()
    buf = io.BytesIO()
    axes = {ONNX_INPUT: {0: "batch", 1: "time"}, **{k: {0: "batch", 1: "frames"} for k in keys}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapper, (x,), buf, dynamo=False, opset_version=ONNX_OPSET, input_names=[ONNX_INPUT],
                              output_names=keys, dynamic_axes=axes, do_constant_folding=True)
        except Exception as exc:  # the exporter raises many types; the message is what matters
            raise PianonotesError(f"cannot export {cfg_path.with_suffix('')} to ONNX: {str(exc).splitlines()[0]}") from exc
    model.eval()  # the exporter restores the wrapper's (training) mode on the way out
    onnx_file = cfg_path.with_suffix(".onnx")
    write_bytes_atomic(onnx_file, buf.getvalue())
    info = OnnxExport(onnx_file.name, sha256(onnx_file), sha256(weights), ONNX_OPSET, tuple(keys))
    cfg = read_config(cfg_path)
    cfg.update(onnx=info.to_dict(), past_frames=past, future_frames=future)
    write_text_atomic(cfg_path, json.dumps(cfg, indent=2, sort_keys=True))
    return onnx_file
