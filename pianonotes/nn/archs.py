"""Architectures, chosen by name (``--arch``).

Every model maps input frames ``x`` of shape (batch, past + T + future, n_features) to per-frame outputs
for the T middle frames (convolutions are "valid" in time): a dict with ``frame`` and ``onset`` logits
(batch, T, 88) and, for AudioNet, ``velocity`` (batch, T, 88) in [0, 1]. ``past`` and ``future`` are
attributes; ``future`` frames times the hop plus the front end's look-ahead bound how much future audio
an output depends on (the live view needs <= 100 ms).

Models whose ``kind`` is ``"combo"`` (the seed's) predict one class per frame from a vocabulary of key
combinations; their ``frame`` output holds per-key marginal probabilities (as logits) instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from pianonotes import constants


class AudioNet(nn.Module):
    """A CNN over a window of log-frequency frames with 88 sounding-key and 88 onset outputs per frame
    (logits), 88 velocities in [0, 1], and with ``pedal=True`` (AudioNet v2) 88 key-down logits (the key
    pressed, not extended by the pedal) and one sustain-pedal logit, shape (batch, T, 1).

    Three 3x3 conv blocks (time x frequency, valid in time, one frame of past and future each), frequency
    pooling, a per-frame projection, then causal dilated temporal convolutions with residuals, and three
    heads. Look-ahead: 3 frames.
    """

    kind = "multilabel"

    def __init__(self, n_features: int, *, channels: tuple[int, int] = (12, 24), hidden: int = 160,
                 dilations: tuple[int, ...] = (1, 2, 4), dropout: float = 0.1, pedal: bool = False):
        super().__init__()
        c1, c2 = channels
        self.n_features = n_features
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, (3, 3), padding=(0, 1)), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c1, (3, 3), padding=(0, 1)), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.MaxPool2d((1, 2)),
            nn.Conv2d(c1, c2, (3, 3), padding=(0, 1)), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d((1, 2)),
        )
        f_out = n_features // 2 // 2
        self.proj = nn.Sequential(nn.Linear(c2 * f_out, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.temporal = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, dilation=d) for d in dilations)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in dilations)
        self.onset = nn.Linear(hidden, constants.N_KEYS)
        self.frame = nn.Linear(hidden + constants.N_KEYS, constants.N_KEYS)
        self.velocity = nn.Linear(hidden, constants.N_KEYS)
        self.has_pedal = bool(pedal)
        if self.has_pedal:  # v2 heads: key down (not pedal-extended) and the sustain pedal
            self.key = nn.Linear(hidden + constants.N_KEYS, constants.N_KEYS)
            self.pedal = nn.Linear(hidden, 1)
        self.future = 3
        self.past = 3 + sum(2 * d for d in dilations)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t, f = x.shape
        h = self.conv(x.unsqueeze(1))  # (b, c2, t-6, f/4)
        h = h.permute(0, 2, 1, 3).flatten(2)  # (b, t-6, c2*f/4)
        h = self.proj(h)
        for conv, norm in zip(self.temporal, self.norms):  # causal: output aligned to the last input
            y = functional.relu(conv(h.transpose(1, 2))).transpose(1, 2)
            h = norm(h[:, h.shape[1] - y.shape[1]:] + y)
        onset = self.onset(h)
        h_on = torch.cat([h, torch.sigmoid(onset).detach()], dim=-1)
        frame = self.frame(h_on)
        out = {"onset": onset, "frame": frame, "velocity": torch.sigmoid(self.velocity(h))}
        if self.has_pedal:
            out["key"] = self.key(h_on)
            out["pedal"] = self.pedal(h)
        return out


class ComboNet(nn.Module):
    """The seed's models: one frame in, softmax over the key combinations seen in training.

    ``hidden=(300, 1000, 600, 300)`` is the seed's feed-forward AudioNet; ``hidden=()`` its perceptron.
    ``vocab`` is a (n_classes, 88) 0/1 matrix: the key set of each class (class 0 is silence).
    """

    kind = "combo"
    past = 1  # the previous frame, to derive onsets from rising key probabilities
    future = 0

    def __init__(self, n_features: int, vocab: torch.Tensor, hidden: tuple[int, ...] = (300, 1000, 600, 300)):
        super().__init__()
        self.n_features = n_features
        layers: list[nn.Module] = []
        d = n_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, vocab.shape[0]))
        self.net = nn.Sequential(*layers)
        self.register_buffer("vocab", vocab.float())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        p = (torch.softmax(logits, dim=-1) @ self.vocab).clamp(1e-6, 1 - 1e-6)  # marginal per key
        onset = (p[:, 1:] - p[:, :-1]).clamp(1e-6, 1 - 1e-6)
        return {"logits": logits[:, 1:], "frame": torch.logit(p[:, 1:]), "onset": torch.logit(onset)}


ARCHS = {
    "audionet": "CNN over spectrogram context; 88 key-down + 88 onset + velocity outputs (default)",
    "seed-mlp": "the seed's feed-forward net (300,1000,600,300), softmax over key combinations, SGD",
    "linear": "the seed's perceptron baseline: one linear layer, softmax over key combinations, SGD",
}


def build(arch: str, n_features: int, arch_config: dict | None = None) -> nn.Module:
    from pianonotes.errors import PianonotesError

    cfg = dict(arch_config or {})
    if arch == "audionet":
        try:
            return AudioNet(n_features, **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        except (TypeError, ValueError) as exc:
            raise PianonotesError(f"the checkpoint's arch_config {cfg} does not build an AudioNet ({exc}); "
                                  "re-download or retrain it") from None
    if arch in ("seed-mlp", "linear"):
        vocab = torch.as_tensor(cfg["vocab"], dtype=torch.float32) if "vocab" in cfg else torch.zeros(
            cfg["n_classes"], constants.N_KEYS)
        hidden = () if arch == "linear" else tuple(cfg.get("hidden", (300, 1000, 600, 300)))
        return ComboNet(n_features, vocab, hidden)
    from pianonotes.errors import PianonotesError

    raise PianonotesError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHS)}")
