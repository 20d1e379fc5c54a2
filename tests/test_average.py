"""devtools.average: the weight average of checkpoints (the shipped model is one)."""

import json

import numpy as np
import pytest

from tests.conftest import random_checkpoint


def _tensors(path):
    from safetensors.numpy import load_file

    return load_file(str(path.with_suffix(".safetensors")))


def test_average_is_the_mean_of_the_weights_and_loads(tmp_path):
    from devtools.average import average_checkpoints
    from pianonotes.nn import checkpoint

    a = random_checkpoint(tmp_path / "a", {"pedal": True}, seed=1)
    b = random_checkpoint(tmp_path / "b", {"pedal": True}, seed=2)
    parent = random_checkpoint(tmp_path / "parent", {"pedal": True}, seed=3)
    cfg = json.loads(parent.read_text())
    cfg["input_match"] = {"reference": [0.5, 0.25], "fmin": 60.0}
    parent.write_text(json.dumps(cfg))
    out = average_checkpoints(tmp_path / "avg", [a, b], input_match_from=parent)
    ta, tb, tm = _tensors(a), _tensors(b), _tensors(out)
    assert set(tm) == set(ta)
    moved = 0
    for name, t in tm.items():
        if np.issubdtype(t.dtype, np.floating):
            np.testing.assert_allclose(t, (ta[name].astype(np.float64) + tb[name]) / 2, rtol=1e-6, atol=1e-7)
            moved += not np.allclose(t, ta[name])
        else:
            np.testing.assert_array_equal(t, ta[name])
    assert moved > 10  # the two random models differ, so the average is neither
    model, got = checkpoint.load(out)  # strict, sha256-checked
    assert got["input_match"] == cfg["input_match"]
    assert [s["checkpoint"] for s in got["averaged_from"]] == [str(a), str(b)]
    assert "metrics" not in got


def test_average_refuses_other_architectures_and_a_single_checkpoint(tmp_path):
    from devtools.average import average_checkpoints, main
    from pianonotes.errors import PianonotesError

    a = random_checkpoint(tmp_path / "a", {"pedal": True}, seed=1)
    b = random_checkpoint(tmp_path / "b", {"pedal": False}, seed=2)
    with pytest.raises(PianonotesError, match="arch_config"):
        average_checkpoints(tmp_path / "avg", [a, b])
    with pytest.raises(PianonotesError, match="at least two"):
        average_checkpoints(tmp_path / "avg", [a])
    assert main([str(tmp_path / "avg"), str(a), str(b)]) == 1
    assert not (tmp_path / "avg.json").exists()
    with pytest.raises(PianonotesError, match="no input_match"):
        average_checkpoints(tmp_path / "avg", [a, a], input_match_from=b)


def test_the_model_card_recipe_names_the_average_and_the_resonance():
    """devtools.ship's recipe lines: an averaged checkpoint is described by its sources' steps, a run with
    string resonance shows the flag, and a plain run its shipped step."""
    from devtools.ship import recipe_lines

    tc = {"arch": "audionet", "online_augment": True, "string_resonance": 0.5, "max_steps": 3000, "batch_size": 16,
          "window": 200, "lr": 4e-4, "warmup_steps": 200, "onset_weight": 3.0, "onset_pos_weight": 5.0,
          "key_weight": 1.0, "pedal_weight": 0.5}
    cfg = {"train_config": tc, "arch_config": {"pedal": True}, "step": 3000, "selection": "best and last",
           "averaged_from": [{"checkpoint": "a", "step": 1500}, {"checkpoint": "b", "step": 3000}]}
    (line,) = recipe_lines(cfg)
    assert "--online-augment --string-resonance 0.5 --max-steps 3000" in line
    assert "shipped: the mean of the weights at steps 1500 and 3000, best and last." in line
    plain = dict(cfg, averaged_from=None, selection=None, wall_minutes=40, train_config=dict(tc, string_resonance=0.0))
    lines = recipe_lines(plain)
    assert "--string-resonance" not in lines[0] and "shipped step 3000, chosen by note F1 on the validation split" in lines[0]
    assert lines[1] == "- Wall time of this training run: 40 min."
