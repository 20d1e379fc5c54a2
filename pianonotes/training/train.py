"""``pianonotes train``: AudioNet and the seed's baselines on a synthetic (or MSMD) dataset.

Single process or DistributedDataParallel under torchrun (gloo on the CPU, NCCL on GPUs). Checkpoints
are written atomically every ``save_every`` steps and at the end; ``resume`` continues exactly
(weights, optimizer, data order, step, RNG). Library code: progress goes to a callback, never a print.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pianonotes import constants
from pianonotes.errors import PianonotesError
from pianonotes.datasets.msmd import MsmdOptions
from pianonotes.datasets.recordings import labelled_recordings, load_split
from pianonotes.training.batches import ComboLookup, WindowSampler, audio_batch, batch_arrays, combo_vocab


@dataclasses.dataclass
class TrainConfig:
    """One training run, as ``pianonotes train`` sets it; recorded whole in every checkpoint's JSON as
    ``train_config`` (:meth:`to_dict`; :meth:`from_dict` reads it back).

    Units: a *step* is one optimizer update over ``batch_size`` windows per process; a *window* is
    ``window`` output frames (at the front end's frame rate: 50 frames/s for AudioNet's, 20 for MSMD's)
    plus the network's context; audio amounts are in hours or seconds of the recordings.
    """

    data: str | None = None  # dataset folder made by `pianonotes data synth` (ignored with msmd)
    out: str = "runs/audionet"  # folder of the checkpoints (best, last, their -state) and metrics.jsonl
    arch: str = "audionet"  # a key of pianonotes.nn.archs.ARCHS
    epochs: float = 10.0  # passes over the training windows (fractions allowed); max_steps overrides it
    max_steps: int | None = None  # stop after this many steps (0: only the initial checkpoint)
    max_minutes: float | None = None  # also stop (validated and saved) after this much wall time of training
    # stop (validated and saved) at this step while the schedule stays that of max_steps: a run cut into
    # pieces, or one a resume with another --max-steps re-schedules (an earlier anneal), made reproducible
    stop_at_step: int | None = None
    batch_size: int = 16  # windows per step, per process
    window: int = 200  # output frames per training window
    lr: float | None = None  # default: 1e-3 AdamW (audionet), 0.01 SGD (seed-mlp, linear)
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    warmup_steps: int = 200  # steps of linear learning-rate warm-up before the cosine decay (AudioNet)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # seeds the weights, the window order and the online acoustics
    save_every: int = 500  # steps between resumable checkpoints (last, and best after validation)
    keep_from: int = 0  # from this step on, also keep every save's weights as step-NNNNNN (for averaging); 0: off
    val_every: int = 0  # steps; 0: at each save
    val_seconds: float = 600.0  # seconds of validation audio scored during training
    limit_hours: float | None = None  # use only this many hours of training audio
    workers: int = 0  # DataLoader worker processes (0: batches built in the training process)
    onset_weight: float = 3.0  # loss weight of the onset head
    onset_pos_weight: float = 5.0  # BCE weight of onset positives
    max_classes: int = 35531  # combination vocabulary of the seed's models
    arch_config: dict = dataclasses.field(default_factory=dict)  # keyword arguments of the architecture
    msmd: MsmdOptions | None = None  # train on MSMD (pianonotes.datasets.msmd) instead of a synthetic dataset
    train_split: str = "train"  # sub-folders of `data` to train and validate on
    val_split: str = "validation"
    online_augment: bool = False  # real acoustics drawn afresh per window (pianonotes.datasets.synth.acoustics)
    rooms: str | None = None  # room bank file (default: the cache's, made by `pianonotes data rooms`)
    string_resonance: float = 0.0  # with online_augment: share of windows given sympathetic string resonance
    init_from: str | None = None  # warm start: copy every tensor of this checkpoint whose name and shape fit
    val_real: str | None = None  # folder of real recordings with labels: chooses the best checkpoint
    val_real_seconds: float = 60.0  # of each real recording, during training
    key_weight: float = 1.0  # loss weight of the key-down head (AudioNet v2)
    pedal_weight: float = 0.5  # loss weight of the sustain-pedal head (AudioNet v2)

    def to_dict(self) -> dict:
        """JSON-ready: every field, ``msmd`` as :meth:`MsmdOptions.to_dict` (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From :meth:`to_dict` (a checkpoint's ``train_config``); keys of other versions are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("msmd") is not None:
            kw["msmd"] = MsmdOptions.from_dict(kw["msmd"])
        return cls(**kw)


def load_data(cfg: TrainConfig, frontend=None, on_event: Callable | None = None):
    """(train recordings, validation recordings, front end config, data description)."""
    if cfg.msmd is not None:
        from pianonotes.datasets.msmd import training_data

        return training_data(cfg.msmd, on_event=on_event)
    if not cfg.data:
        raise PianonotesError("no training data: pass --data DIR (made by `pianonotes data synth`) or --msmd PATH")
    from pianonotes.features.logspec import LogSpecFrontEnd

    root = Path(cfg.data)
    if not root.is_dir():
        raise PianonotesError(f"dataset folder {root} not found; make one with `pianonotes data synth {root}`")
    fe = frontend or LogSpecFrontEnd()
    limit = cfg.limit_hours * 3600 if cfg.limit_hours else None
    prog = (lambda i, n: on_event("loading", {"done": i, "total": n})) if on_event else None
    train = load_split(root, cfg.train_split, fe, limit_seconds=limit, on_progress=prog,
                         keep_audio=cfg.online_augment)
    val = []
    if (root / cfg.val_split).is_dir():
        val = load_split(root, cfg.val_split, fe, limit_seconds=cfg.val_seconds)
    manifest = {}
    if (root / "manifest.json").exists():
        try:
            manifest = json.loads((root / "manifest.json").read_text())
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise PianonotesError(f"{root / 'manifest.json'} is damaged ({exc}); run `pianonotes data synth` on "
                                  "the folder again with its settings, or restore the file") from exc
    if manifest.get("evaluation_only"):
        raise PianonotesError(f"{root} is an evaluation-only dataset (reserved soundfont); never train on it")
    desc = {
        "dataset": str(root.resolve()),
        "format": manifest.get("format", "unknown"),
        "train_hours": round(sum(r.n_frames for r in train) / fe.fps / 3600, 3),
        "soundfonts": sorted(manifest.get("soundfonts", {})),
        "licenses": manifest.get("licenses", []),
        "attribution": manifest.get("attribution", ""),
        "synth_config": manifest.get("config", {}),
        "pianos": manifest.get("pianos", {}),
    }
    if cfg.online_augment:
        from pianonotes.datasets.synth.acoustics import OnlineAugment

        desc["online_augment"] = OnlineAugment(resonance_p=cfg.string_resonance).to_dict()
    return train, val, fe.to_dict(), desc


class _EpochBatches:
    """The batches of one epoch in order, built on demand (by DataLoader workers when there are some)."""

    def __init__(self, recs, order: np.ndarray, global_batch: int, rank: int, world: int, window: int,
                 past: int, future: int, *, seed: tuple = (), frontend=None, augment=None, rooms=None):
        self.recs, self.order, self.gb = recs, order, global_batch
        self.rank, self.world, self.window, self.past, self.future = rank, world, window, past, future
        self.seed, self.frontend, self.augment, self.rooms = tuple(seed), frontend, augment, rooms

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.gb)

    def __getitem__(self, i: int):
        i %= len(self)  # every epoch has the same number of steps (the first epoch's), for exact resumes
        pos = self.order[i * self.gb: (i + 1) * self.gb][self.rank::self.world]
        if self.augment is not None:  # online acoustics: seeded by (seed, epoch, batch, rank), exact on resume
            return audio_batch(self.recs, pos, self.window, self.past, self.future, self.frontend,
                                 (*self.seed, i, self.rank), self.augment, self.rooms)
        return batch_arrays(self.recs, pos, self.window, self.past, self.future)


def _lr_at(step: int, total: int, base: float, warmup: int, cosine: bool, time_done: float = 0.0) -> float:
    """Linear warm-up, then a cosine decay to 5 % over the steps, or over the wall time when ``time_done``
    (the share of ``--max-minutes`` used) is further along: the decay ends whichever runs out first."""
    if not cosine:
        return base
    if step < warmup:
        return base * (step + 1) / warmup
    prog = min(1.0, max((step - warmup) / max(1, total - warmup), time_done))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))


