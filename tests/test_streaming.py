"""Every stream (pianonotes.streaming.Stream) driven through the protocol alone: random block sizes give
the whole-input result, and reset() gives a fresh stream."""

import dataclasses
from typing import Any, Callable

import numpy as np
import pytest
import soxr

from pianonotes.features.msmd import MsmdFrontEnd
from pianonotes.audio import QUALITY, StreamResampler
from pianonotes.decode import DecodeOptions, StreamingDecoder, decode, decode_pedal
from pianonotes.engine import Engine, NetworkStream, Update, infer_features
from pianonotes.features.logspec import LogSpecFrontEnd
from pianonotes.inference import OnnxNetwork
from pianonotes.streaming import Stream

FPS = 50.0


class _Output:
    def __init__(self, name):
        self.name = name


class LinearSession:
    """An ONNX Runtime session stand-in, in numpy: each output frame is a fixed linear map of the
    features in its past..future window (so the result depends on the context being exactly right)."""

    def __init__(self, n_features: int, past: int, future: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.past, self.future = past, future
        self.w = {k: rng.standard_normal((past + 1 + future, n_features, 88)).astype(np.float32) * 0.05
                  for k in ("frame", "onset", "velocity")}
        self.w["pedal"] = rng.standard_normal((past + 1 + future, n_features, 1)).astype(np.float32) * 0.05

    def get_outputs(self):
        return [_Output(k) for k in self.w]

    def run(self, _names, feeds):
        x = feeds["features"][0].astype(np.float64)
        n = len(x) - self.past - self.future
        outs = []
        for w in self.w.values():
            y = sum(x[d: d + n] @ w[d] for d in range(len(w)))
            outs.append(y[None].astype(np.float32))
        return outs


def fake_network(n_features: int, past: int = 3, future: int = 2) -> OnnxNetwork:
    return OnnxNetwork(LinearSession(n_features, past, future), past=past, future=future, n_features=n_features)


def fake_config(fe: LogSpecFrontEnd) -> dict:
    return {"arch": "linear-test", "n_features": fe.n_features, "frontend": fe.to_dict(), "fps": fe.fps}


def probabilities(n: int, seed: int = 3) -> dict[str, np.ndarray]:
    """Smooth random (n, 88) heads with notes in them, and a pedal."""
    rng = np.random.default_rng(seed)
    smooth = lambda a: np.clip(np.cumsum(a, 0) % 1.6 - 0.3, 0, 1).astype(np.float32)  # noqa: E731
    return {"frame": smooth(rng.random((n, 88)) * 0.2), "onset": (rng.random((n, 88)) > 0.985).astype(np.float32),
            "velocity": rng.random((n, 88)).astype(np.float32), "key": rng.random((n, 88)).astype(np.float32),
            "pedal": smooth(rng.random((n, 1)) * 0.1)}


# ------------------------------------------------------------------ how to slice, join and compare outputs
def _length(x) -> int:
    return len(x["frame"]) if isinstance(x, dict) else len(x)


def _slice(x, i: int, j: int):
    return {k: v[i:j] for k, v in x.items()} if isinstance(x, dict) else x[i:j]


def _join(parts: list):
    first = parts[0]
    if isinstance(first, Update):
        return {"frame": np.concatenate([p.frame for p in parts]), "onset": np.concatenate([p.onset for p in parts]),
                "notes": sorted(n for p in parts for n in p.notes)}
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, list):
        return sorted(n for p in parts for n in p)
    return np.concatenate(parts)


def _assert_same(got, want, atol: float) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want)
        for k in want:
            _assert_same(got[k], want[k], atol)
    elif isinstance(want, list):
        assert got == want
    else:
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def drive(stream: Stream, data, sizes: list[int]):
    """Push ``data`` in blocks of ``sizes`` (cycled; 0 is an empty block), then flush; the joined output."""
    parts, i, k = [], 0, 0
    n = _length(data)
    while i < n:
        b = sizes[k % len(sizes)]
        parts.append(stream.push(_slice(data, i, i + b)))
        i, k = i + b, k + 1
    parts.append(stream.flush())
    return _join(parts)


# ------------------------------------------------------------------------------------------- the cases
@dataclasses.dataclass
class Case:
    make: Callable[[], Any]  # a fresh stream
    data: Any  # its whole input
    whole: Callable[[Any], Any]  # the offline result of the whole input
    max_block: int
    atol: float = 1e-5


def _audio(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


def _engine_offline(fe: LogSpecFrontEnd):
    def whole(audio):
        net = fake_network(fe.n_features)
        probs = infer_features(net, fe(audio))
        notes = decode(probs["frame"], probs["onset"], probs["velocity"], fps=fe.fps)
        return {"frame": probs["frame"], "onset": probs["onset"], "notes": notes}
    return whole


RESAMPLER_RATES = [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000), (16000, 48000),
                   (16000, 22050)]


