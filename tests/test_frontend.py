import numpy as np

from pianonotes import constants as C
from pianonotes.features import frontend_from_config
from pianonotes.features.logspec import LogSpecFrontEnd, StreamingFrontEnd

from conftest import sine


def test_shapes_and_config_round_trip():
    fe = LogSpecFrontEnd()
    x = fe(np.zeros(16000 + 5, np.float32))
    assert x.shape == (fe.n_frames(16005), fe.n_features) == (51, fe.n_features)
    assert fe.fps == C.FRAMES_PER_SECOND and fe.hop / fe.sample_rate <= 0.05
    assert frontend_from_config(fe.to_dict()) == fe
    assert np.all(x == 0)  # silence is exactly zero


def test_streaming_equals_offline_for_any_block_size():
    fe = LogSpecFrontEnd()
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(16000 * 3) * 0.1).astype(np.float32)
    whole = fe(audio)
    for sizes in ([1, 7, 320, 5000], [16000 * 3], [321]):
        s = StreamingFrontEnd(fe)
        parts, i, k = [], 0, 0
        while i < len(audio):
            n = sizes[k % len(sizes)]
            parts.append(s.push(audio[i: i + n]))
            i, k = i + n, k + 1
        parts.append(s.flush())
        got = np.concatenate(parts)
        assert got.shape == whole.shape
        assert np.max(np.abs(got - whole)) < 1e-5


def test_lookahead_bound():
    fe = LogSpecFrontEnd()
    rng = np.random.default_rng(2)
    a = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    b = a.copy()
    cut = 8000
    b[cut:] = 0  # change only the audio from sample `cut` on
    fa, fb = fe(a), fe(b)
    # frame i reads samples < i*hop + lookahead: frames with i*hop + lookahead <= cut are identical
    last_same = (cut - fe.lookahead) // fe.hop
    assert np.array_equal(fa[: last_same + 1], fb[: last_same + 1])
    assert not np.array_equal(fa[last_same + 1], fb[last_same + 1])
    assert fe.lookahead_seconds <= C.MAX_LOOKAHEAD_SECONDS


def test_separates_semitones_at_the_bottom_of_the_keyboard():
    fe = LogSpecFrontEnd()
    low = fe.bands[0]
    n_low = fe._filterbanks()[0].shape[1]
    peaks = []
    for pitch in (21, 22, 23):  # A0, A#0, B0
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        x = fe(sine(f0, 2.0))[60:80, :n_low].mean(0)
        peaks.append(int(np.argmax(x)))
    assert len(set(peaks)) == 3, peaks
    assert low.fmin <= 27.5