def _dist():
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if os.environ.get("PIANONOTES_DDP_BACKEND", "") == "nccl" else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if world > 1 else 0
    return rank, world


def _save_state(path: Path, model, opt, meta: dict) -> None:
    """Optimizer and RNG state (safetensors + JSON, no pickle), for an exact resume."""
    import torch
    from safetensors.torch import save as st_save

    from pianonotes.fileio import write_bytes_atomic, write_text_atomic

    sd = opt.state_dict()
    tensors = {}
    scalars = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    tensors["rng.torch"] = torch.get_rng_state()
    write_bytes_atomic(path.with_suffix(".safetensors"), st_save(tensors))
    meta = dict(meta, param_groups=sd["param_groups"], opt_scalars=scalars)
    write_text_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1))


RESUME_HINT = "; resume from another checkpoint (e.g. best) or start afresh in a new --out folder"


def _load_state(path: Path, opt) -> dict:
    """The optimizer and RNG state saved by :func:`_save_state` into ``opt``; returns its JSON. A state
    that is cut short, incomplete or made for other parameters raises PianonotesError (nothing changed)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    json_path, st_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise PianonotesError(f"training state {json_path} is unreadable ({exc}){RESUME_HINT}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list) \
            or isinstance(meta.get("step"), bool) or not isinstance(meta.get("step"), int) \
            or not isinstance(meta.get("best", -1.0), (int, float)):
        raise PianonotesError(f"training state {json_path} is incomplete (it needs step and param_groups)"
                              f"{RESUME_HINT}")
    try:
        tensors = load_file(os.fspath(st_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PianonotesError(f"training state {st_path} is unreadable ({exc}){RESUME_HINT}") from exc
    saved = opt.state_dict()
    try:
        state: dict[int, dict[str, Any]] = {}
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, pid, k = key.split(".", 2)
                state.setdefault(int(pid), {})[k] = v
        for key, v in (meta.get("opt_scalars") or {}).items():
            pid, k = key.split(".", 1)
            state.setdefault(int(pid), {})[k] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        for group in opt.param_groups:  # load_state_dict checks the group sizes, not the shapes
            for param in group["params"]:
                for k, v in opt.state.get(param, {}).items():
                    if torch.is_tensor(v) and v.dim() and v.shape != param.shape:
                        raise ValueError(f"{k} has shape {tuple(v.shape)} for a parameter of {tuple(param.shape)}")
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
        opt.load_state_dict(saved)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PianonotesError(f"training state {path} does not fit this model's optimizer ({msg}): it was saved "
                              f"for another --arch or other options{RESUME_HINT}") from exc
    return meta


def _resume(path: str, cfg: TrainConfig, model, opt, *, batch: int, world: int) -> dict:
    """Load ``path`` (``runs/x/last``: the weights and ``last-state``) into ``model`` and ``opt`` for an exact
    continuation; returns the state's JSON. Refuses a pair from different saves, another architecture, and
    another batch or window (the data order would differ)."""
    from pianonotes.nn import checkpoint as ckpt

    state_path = Path(path)
    state_path = state_path.with_suffix("") if state_path.suffix in (".json", ".safetensors") else state_path
    if not state_path.name.endswith("-state"):
        state_path = state_path.with_name(state_path.name + "-state")
    if not state_path.with_suffix(".json").exists():
        raise PianonotesError(f"no training state at {state_path}.json to resume from")
    weights_path = state_path.with_name(state_path.name[: -len("-state")])
    m, wcfg = ckpt.load(weights_path)
    if wcfg.get("arch") != cfg.arch:
        raise PianonotesError(f"--resume {weights_path} was trained with --arch {wcfg.get('arch')}; resume with "
                              f"--arch {wcfg.get('arch')} or start afresh in a new --out folder")
    try:
        model.load_state_dict(m.state_dict(), strict=True)
    except RuntimeError as exc:
        raise PianonotesError(f"--resume {weights_path} does not fit this model ({str(exc).splitlines()[0]}): it "
                              "was trained with other options (e.g. --pedal-heads); use the same options") from exc
    meta = _load_state(state_path, opt)
    if wcfg.get("step") is not None and wcfg.get("step") != meta["step"]:
        raise PianonotesError(f"--resume {weights_path}: the weights are from step {wcfg.get('step')} but "
                              f"{state_path.name} is from step {meta['step']} (files from different saves)"
                              f"{RESUME_HINT}")
    for key, now, flag in (("batch_size", batch, "--batch-size"), ("world", world, "processes (torchrun)"),
                           ("window", cfg.window, "--window")):
        if key in meta and meta[key] != now:
            raise PianonotesError(f"--resume {weights_path} was trained with {meta[key]} {flag}, this run has {now}; "
                                  f"resume with the same value (an exact resume needs the same data order) or "
                                  "start afresh in a new --out folder")
    # the run's history travels on: its warm start and the steps where it was resumed before
    return dict(meta, run_warm_start=wcfg.get("warm_start"), run_resumed_at=list(wcfg.get("resumed_at") or []))


def warm_start(model, path: str) -> dict:
    """Copy every tensor of checkpoint ``path`` whose name and shape match into ``model``; returns what
    was copied and what starts fresh (reported in the new checkpoint's config, never silent)."""
    import torch
    from safetensors.torch import load_file

    from pianonotes.nn import checkpoint as ckpt

    cfg_path, weights = ckpt.resolve(path)
    src = load_file(os.fspath(weights), device="cpu")
    own = model.state_dict()
    copied, fresh, skipped = [], [], []
    with torch.no_grad():
        for name, t in own.items():
            if name in src and tuple(src[name].shape) == tuple(t.shape):
                t.copy_(src[name].to(t.dtype))
                copied.append(name)
            else:
                fresh.append(name)
    skipped = [n for n in src if n not in own]
    if not copied:
        raise PianonotesError(f"--init-from {path}: no tensor of that checkpoint fits this architecture")
    return {"from": str(cfg_path), "weights_sha256": ckpt.sha256(weights), "copied": len(copied),
            "fresh": fresh, "unused": skipped}


def validate(model, recs, fps: float, device: str, options=None) -> dict[str, float]:
    """Note and frame metrics of ``model`` on recordings (features already computed)."""
    from pianonotes.decode import DecodeOptions, decode
    from pianonotes.engine import infer_features
    from pianonotes.training.metrics import aggregate, transcription_scores

    was_training = model.training
    model.eval()
    rows, weights = [], []
    for rec in recs:
        probs = infer_features(model, rec.features.astype(np.float32), device=device)
        est = decode(probs["frame"], probs["onset"], probs["velocity"], fps=fps, options=options or DecodeOptions())
        dur = rec.n_frames / fps
        rows.append(transcription_scores(rec.notes, est, dur))
        weights.append(dur)
    if was_training:
        model.train()
    return aggregate(rows, weights)


def train(cfg: TrainConfig, *, resume: str | None = None, on_event: Callable[[str, dict], None] | None = None,
          stop: Callable[[], bool] | None = None) -> dict:
    """Train; returns a summary. ``on_event(kind, info)`` receives 'loading', 'start', 'step', 'val',
    'save' and 'done' events. KeyboardInterrupt saves a resumable checkpoint before it propagates."""
    import torch
    from torch.nn import functional

    from pianonotes.inference import pick_device
    from pianonotes.nn import checkpoint as ckpt
    from pianonotes.nn.archs import ARCHS, build

    if cfg.arch not in ARCHS:
        raise PianonotesError(f"unknown architecture '{cfg.arch}'; choose one of {', '.join(ARCHS)}")
    emit = on_event or (lambda kind, info: None)
    rank, world = _dist()
    device = pick_device(cfg.device, backend="torch")
    if device.startswith("cuda") and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PianonotesError(f"cannot create {out}: {exc.strerror}") from exc

    train_recs, val_recs, fe_cfg, desc = load_data(cfg, on_event=emit if rank == 0 else None)
    if not train_recs:
        raise PianonotesError("the training split is empty")
    from pianonotes.features import frontend_from_config

    fe = frontend_from_config(fe_cfg)
    fps = fe.fps
    n_features = fe.n_features if train_recs[0].features is None else train_recs[0].features.shape[1]
    augment = rooms = None
    if cfg.online_augment:
        from pianonotes.datasets.synth.acoustics import OnlineAugment, load_room_bank, room_bank_path

        augment = OnlineAugment(resonance_p=cfg.string_resonance)
        rooms = load_room_bank(cfg.rooms)
        desc["rooms"] = {"file": str(room_bank_path() if cfg.rooms is None else cfg.rooms), "count": len(rooms)}
    real_recs = []
    if cfg.val_real and rank == 0:
        real_recs = labelled_recordings(cfg.val_real, fe, seconds_per_file=cfg.val_real_seconds)
    arch_cfg = dict(cfg.arch_config)
    vocab = None
    if cfg.arch in ("seed-mlp", "linear"):
        vocab = combo_vocab(train_recs, cfg.max_classes)
        arch_cfg["n_classes"] = int(len(vocab))
        if cfg.arch == "seed-mlp":
            arch_cfg.setdefault("hidden", [300, 1000, 600, 300])
        arch_cfg_for_build = dict(arch_cfg, vocab=vocab)
    else:
        arch_cfg_for_build = arch_cfg
    model = build(cfg.arch, n_features, arch_cfg_for_build).to(device)
    warm = None
    if cfg.init_from and not resume:
        warm = warm_start(model, cfg.init_from)
        emit("warm_start", warm)
    past, future = int(model.past), int(model.future)
    combo = model.kind == "combo"  # every architecture of nn.archs declares its kind
    combo_lookup = ComboLookup(vocab) if combo else None
    is_seed = cfg.arch in ("seed-mlp", "linear")
    base_lr = cfg.lr or (0.01 if is_seed else 1e-3)
    if is_seed:
        opt = torch.optim.SGD(model.parameters(), lr=base_lr)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=base_lr, weight_decay=cfg.weight_decay)
    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[int(device.split(":")[1])] if device.startswith("cuda:") else None)

    # seed's batch is 16 frames; ours are windows of frames
    batch = cfg.batch_size
    sampler = WindowSampler(train_recs, cfg.window, cfg.seed)
    per_epoch = math.ceil(len(sampler.epoch(0)) / (batch * world))
    total_steps = cfg.max_steps or max(1, int(cfg.epochs * per_epoch))
    step, epoch, best = 0, 0, -1.0
    if resume:
        meta = _resume(resume, cfg, model, opt, batch=batch, world=world)
        step, best = int(meta["step"]), float(meta.get("best", -1.0))
        warm, resumed_at = meta["run_warm_start"], [*meta["run_resumed_at"], step]

    config_base = {
        "arch": cfg.arch, "arch_config": arch_cfg, "n_features": n_features, "frontend": fe_cfg,
        "fps": fps, "past_frames": past, "future_frames": future,
        "lookahead_seconds": future / fps + frontend_from_config(fe_cfg).lookahead_seconds,
        "decode": {"onset_threshold": constants.ONSET_THRESHOLD, "frame_threshold": constants.FRAME_THRESHOLD,
                   "min_note_seconds": constants.MIN_NOTE_SECONDS},
        "data": desc, "train_config": cfg.to_dict(),
    }
    if warm:
        config_base["warm_start"] = warm
    if resume:
        config_base["resumed_at"] = resumed_at  # steps where this run was continued (e.g. in a later session)

    def save(name: str, metrics: dict | None = None, *, state: bool = True) -> None:
        if rank != 0:
            return
        conf = dict(config_base, step=step, metrics=metrics or {})
        ckpt.save(out / name, model, conf)
        if not state:  # weights only (kept for devtools.average, not resumable)
            return
        _save_state(out / f"{name}-state", model, opt, {"step": step, "best": best, "arch": cfg.arch,
                                                         "batch_size": batch, "world": world, "window": cfg.window})
        emit("save", {"path": str(out / name), "step": step})

    log_path = out / "metrics.jsonl"
    metrics: dict = {}

    def validate_and_save() -> None:
        """Score the validation split (rank 0), keep the best checkpoint, save the last one."""
        nonlocal metrics, best
        if (val_recs or real_recs) and rank == 0:
            metrics = validate(model, val_recs, fps, device) if val_recs else {}
            if real_recs:  # real piano recordings choose the checkpoint (validation only, never trained on)
                real = validate(model, real_recs, fps, device)
                metrics.update({f"real_{k}": v for k, v in real.items()})
            log({"step": step, "val": metrics})
            emit("val", {"step": step, **metrics})
            score = metrics.get("real_note_f1", metrics.get("note_f1", 0))
            if score > best:
                best = score
                save("best", metrics)
        save("last", metrics)
        if cfg.keep_from and step >= cfg.keep_from:
            save(f"step-{step:06d}", metrics, state=False)

    def log(row: dict) -> None:
        if rank == 0:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    emit("start", {"total_steps": total_steps, "per_epoch": per_epoch, "step": step, "device": device,
                   "world": world, "train_hours": desc.get("train_hours"), "params": sum(
                       p.numel() for p in model.parameters())})
    use_amp = device.startswith("cuda")
    torch.set_grad_enabled(True)  # a caller may have switched autograd off globally
    onset_pos_weight = torch.tensor(cfg.onset_pos_weight, device=device)
    model.train()
    t_last, frames_since = time.time(), 0
    t_start = t_last
    deadline = t_last + cfg.max_minutes * 60 if cfg.max_minutes else None

    def out_of_time() -> bool:
        return (deadline is not None and time.time() >= deadline) or (
            cfg.stop_at_step is not None and step >= cfg.stop_at_step)

    try:
        while step < total_steps:
            epoch = step // per_epoch
            order = sampler.epoch(epoch)
            first = step % per_epoch
            batches = _EpochBatches(train_recs, order, batch * world, rank, world, cfg.window, past, future,
                                    seed=(cfg.seed, epoch), frontend=fe, augment=augment, rooms=rooms)
            loader = torch.utils.data.DataLoader(
                batches, batch_size=None, sampler=range(first, per_epoch), num_workers=cfg.workers,
                pin_memory=device.startswith("cuda"), persistent_workers=False,
                generator=torch.Generator().manual_seed(cfg.seed + epoch))  # keeps the global RNG (dropout) untouched
            for b in loader:
                if step >= total_steps or (stop and stop()) or out_of_time():
                    break
                if len(b["x"]) == 0:
                    continue
                b = {k: torch.as_tensor(np.asarray(v)) for k, v in b.items()}
                x, fr = b["x"], b["frame"].numpy()
                xt = b["x"].to(device, non_blocking=True)
                time_done = (time.time() - t_start) / (deadline - t_start) if deadline else 0.0
                lr = _lr_at(step, total_steps, base_lr, cfg.warmup_steps, not is_seed, time_done)
                for g in opt.param_groups:
                    g["lr"] = lr
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    res = ddp_model(xt)
                if combo:
                    tgt = torch.from_numpy(combo_lookup(fr)).to(device)
                    loss = functional.cross_entropy(res["logits"].float().reshape(-1, res["logits"].shape[-1]),
                                           tgt.reshape(-1), ignore_index=-100)
                    parts = {"ce": loss.item()}
                else:
                    frt, ont, vet = (b[k].to(device) for k in ("frame", "onset", "velocity"))
                    # onsets are rare (~0.2 % of key-frames): weight their positives and their loss, and
                    # calibrate the decoding thresholds on validation data afterwards (tools.ship)
                    l_on = functional.binary_cross_entropy_with_logits(res["onset"].float(), ont, pos_weight=onset_pos_weight)
                    l_fr = functional.binary_cross_entropy_with_logits(res["frame"].float(), frt)
                    l_ve = ((res["velocity"].float() - vet) ** 2 * ont).sum() / ont.sum().clamp(min=1)
                    loss = cfg.onset_weight * l_on + l_fr + 0.5 * l_ve
                    parts = {"onset": l_on.item(), "frame": l_fr.item(), "velocity": l_ve.item()}
                    if "key" in res:
                        l_key = functional.binary_cross_entropy_with_logits(res["key"].float(), b["key"].to(device))
                        loss = loss + cfg.key_weight * l_key
                        parts["key"] = l_key.item()
                    if "pedal" in res:
                        mask = b["pedal_mask"].to(device)
                        bce = functional.binary_cross_entropy_with_logits(res["pedal"].float(), b["pedal"].to(device),
                                                                 reduction="none")
                        l_ped = (bce * mask).sum() / (mask.sum() * bce.shape[1]).clamp(min=1)
                        loss = loss + cfg.pedal_weight * l_ped
                        parts["pedal"] = l_ped.item()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
                opt.step()
                step += 1
                frames_since += len(x) * cfg.window * world
                if step % 10 == 0 or step == total_steps:
                    now = time.time()
                    fps_train = frames_since / max(now - t_last, 1e-9)
                    t_last, frames_since = now, 0
                    row = {"step": step, "epoch": round(step / per_epoch, 3), "loss": loss.item(), "lr": lr,
                           "frames_per_s": round(fps_train, 1), **parts}
                    log(row)
                    emit("step", dict(row, total_steps=total_steps))
                if step % cfg.save_every == 0 or (cfg.val_every and step % cfg.val_every == 0):
                    validate_and_save()
            if (stop and stop()) or out_of_time():
                break
    except KeyboardInterrupt:
        save("last", metrics)
        raise
    validate_and_save()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    emit("done", {"step": step, "metrics": metrics, "out": str(out)})
    return {"step": step, "metrics": metrics, "out": str(out), "best_note_f1": best}
