# Two commands on a fresh machine:  `make run` (the whole journey on the demo corpus)
# and `make test` (the test suite). Everything else is a step of these.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SER    := $(BIN)/ser
DEMO   := runs/demo
PORT   ?= 3000
CONFIG ?= configs/default.yaml
export HF_HUB_OFFLINE ?= 1
export BENTOML_DO_NOT_TRACK := True
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test chromium install corpus data model export serve retrain clean bench-deps bench-prepare bench-train
.DELETE_ON_ERROR:

install: $(VENV)/.installed

# The venv is rebuilt only when pyproject.toml changes; uv makes the install take seconds.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $@

corpus: $(DEMO)/corpus/metadata.csv
$(DEMO)/corpus/metadata.csv: | $(VENV)/.installed
	$(SER) synth --out $(DEMO)/corpus

data: $(DEMO)/data/summary.json
$(DEMO)/data/summary.json: $(DEMO)/corpus/metadata.csv
	$(SER) prepare --corpus auto --data-dir $(DEMO)/corpus --out $(DEMO)/data --num-proc 2

# An existing model is kept; `make retrain` (or deleting runs/demo/model) trains again.
model: $(DEMO)/model/best/model.safetensors
$(DEMO)/model/best/model.safetensors: $(DEMO)/data/summary.json
	$(SER) train --config $(CONFIG) --data $(DEMO)/data --output-dir $(DEMO)/model

export: $(DEMO)/model/exported.txt
$(DEMO)/model/exported.txt: $(DEMO)/model/best/model.safetensors
	$(SER) export --checkpoint $(DEMO)/model/best > $@ && cat $@

run: $(DEMO)/model/exported.txt
	@$(SER) evaluate --checkpoint $(DEMO)/model/best --data $(DEMO)/data --split test
	$(SER) serve --port $(PORT)

serve: | $(VENV)/.installed
	$(SER) serve --port $(PORT)

retrain:
	rm -rf $(DEMO)/model
	$(MAKE) run

test: $(VENV)/.installed chromium
	$(BIN)/python -m pytest -q

# The browser test drives Debian's Chromium (Playwright's own browser download is not used).
chromium:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

# Benchmarks: the baseline recipes need FFmpeg (Debian package) and torchcodec.
bench-deps: $(VENV)/.installed
	command -v ffmpeg >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev,bench]"

bench-prepare: bench-deps
	$(BIN)/python scripts/bench_prepare.py

bench-train: bench-deps
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf runs
