"""Score benchmark: meter, downbeats, pickup and notated rhythm on pieces of known meter and pickup.

``python -m devtools.score_bench [-o results.json] [--bars 24] [--only NAME]`` (``make
bench-score``). Pieces come from music21's corpus (chorales, minuets and quartet movements,
jigs, reels and hornpipes, a rag, a sonata): their notes are played from the score (every part
merged onto one piano) in two conditions:

* ``deadpan``: the score's rhythm at a fixed tempo, notes held to 90 % of their value, velocity 80;
* ``performed``: a tempo that drifts +-6 % over four bars, a ritardando to 75 % over the last two
  bars, onset jitter (sd 12 ms), notes held 80-95 %, velocities 64-90 (no metrical accents).

Each condition goes through :func:`pianonotes.export.plan_score` and
:func:`pianonotes.export.notes_to_score` with nothing given (tempo, meter and pickup estimated), and
is scored for

* meter: the estimated time signature equals the score's;
* downbeat F1: estimated bar lines against the score's, +-70 ms;
* pickup: the estimated length of the first (partial) bar equals the score's, to a 16th;
* onset+value: the share of the score's notes found in the output with the same pitch, position
  from the first downbeat, and tied-through value (quarter notes; ties followed pitch by pitch, so a
  chord note tied into the next chord counts with its whole value); also onsets alone. A unison of
  two parts is one note (one key), with the longer value.

One performed rendition per piece is one draw of its random timing, which alone moves downbeat F1
by up to 0.1 at 42 pieces; ``--seeds N`` scores N independent renditions (rendition 0 is the one a
plain run plays) and reports their mean, and each metric's range over the N one-rendition runs.

This measures the score logic on ground-truth notes. ``--audio`` also renders each condition with
FluidSynth (FluidR3 piano) and scores what the shipped model transcribes from it (``+audio`` rows).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

# (corpus path, kind, quarter notes per minute); meters and pickups are read from the scores.
PIECES: list[tuple[str, str, float]] = [
    *[(f"bach/{b}", "chorale", 84.0) for b in (
        "bwv66.6", "bwv269", "bwv347", "bwv153.1", "bwv86.6", "bwv267", "bwv281", "bwv40.8", "bwv311",
        "bwv278", "bwv120.8-a", "bwv153.9", "bwv17.7", "bwv187.7")],
    *[(p, "minuet", 132.0) for p in (
        "haydn/opus1no1/movement2.mxl", "haydn/opus1no1/movement4.mxl", "haydn/opus74no1/movement3.mxl",
        "mozart/k156/movement3.mxl", "mozart/k458/movement2.mxl", "mozart/k80/movement3.mxl")],
    *[(f"ryansMammoth/{j}.abc", "jig", 165.0) for j in (
        "BannocksOBarleyMealJig", "BattleTheCashJig", "BelleOfTheKitchenJig", "BillyORourkesJig",
        "BillyPattersonsFavoriteJig", "BillyTheBarberShavedHisFatherJig", "BlivensFavoriteJig",
        "BloomingMeadowsJig", "BobbingForEelsJig", "BossJig")],
    *[(f"ryansMammoth/{r}.abc", "reel", 96.0) for r in (
        "AcaciaReel", "ArkansasTravellerReel", "AspinwallHornpipe", "BalkanHornpipe", "BallAndPinHornpipe",
        "BelleOfBostonReel", "BelleOfClaremontHornpipe", "BellsOfLewistonReel")],
    ("joplin/maple_leaf_rag.mxl", "rag", 80.0),
    ("mozart/k155/movement3.mxl", "quartet", 100.0),
    ("mozart/k545/movement1_exposition.mxl", "sonata", 120.0),
    ("cpebach/h186.mxl", "keyboard", 96.0),
]
TOLERANCE = 0.07  # seconds, downbeat matching
QPM = {"chorale": 84.0, "minuet": 132.0, "jig": 165.0, "reel": 96.0, "quartet": 100.0}


def training_pieces(limit_per_kind: int = 40) -> list[tuple[str, str, float]]:
    """Pieces for ``--fit``, none of them in PIECES: every 7th Bach chorale, fiddle tunes of Ryan's
    Mammoth Collection by name (jigs, reels, hornpipes), minuets and other quartet movements."""
    from music21 import corpus

    bench = {p for p, _, _ in PIECES}
    out: list[tuple[str, str, float]] = []
    bach = sorted(str(p).split("corpus/")[-1] for p in corpus.getComposer("bach"))
    out += [(p.rsplit(".", 1)[0] if p.endswith(".mxl") else p, "chorale", QPM["chorale"])
            for p in bach[3::7] if p.endswith(".mxl")][:limit_per_kind]
    rm = sorted(str(p).split("corpus/")[-1] for p in corpus.getComposer("ryansMammoth"))
    for kind, words in (("jig", ("Jig",)), ("reel", ("Reel", "Hornpipe"))):
        tunes = [p for p in rm if any(w in p for w in words) and p not in bench]
        out += [(p, kind, QPM[kind]) for p in tunes[5::6][:limit_per_kind]]
    for comp in ("mozart", "haydn", "beethoven"):
        for p in sorted(str(p).split("corpus/")[-1] for p in corpus.getComposer(comp)):
            if p.endswith(".mxl") and p not in bench and "movement" in p:
                out.append((p, "quartet", QPM["quartet"]))
    return [x for x in out if x[0] not in bench and f"bach/{x[0].split('/')[-1]}" not in bench]


BOOKS = (("essenFolksong/erk10", "folk", 60), ("airdsAirs/book1.abc", "fiddle", 60))
BOOK_QPM = {"folk": 100.0, "fiddle": 96.0}  # quarter notes per minute; compound (6/8) tunes at the jigs' 165


def book_tunes(every: int = 3) -> list[tuple[str, str, float]]:
    """More bar-model training pieces from two tune books that the benchmark does not draw on: German
    folk songs of the Essen collection (lone melodies in 2/4, 3/4, 4/4 and 6/8, pickups or not) and
    Aird's airs (Scottish fiddle tunes: jigs, reels, hornpipes), every ``every``-th tune of one meter
    of 2/4, 3/4, 4/4 or 6/8, at most the BOOKS limit each; a tune whose title shares its name with a
    benchmark piece is left out."""
    from music21 import meter

    bench = {re.sub(r"(jig|reel|hornpipe)$", "", p.split("/")[-1].split(".")[0].lower()) for p, _, _ in PIECES}
    out = []
    for book, kind, limit in BOOKS:
        got = 0
        for i, sc in enumerate(_opus(book).scores):
            if i % every or got >= limit:
                continue
            sigs = {t.ratioString for t in sc.recurse().getElementsByClass(meter.TimeSignature)}
            title = re.sub(r"[^a-z]", "", ((sc.metadata.title if sc.metadata else "") or "").lower())
            if len(sigs) != 1 or next(iter(sigs)) not in ("2/4", "3/4", "4/4", "6/8"):
                continue
            if title and any(b and (b in title or title in b) for b in bench):
                continue
            qpm = QPM["jig"] if next(iter(sigs)) == "6/8" else BOOK_QPM[kind]
            out.append((f"{book}#{i}", kind, qpm))
            got += 1
    return out


def fit_accents(pieces, bars: int = 16, l2: float = 1.0) -> list[float]:
    """Logistic regression of "downbeat" on the beat features at the scores' true beats (deadpan and
    performed); returns the weights of the z-scored features."""
    import numpy as np

    from pianonotes.export import beats

    X, y = [], []
    for i, (path, kind, qpm) in enumerate(pieces):
        try:
            truth = load_truth(path, kind, bars)
        except Exception as exc:
            print(f"skip {path}: {exc}", file=sys.stderr)
            continue
        from pianonotes.export.beats import parse_meter

        m = parse_meter(truth.meter)
        if str(m) not in ("2/4", "3/4", "4/4", "6/8"):
            continue
        beat = Fraction(m.beat_ql)
        for performed in (False, True):
            notes, sec = perform(truth, qpm, performed, seed=1000 + i)
            ev = beats.onset_events(notes)
            lo = min(o for o, _, _ in truth.notes)
            hi = max(o for o, _, _ in truth.notes)
            k0, k1 = math.floor(lo / beat), math.ceil(hi / beat)
            ks = list(range(k0, k1 + 1))
            times = np.asarray([sec(float(k * beat)) for k in ks])
            if len(times) < 8:
                continue
            X.append(beats.beat_features(ev, times))
            y.append(np.asarray([k % m.beats_per_bar == 0 for k in ks], dtype=float))
    X = np.concatenate(X)
    y = np.concatenate(y)
    Xb = np.hstack([X, np.ones((len(X), 1))])
    w = np.zeros(Xb.shape[1])
    for _ in range(30):  # Newton steps
        p = 1 / (1 + np.exp(-Xb @ w))
        g = Xb.T @ (p - y) + l2 * np.r_[w[:-1], 0.0]
        H = (Xb * (p * (1 - p))[:, None]).T @ Xb + l2 * np.diag(np.r_[np.ones(len(w) - 1), 0.0])
        w -= np.linalg.solve(H, g)
    acc = float(np.mean(((Xb @ w) > 0) == (y > 0.5)))
    print(f"fitted on {len(y)} beats ({int(y.sum())} downbeats) of {len(pieces)} pieces; "
          f"training accuracy {acc:.3f}")
    for name, v in zip(beats.FEATURES + ("(intercept)",), w):
        print(f"  {name:12s} {v:+.3f}")
    return [round(float(v), 3) for v in w[:-1]]



@dataclass
class Truth:
    name: str
    kind: str
    meter: str
    bar: Fraction
    pickup: Fraction  # quarter notes before the first downbeat (0: starts on one)
    notes: list  # (offset from the first downbeat, value, midi), quarter notes
    hands: dict | None = None  # (offset, midi) -> 0 right / 1 left: upper half of the parts is the right hand


@functools.lru_cache(maxsize=4)
def _opus(path: str):
    """A corpus collection of many tunes (an ABC book), parsed once (tens of seconds each)."""
    from music21 import corpus

    return corpus.parse(path)


def load_truth(path: str, kind: str, bars: int) -> Truth:
    """The score's meter, pickup and notes (first ``bars`` + 1 measures); ``"book.abc#12"`` is the
    13th tune of a collection."""
    from music21 import corpus, meter, stream

    if "#" in path:
        book, index = path.rsplit("#", 1)
        sc = _opus(book).scores[int(index)]
    else:
        sc = corpus.parse(path)
    sigs = {t.ratioString for t in sc.recurse().getElementsByClass(meter.TimeSignature)}
    if len(sigs) != 1:
        raise ValueError(f"{path}: meter changes ({sorted(sigs)})")
    p0 = sc.parts[0] if sc.hasPartLikeStreams() else sc
    ms = list(p0.getElementsByClass(stream.Measure))
    ts = p0.recurse().getElementsByClass(meter.TimeSignature).first()
    bar = Fraction(ts.barDuration.quarterLength).limit_denominator(64)
    pickup = Fraction(0)
    if ms and ms[0].paddingLeft:
        pickup = bar - Fraction(ms[0].paddingLeft).limit_denominator(64)
    first = ms[0].number if ms else 0
    sc = sc.measures(first, first + bars)
    flat = sc.stripTies().flatten().notes
    notes = []
    for el in flat:
        ql = Fraction(el.quarterLength).limit_denominator(48)
        if ql <= 0:
            continue
        for p in getattr(el, "pitches", ()):
            if 21 <= p.midi <= 108:
                notes.append((Fraction(el.offset).limit_denominator(48) - pickup, ql, int(p.midi)))
    longest: dict = {}  # a unison of two parts is one key on the piano: keep the longer value
    for o, ql, m in notes:
        longest[(o, m)] = max(longest.get((o, m), ql), ql)
    notes = sorted((o, ql, m) for (o, m), ql in longest.items())
    hands = None
    parts = list(sc.parts) if sc.hasPartLikeStreams() else []
    if len(parts) >= 2:  # chorales S A | T B, quartets Vn Vn | Va Vc, piano scores treble | bass
        hands = {}
        for pi, part in enumerate(parts):
            for el in part.stripTies().flatten().notes:
                for p in getattr(el, "pitches", ()):
                    key = (Fraction(el.offset).limit_denominator(48) - pickup, int(p.midi))
                    hands.setdefault(key, 0 if pi < len(parts) / 2 else 1)
    return Truth(path, kind, next(iter(sigs)), bar, pickup, notes, hands)


def perform(truth: Truth, qpm: float, performed: bool, seed: int):
    """Notes (seconds) of the score; returns (notes, ql -> seconds)."""
    from pianonotes.notes import Note

    rng = random.Random(seed)
    start_q = min(o for o, _, _ in truth.notes)
    end_q = max(o + d for o, d, _ in truth.notes)
    bar = float(truth.bar)
    step = 1.0 / 48

    def factor(q: float) -> float:  # tempo multiplier at q quarter notes from the first downbeat
        if not performed:
            return 1.0
        f = 1.0 + 0.06 * math.sin(2 * math.pi * (q - start_q) / (4 * bar) + 0.7)
        rit = end_q - 2 * bar
        if q > rit:
            f *= 1.0 - 0.25 * min(1.0, (q - rit) / (2 * bar))
        return f

    # integrate seconds per quarter over a fine grid of quarter positions
    qs = [start_q + k * step for k in range(int(math.ceil((end_q - start_q) / step)) + 2)]
    secs = [0.5]
    for a in qs[:-1]:
        secs.append(secs[-1] + step * 60.0 / (qpm * factor(a)))

    def sec(q: float) -> float:
        i = min(max(0, int((q - start_q) / step)), len(qs) - 2)
        return secs[i] + (q - qs[i]) / step * (secs[i + 1] - secs[i])

    notes = []
    for o, d, p in truth.notes:
        on = sec(float(o))
        off = sec(float(o + d))
        if performed:
            on += rng.gauss(0.0, 0.012)
            hold = rng.uniform(0.8, 0.95)
            vel = rng.randint(64, 90)
        else:
            hold, vel = 0.9, 80
        off = on + max(0.03, (off - on) * hold)
        notes.append(Note(max(0.0, on), off, p, vel))
    return sorted(notes), sec


def _f1(est, ref, tol=TOLERANCE) -> float:
    est, ref = sorted(est), sorted(ref)
    if not est and not ref:
        return 1.0
    if not est or not ref:
        return 0.0
    used = set()
    hits = 0
    for r in ref:
        best = None
        for i, e in enumerate(est):
            if i not in used and abs(e - r) <= tol and (best is None or abs(e - r) < abs(est[best] - r)):
                best = i
        if best is not None:
            used.add(best)
            hits += 1
    p, r = hits / len(est), hits / len(ref)
    return 0.0 if hits == 0 else 2 * p * r / (p + r)


def notated(sc, with_staff: bool = False) -> list:
    """(offset from the first downbeat, tied value, midi[, staff]) of every note of a notes_to_score
    result (staff 0: treble, 1: bass). Ties are followed pitch by pitch within a staff, so a chord
    note tied into the next chord (a held soprano against moving alto) counts with its whole value
    (music21's ``stripTies`` merges chords only when all their notes are tied)."""
    from music21 import stream

    out = []
    for si, part in enumerate(sc.parts):
        ms = list(part.getElementsByClass(stream.Measure))
        m1 = next((m.offset for m in ms if m.number == 1), 0.0)
        rows: list[list] = []
        open_: dict[int, int] = {}  # midi -> row of a note whose tie goes on
        for el in part.flatten().notes:
            for n in (el.notes if el.isChord else [el]):
                midi, kind = int(n.pitch.midi), (n.tie.type if n.tie is not None else None)
                ql = Fraction(el.quarterLength).limit_denominator(48)
                if kind in ("stop", "continue") and midi in open_:
                    rows[open_[midi]][1] += ql
                    if kind == "stop":
                        del open_[midi]
                    continue
                rows.append([Fraction(el.offset - m1).limit_denominator(48), ql, midi, si])
                if kind in ("start", "continue"):
                    open_[midi] = len(rows) - 1
        out += [tuple(r) if with_staff else tuple(r[:3]) for r in rows]
    return out


SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def transcribed(notes, transcriber) -> list:
    """The notes rendered with FluidSynth (FluidR3 piano) and transcribed by ``transcriber``, with the
    key releases a score writes (:func:`pianonotes.notes.score_releases`, as ``transcribe`` does)."""
    import numpy as np

    from pianonotes.datasets.synth.render import render
    from pianonotes.notes import score_releases

    sr = transcriber.frontend.sample_rate
    total = max(n.offset for n in notes) + 1.5
    audio = render([(n.onset, n.offset, n.pitch, n.velocity) for n in notes], [], total, SOUNDFONT, 0, sr)
    block = int(30 * sr)
    blocks = (np.asarray(audio[i: i + block], dtype=np.float32) for i in range(0, len(audio), block))
    res = transcriber.transcribe_blocks(blocks)
    return score_releases(res.notes, res.pedals)


def score_piece(truth: Truth, qpm: float, performed: bool, seed: int, transcriber=None,
                grid: tuple[int, ...] | None = None) -> dict:
    from pianonotes.export import notes_to_score, plan_score

    notes, sec = perform(truth, qpm, performed, seed)
    if transcriber is not None:
        notes = transcribed(notes, transcriber)
        if len(notes) < 2:
            notes, _ = perform(truth, qpm, performed, seed)  # nothing heard: score as all wrong below
            notes = notes[:1]
    t0 = time.perf_counter()
    plan = plan_score(notes) if grid is None else plan_score(notes, grid=grid)
    sc = notes_to_score(notes, title=truth.name, plan=plan)
    took = time.perf_counter() - t0
    g = plan.beats
    first, last = notes[0].onset, max(n.onset for n in notes)
    est_down = [float(t) for t in g.downbeats() if first - 0.1 <= t <= last + 0.1]
    start_q = min(o for o, _, _ in truth.notes)
    ref_down = reference_downbeats(truth, sec)
    # the first note's distance before its bar line, as a pickup length
    pos = start_q % truth.bar
    ref_pickup = (truth.bar - pos) % truth.bar
    staffed = notated(sc, with_staff=True)
    got = Counter(r[:3] for r in staffed)
    want = Counter(truth.notes)
    hand_ok = hand_n = 0
    if truth.hands is not None:  # hands: among notes found at the right onset and pitch
        for o, _, p, si in staffed:
            h = truth.hands.get((o, p))
            if h is not None:
                hand_n += 1
                hand_ok += h == si
    match = sum((got & want).values()) / max(1, sum(want.values()))
    got_on = Counter((o, p) for o, _, p in got.elements())
    want_on = Counter((o, p) for o, _, p in truth.notes)
    onset = sum((got_on & want_on).values()) / max(1, sum(want_on.values()))
    return {
        "piece": truth.name, "kind": truth.kind,
        "condition": ("performed" if performed else "deadpan") + ("+audio" if transcriber is not None else ""),
        "meter": truth.meter, "est_meter": str(g.meter), "meter_ok": str(g.meter) == truth.meter,
        "pickup": str(ref_pickup), "est_pickup": str(g.pickup_ql), "pickup_ok": g.pickup_ql == ref_pickup,
        "downbeat_f1": round(_f1(est_down, ref_down), 4), "onset_value": round(match, 4),
        "onset": round(onset, 4), "notes": len(truth.notes), "seconds": round(took, 2),
        "est_bpm": g.bpm, "hands": round(hand_ok / hand_n, 4) if hand_n else None,
    }


METRICS = (("meter_accuracy", "meter_ok"), ("downbeat_f1", "downbeat_f1"), ("pickup_accuracy", "pickup_ok"),
           ("onset_value_match", "onset_value"), ("onset_match", "onset"))


def rendition_seed(piece: int, rendition: int) -> int:
    """The random seed of a piece's performed rendition: rendition 0 is the piece's index (what one
    run has always used), the others far from every piece's index."""
    return piece if rendition == 0 else piece + 7919 * rendition


def summarize(rows: list[dict]) -> dict:
    """Means per condition over all rows: with ``--seeds N`` a performed piece has N rows (renditions),
    so every piece weighs the same; ``range_over_renditions`` then gives each metric's range over the N
    one-rendition-per-piece benchmarks (how far one run can move it)."""
    out = {}
    for cond in ("deadpan", "performed", "deadpan+audio", "performed+audio"):
        rs = [r for r in rows if r["condition"] == cond]
        if not rs:
            continue
        n = len(rs)
        seeds = sorted({r.get("rendition", 0) for r in rs})
        out[cond] = {"pieces": len({r["piece"] for r in rs}), "renditions": len(seeds)}
        for name, key in METRICS:
            out[cond][name] = round(sum(float(r[key]) for r in rs) / n, 3)
        if len(seeds) > 1:
            spread = {}
            for name, key in METRICS:
                per = [sum(float(r[key]) for r in rs if r.get("rendition", 0) == s)
                       / max(1, sum(r.get("rendition", 0) == s for r in rs)) for s in seeds]
                spread[name] = [round(min(per), 3), round(max(per), 3)]
            out[cond]["range_over_renditions"] = spread
        hs = [r["hands"] for r in rs if r.get("hands") is not None]
        if hs:
            out[cond]["hands"] = round(sum(hs) / len(hs), 3)
            out[cond]["hands_pieces"] = len(hs)
    return out


def bar_training_cases(bars: int = 16) -> list[tuple]:
    """The bar-hypothesis training cases for ``--fit-bars``: :func:`training_pieces` (2/4, 3/4, 4/4 and
    6/8 only) plus the 3/4 chorales among every third Bach chorale (the chorales are mostly 4/4) and the
    :func:`book_tunes` (lone folk melodies and fiddle tunes), each deadpan and performed; per case (meter, subdivision, hypotheses, their features, which are right:
    the score's meter with downbeat F1 >= 0.9)."""
    from music21 import corpus

    from pianonotes.export import beats

    pieces = training_pieces()
    have = {p for p, _, _ in pieces} | {p for p, _, _ in PIECES}
    bach = sorted(str(p).split("corpus/")[-1] for p in corpus.getComposer("bach"))
    extra = [p.rsplit(".", 1)[0] for p in bach[1::3] if p.endswith(".mxl")]
    extra = [p for p in extra if p not in have and f"bach/{p.split('/')[-1]}" not in have]
    seeds = [(1000 + i, p, k, q, None) for i, (p, k, q) in enumerate(pieces)]
    seeds += [(5000 + j, p, "chorale", QPM["chorale"], "3/4") for j, p in enumerate(extra)]
    seeds += [(7000 + j, p, k, q, None) for j, (p, k, q) in enumerate(book_tunes())]
    cases = []
    for seed, path, kind, qpm, only in seeds:
        try:
            truth = load_truth(path, kind, bars)
        except Exception:
            continue
        if truth.meter not in ("2/4", "3/4", "4/4", "6/8") or (only and truth.meter != only):
            continue
        for performed in (False, True):
            notes, sec = perform(truth, qpm, performed, seed=seed)
            e = beats.bar_evidence(notes)
            if e is None or not e.hyps:
                continue
            ref = reference_downbeats(truth, sec)
            first, last = notes[0].onset, max(n.onset for n in notes)
            ok = []
            for b, ph, gi in e.hyps:
                m = (beats.COMPOUND_METERS if e.subdivision == 3 else beats.SIMPLE_METERS)[b]
                g = beats._grid_from(e.grids[gi], m, e.first_beats[gi], ph, e.first, e.last_onset)
                est = [float(t) for t in g.downbeats() if first - 0.1 <= t <= last + 0.1]
                ok.append(str(m) == truth.meter and _f1(est, ref) >= 0.9)
            cases.append((truth.meter, e.subdivision, e.hyps, e.H, ok))
    return cases


def fit_bars(cases, l2: float = 0.3) -> tuple[list[float], dict]:
    """Conditional logit of the right bar hypothesis among all of a case (Newton steps, L2 ``l2`` on
    the feature weights), each meter weighing the same in total; returns (BAR_WEIGHTS, BAR_BIAS)."""
    import numpy as np

    from pianonotes.export import beats

    keys = sorted(beats.BAR_BIAS)
    nf = len(beats.BAR_FEATURES)
    usable = [c for c in cases if any(c[4])]
    count = Counter(c[0] for c in usable)
    data = []
    for meter_, sub, hyps, H, ok in usable:
        X = np.zeros((len(hyps), nf + len(keys)))
        X[:, :nf] = H
        for r, h in enumerate(hyps):
            X[r, nf + keys.index((sub, h[0]))] = 1.0
        y = np.asarray(ok, dtype=float)
        data.append((X, y / y.sum(), len(usable) / len(count) / count[meter_]))
    w = np.zeros(nf + len(keys))
    reg = np.r_[np.full(nf, l2), np.full(len(keys), 0.1)]
    for _ in range(200):
        g = reg * w
        Hs = np.diag(reg)
        for X, y, cw in data:
            s = X @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            g += cw * X.T @ (p - y)
            Hs += cw * X.T @ (np.diag(p) - np.outer(p, p)) @ X
        step = np.linalg.solve(Hs, g)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    right = sum(c[4][int(np.argmax(c[3] @ w[:nf] + np.asarray([w[nf + keys.index((c[1], h[0]))] for h in c[2]])))]
                for c in cases)
    print(f"fitted on {len(usable)} of {len(cases)} cases (the rest have no right hypothesis); "
          f"right on {right / max(1, len(cases)):.3f} of all cases")
    return [round(float(v), 3) for v in w[:nf]], {k: round(float(w[nf + i]), 3) for i, k in enumerate(keys)}


def reference_downbeats(truth: Truth, sec) -> list[float]:
    """Seconds of the score's bar lines from the first note's bar to the last note."""
    start_q = min(o for o, _, _ in truth.notes)
    end_q = max(o for o, _, _ in truth.notes)
    k = math.ceil(start_q / truth.bar) if start_q > 0 else 0
    ref = []
    while k * truth.bar <= end_q:
        ref.append(sec(float(k * truth.bar)))
        k += 1
    return ref


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", help="write per-piece rows and the summary as JSON")
    ap.add_argument("--bars", type=int, default=24, help="bars of each piece (default 24)")
    ap.add_argument("--only", help="only pieces whose path contains this")
    ap.add_argument("--condition", choices=("deadpan", "performed", "both"), default="both")
    ap.add_argument("--fit", action="store_true",
                    help="fit the beat-accent weights on pieces outside the benchmark and print them")
    ap.add_argument("--audio", action="store_true",
                    help="also render each piece with FluidSynth and score the transcription (shipped model)")
    ap.add_argument("--seeds", type=int, default=1, metavar="N",
                    help="score N independent performed renditions of each piece and report the mean "
                         "(deadpan is deterministic and scored once; default 1)")
    ap.add_argument("--fit-bars", action="store_true",
                    help="fit the bar-hypothesis weights (meter, phase) on pieces outside the benchmark and print them")
    ap.add_argument("--grid", help="divisions of the quarter note, e.g. 4,3,6,8 (default: the product's)")
    args = ap.parse_args(argv)
    grid = None
    if args.grid:
        try:
            grid = tuple(int(d) for d in args.grid.split(","))
        except ValueError:
            ap.error("--grid takes divisions of the quarter note separated by commas, e.g. 4,3")
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    if args.fit:
        print("ACCENT_WEIGHTS =", tuple(fit_accents(training_pieces())))
        return 0
    if args.fit_bars:
        weights, bias = fit_bars(bar_training_cases())
        print("BAR_WEIGHTS =", tuple(weights))
        print("BAR_BIAS =", bias)
        return 0
    rows = []
    conds = [False, True] if args.condition == "both" else [args.condition == "performed"]
    transcriber = None
    if args.audio:
        from pianonotes.transcribe import Transcriber

        transcriber = Transcriber.from_checkpoint(None)
    for i, (path, kind, qpm) in enumerate(PIECES):
        if args.only and args.only not in path:
            continue
        try:
            truth = load_truth(path, kind, args.bars)
        except Exception as exc:  # a corpus file that cannot be used is reported, not fatal
            print(f"skip {path}: {exc}", file=sys.stderr)
            continue
        runs = [(c, t, k) for c in conds for t in ([None, transcriber] if transcriber else [None])
                for k in (range(args.seeds) if c else (0,))]
        for performed, tr, k in runs:
            r = score_piece(truth, qpm, performed, seed=rendition_seed(i, k), transcriber=tr, grid=grid)
            r["rendition"] = k
            rows.append(r)
            print(f"{r['condition'] + (f' #{k}' if args.seeds > 1 and performed else ''):15s} {path:48s} {r['meter']:>5s} -> {r['est_meter']:5s} "
                  f"pickup {r['pickup']:>4s} -> {r['est_pickup']:4s} downbeat F1 {r['downbeat_f1']:.2f} "
                  f"onset+value {r['onset_value']:.2f} onset {r['onset']:.2f}", flush=True)
    summary = summarize(rows)
    for cond, s in summary.items():
        print(f"{cond}: {s}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"summary": summary, "pieces": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
