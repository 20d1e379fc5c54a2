"""The split of chords into left and right hand: a beam search over split points with span, crossing and balance costs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    pass


_HAND_SPAN = 12  # semitones one hand may cover without penalty (an octave)
_BEAM = 8
_BALANCE = 12.0  # cost per note the right hand holds beyond one more than the left, in chords of 4+
_LEFT_HOME, _RIGHT_HOME = 45.0, 71.0  # A2 and B4: a lone first note above ~58 goes to the right hand
_LINE_SHARE = 0.9  # clusters of one note at least this share (a fiddle tune's double stops stay under 10 %): a lone line ...
_LINE_RANGE = 24  # ... within two octaves (5th-95th percentile of its pitches) is one hand


def _split_cost(pitches: Sequence[int], k: int, c_left: float, c_right: float) -> float:
    cost = 0.0
    for hand, centre, prior in ((pitches[:k], c_left, 1), (pitches[k:], c_right, -1)):
        if not hand:
            continue
        cost += sum(abs(p - centre) for p in hand)
        if prior > 0:  # left hand high in the treble
            cost += sum(0.15 * max(0, p - 67) for p in hand)
        else:  # right hand deep in the bass
            cost += sum(0.15 * max(0, 53 - p) for p in hand)
        span = hand[-1] - hand[0]
        if span > _HAND_SPAN:
            cost += 10.0 + 3.0 * (span - _HAND_SPAN)
        if len(hand) > 5:
            cost += 30.0 * (len(hand) - 5)
    if 0 < k < len(pitches):  # cutting a close-position chord in two is unnatural
        cost += 1.5 * max(0, 7 - (pitches[k] - pitches[k - 1]))
    if len(pitches) >= 4:  # four or more voices: the right hand rarely takes more than one note extra
        cost += _BALANCE * max(0, (len(pitches) - k) - k - 1)
    return cost


def split_hands(chords: Sequence[Sequence[int]]) -> list[int]:
    """Split each onset cluster (ascending MIDI pitches) between the hands.

    Returns, per cluster, how many of its lowest pitches go to the left hand. A beam search over the
    clusters in time order: each hand has a centre (a running average of the pitches it played, which
    drifts back home while the hand rests); a split costs the distance of each note from its hand's
    centre, plus penalties for a hand spanning more than an octave or holding more than five notes, for
    cutting a close chord between the hands, and a weak register prior. So a melody that dips below
    middle C stays in the right hand, and a chord wider than an octave is shared between the hands.

    A lone line (at least _LINE_SHARE of the clusters one note, within _LINE_RANGE semitones) goes to
    one hand, by its register: the search would deal it out to both hands, whose two centres fit its
    notes more closely than one (a fiddle tune around G4-C5 split into two staves).
    """
    lone = [c[0] for c in chords if len(c) == 1]
    if chords and len(lone) >= _LINE_SHARE * len(chords):
        ps = sorted(p for c in chords for p in c)
        lo, hi = ps[int(0.05 * (len(ps) - 1))], ps[int(0.95 * (len(ps) - 1))]
        if hi - lo <= _LINE_RANGE:  # one line: one staff, by its register (middle C and up: right)
            left = ps[len(ps) // 2] < 60
            return [len(c) if left else 0 for c in chords]
    # hypothesis: (cost, c_left, c_right, parent index in previous layer, k)
    layer: list[tuple[float, float, float, int, int]] = [(0.0, _LEFT_HOME, _RIGHT_HOME, -1, 0)]
    history: list[list[tuple[float, float, float, int, int]]] = []
    for pitches in chords:
        pitches = sorted(pitches)
        cand = []
        for hi, (cost, cl, cr, _, _) in enumerate(layer):
            for k in range(len(pitches) + 1):
                c = cost + _split_cost(pitches, k, cl, cr)
                left, right = pitches[:k], pitches[k:]
                ncl = cl + 0.5 * (sum(left) / len(left) - cl) if left else cl + 0.02 * (_LEFT_HOME - cl)
                ncr = cr + 0.5 * (sum(right) / len(right) - cr) if right else cr + 0.02 * (_RIGHT_HOME - cr)
                cand.append((c, ncl, ncr, hi, k))
        cand.sort(key=lambda h: h[0])
        layer = cand[:_BEAM]
        history.append(layer)
    out: list[int] = []
    idx = 0
    for layer in reversed(history):
        _, _, _, parent, k = layer[idx]
        out.append(k)
        idx = parent
    out.reverse()
    return out
