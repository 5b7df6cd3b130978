# Two commands on a fresh machine:  `make run` (the whole journey on the demo corpus)
# and `make test` (the test suite). Everything else is a step of these.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SER    := $(BIN)/ser
DEMO   := runs/demo
PORT   ?= 3000
CONFIG ?= configs/demo.yaml
export HF_HUB_OFFLINE ?= 1
export BENTOML_DO_NOT_TRACK := True
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

UV     := $(BIN)/uv
# uv installs the lock, and is itself pinned there (dev group): bootstrap exactly that version.
UV_VERSION := $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock)

.PHONY: run test test-fast lock check-lock chromium install corpus data model export serve retrain clean \
	bench-deps bench-prepare bench-train
.DELETE_ON_ERROR:

# Every install is exactly uv.lock (`uv sync --locked`: missing packages added, others removed);
# a pyproject.toml that no longer matches the lock stops here with one line.
install: check-lock
	$(UV) sync --locked --quiet --extra train --extra cluster

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

check-lock: | $(UV)
	@$(UV) lock --check --quiet 2>/dev/null || { echo "uv.lock does not match pyproject.toml:" \
	  "run 'make lock', then 'make test', and commit both" >&2; exit 1; }

# Upgrade on purpose: re-resolve every version within pyproject.toml's ranges, then run the whole
# suite (`make test`) and commit pyproject.toml with uv.lock and the Bento's requirements.
lock: | $(UV)
	$(UV) lock --upgrade
	$(MAKE) service/requirements.txt

# The Bento installs the same versions: the lock's runtime packages, exported.
service/requirements.txt: uv.lock
	$(UV) export --locked --quiet --no-dev --no-emit-project --no-hashes --output-file $@

corpus: $(DEMO)/corpus/metadata.csv
$(DEMO)/corpus/metadata.csv: | install
	$(SER) synth --output-dir $(DEMO)/corpus

data: $(DEMO)/data/summary.json
$(DEMO)/data/summary.json: $(DEMO)/corpus/metadata.csv
	$(SER) prepare --corpus auto --data-dir $(DEMO)/corpus --output-dir $(DEMO)/data --num-proc 2

# An existing model is kept; `make retrain` (or deleting runs/demo/model) trains again.
model: $(DEMO)/model/best/model.safetensors
$(DEMO)/model/best/model.safetensors: $(DEMO)/data/summary.json
	$(SER) train --config $(CONFIG) --data $(DEMO)/data --output-dir $(DEMO)/model

export: $(DEMO)/model/exported.txt
$(DEMO)/model/exported.txt: $(DEMO)/model/best/model.safetensors
	$(SER) export --checkpoint $(DEMO)/model/best > $@ && cat $@

run: install $(DEMO)/model/exported.txt
	@$(SER) evaluate --checkpoint $(DEMO)/model/best --data $(DEMO)/data --split test
	$(SER) serve --port $(PORT)

serve: install
	$(SER) serve --port $(PORT)

retrain:
	rm -rf $(DEMO)/model
	$(MAKE) run

test: install chromium
	$(BIN)/python -m pytest -q

# The inner loop: no training, no server, no browser (seconds to a few minutes).
test-fast: install
	$(BIN)/python -m pytest -q -m fast

# The browser test drives Debian's Chromium (Playwright's own browser download is not used).
chromium:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

# Benchmarks: the baseline recipes need FFmpeg (Debian package) and torchcodec.
bench-deps: check-lock
	command -v ffmpeg >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg)
	$(UV) sync --locked --quiet --extra train --extra cluster --group bench

bench-prepare: bench-deps
	$(BIN)/python scripts/bench_prepare.py

bench-train: bench-deps
	$(BIN)/python scripts/bench_train.py

clean:
	rm -rf runs
