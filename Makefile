# pianonotes developer tasks. `make install` sets up .venv; everything else uses it.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DATA    ?= $(HOME)/.cache/pianonotes/data
RUNS    ?= runs
STEPS   ?= 5000
SEED_STEPS ?= 8000
export PIP_DISABLE_PIP_VERSION_CHECK=1

setup: system-deps install

.PHONY: setup install system-deps test test-fast lint data data-eval model bench example clean

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
	  musescore3 chromium chromium-driver >/dev/null

test: install
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check pianonotes tests

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

# Regenerates models/audionet.* and models/MODEL_CARD.md from scratch: render (about 10 min), train
# AudioNet (about 55 min on 2 cores), the seed's two baselines on the same data (about 15 min), then
# calibrate the thresholds on the validation split and score everything on the test splits.
model: data data-eval
	$(BIN)/pianonotes train --data $(DATA)/synth-v1 --arch audionet --max-steps $(STEPS) \
	  --save-every 200 --out $(RUNS)/audionet --device cpu
	$(BIN)/pianonotes train --data $(DATA)/synth-v1 --arch seed-mlp --batch-size 1 --window 16 \
	  --max-steps $(SEED_STEPS) --save-every $(SEED_STEPS) --out $(RUNS)/seed-mlp --device cpu
	$(BIN)/pianonotes train --data $(DATA)/synth-v1 --arch linear --batch-size 1 --window 16 \
	  --max-steps $(SEED_STEPS) --save-every $(SEED_STEPS) --out $(RUNS)/linear --device cpu
	$(BIN)/python -m pianonotes.tools.ship $(RUNS)/audionet/best models/audionet \
	  --eval $(DATA)/synth-v1 --eval $(DATA)/synth-v1-csound --eval $(DATA)/synth-v1-musescore \
	  --baseline seed-mlp=$(RUNS)/seed-mlp/last --baseline linear=$(RUNS)/linear/last

bench: install
	$(BIN)/python -m pianonotes.tools.bench

clean:
	rm -rf build dist *.egg-info .pytest_cache