def _cases() -> dict[str, Case]:
    fe = LogSpecFrontEnd()
    mfe = MsmdFrontEnd()
    feats = np.random.default_rng(2).standard_normal((230, fe.n_features)).astype(np.float32)
    probs = probabilities(400)
    opts = DecodeOptions()

    def decoded(p):
        notes = decode(p["frame"], p["onset"], p["velocity"], fps=FPS, options=opts, key=p["key"])
        return notes

    return {
        # the reference is soxr's own one-shot function, not our code: streaming is exact (atol 0)
        **{f"resampler {a}->{b}": Case(lambda a=a, b=b: StreamResampler(a, b), _audio(a),
                                       lambda x, a=a, b=b: soxr.resample(x, a, b, quality=QUALITY), 3000, 0)
           for a, b in RESAMPLER_RATES},
        "resampler identity": Case(lambda: StreamResampler(16000, 16000), _audio(5000), lambda x: x, 700, 0),
        "front end dual-v1": Case(fe.streaming, _audio(16000 * 2), fe, 4000),
        "front end msmd": Case(mfe.streaming, _audio(22050 * 2), mfe, 4000, 0),
        "network stream": Case(lambda: NetworkStream(fake_network(fe.n_features), chunk_frames=37), feats,
                               lambda f: infer_features(fake_network(fe.n_features), f, chunk_frames=10_000), 60),
        "decoder": Case(lambda: StreamingDecoder(FPS, opts), probs, decoded, 50),
        "engine": Case(lambda: Engine(fake_network(fe.n_features), fake_config(fe)), _audio(16000 * 2, 4),
                       _engine_offline(fe), 5000),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_random_blocks_through_the_protocol_equal_whole_input(name):
    case = CASES[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    stream = case.make()
    assert isinstance(stream, Stream)
    want = case.whole(case.data)
    for trial in range(3):
        sizes = [int(s) for s in rng.integers(0, case.max_block, 12)] + [1]
        if trial == 0:
            sizes = [_length(case.data)]  # all at once
        _assert_same(drive(case.make(), case.data, sizes), want, case.atol)


@pytest.mark.parametrize("name", list(CASES))
def test_reset_equals_a_fresh_stream(name):
    case = CASES[name]
    rng = np.random.default_rng(7)
    sizes = [int(s) for s in rng.integers(1, case.max_block, 8)]
    used = case.make()
    junk = _slice(case.data, _length(case.data) // 3, _length(case.data))  # other input, left half-pushed
    for b in range(0, _length(junk) // 2, max(1, case.max_block // 2)):
        used.push(_slice(junk, b, b + max(1, case.max_block // 2)))
    used.reset()
    _assert_same(drive(used, case.data, sizes), drive(case.make(), case.data, sizes), 0)
    used.reset()  # and again after a flush
    _assert_same(drive(used, case.data, sizes), drive(case.make(), case.data, sizes), 0)


def test_decoder_pedal_and_dict_push_match_positional_and_reset_clears_pedals():
    probs = probabilities(300, seed=5)
    dec = StreamingDecoder(FPS)
    notes = drive(dec, probs, [17, 0, 64])
    assert notes  # the case is not vacuous
    assert dec.pedals == decode_pedal(probs["pedal"], fps=FPS)
    assert dec.pedals
    pos = StreamingDecoder(FPS)
    got = pos.push(probs["frame"], probs["onset"], probs["velocity"], probs["key"], probs["pedal"]) + pos.flush()
    assert sorted(got) == notes and pos.pedals == dec.pedals
    dec.reset()
    assert dec.pedals == [] and dec.active() == [] and not dec.pedal_down


def test_resampler_flush_gives_the_exact_length():
    for a, b in RESAMPLER_RATES:
        for n in (0, 1, 2, 440, 441, 44101):
            rs = StreamResampler(a, b)
            out = np.concatenate([rs.push(_audio(n)), rs.flush()])
            assert out.dtype == np.float32
            assert len(out) == len(soxr.resample(_audio(n), a, b, quality=QUALITY)) == round(n * b / a), (a, b, n)


def test_resampler_many_tiny_and_empty_blocks_then_a_new_stream_after_flush():
    """One-sample and empty blocks, an early flush, and the stream after flush starts afresh."""
    rng = np.random.default_rng(11)
    x = _audio(9000, seed=4)
    want = soxr.resample(x, 44100, 16000, quality=QUALITY)
    rs = StreamResampler(44100, 16000)
    sizes = [int(s) for s in rng.choice([0, 0, 1, 2, 3, 7, 64, 441, 1024], 400)]
    got = drive(rs, x, sizes)
    np.testing.assert_array_equal(got, want)
    # after flush the same object serves a second stream exactly like a new one (the protocol's `reset`
    # is implied by flush here; a half-pushed stream needs reset())
    np.testing.assert_array_equal(drive(rs, x, [5000]), want)
