# `make run` and `make test` each set up a project-local virtualenv first (once).
# torch is installed on its own, pinned, so pip takes the CPU wheel and never a CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/constraints.txt | cksum | cut -d' ' -f1)
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: setup run test test-fast bench gpu-check clean

setup: $(STAMP)

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt -e ".[test]"
	# the compiled CPU kernels (LayerNorm LSTM, ByteNet highway), built once here into torch's
	# extension cache (without a compiler the torch-op paths run, and this line says so)
	-$(BIN)/python -m textvae_core.lstm_ext
	rm -f $(VENV)/.installed-*; touch $@

run: $(STAMP)
	$(BIN)/vaestudy run alpha-sweep --preset smoke

# The integration and browser tiers spend much of their time waiting (a server's or Ray's
# start, a subprocess's imports, an outage the test holds on purpose). The unit tier runs beside
# them at the lowest CPU priority (nice 19, one torch thread), so it takes the cycles they leave
# idle and not theirs (Ray's trial workers run at nice 15). Its output follows theirs, each with
# its slowest tests; make fails if either tier fails.
UNIT_LOG := $(VENV)/unit-tier.log
test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	@OMP_NUM_THREADS=1 nice -n 19 $(BIN)/python -m pytest -q -m unit -p no:cacheprovider \
	  --durations=5 > $(UNIT_LOG) 2>&1 & unit=$$!; trap 'kill $$unit 2>/dev/null' INT TERM; \
	echo "pytest -m 'not unit' (the unit tier runs beside it, its output below)"; \
	$(BIN)/python -m pytest -q -m "not unit" --durations=15; rest=$$?; \
	wait $$unit; fast=$$?; echo "--- pytest -m unit"; cat $(UNIT_LOG); \
	exit $$(( rest || fast ))

# The unit tier only (no Ray, no server, no study run, no browser), in two pytest-xdist workers
# of one torch thread each: under 3 minutes on 2 cores.
test-fast: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m unit -n 2 --dist worksteal

bench: $(STAMP)
	$(BIN)/vaestudy bench throughput --threads 1
	$(BIN)/vaestudy bench overhead

# Any Python with torch, numpy and pyarrow: this checkout's .venv when it has one, else $(PYTHON)
# (a GPU machine's own Python; no virtualenv is built). Without CUDA: one line, exit 0.
GPU_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-check:
	@$(GPU_PYTHON) -m textvae_core.gpu_check --out gpu-check.json

clean:
	rm -rf $(VENV) vaestudy-runs
