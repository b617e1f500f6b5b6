# `make test` on a fresh clone: creates .venv in the repo root, installs everything, runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test sweep train parity clean docs-figures

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# pytest-xdist: one worker per core (much of a test's time is single-threaded tracing and compilation).
# `make test` leaves out the long sweeps (every variant of a family, marker `sweep`); `make sweep` runs just those.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not sweep" $(PYTEST_ARGS)

sweep: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m sweep $(PYTEST_ARGS)

# The main job: MNIST from $JAXCNN_DATA_DIR, else ../shared/data/mnist, else TFDS; TRAIN_ARGS passes flags.
DATA_DIR ?= $(or $(JAXCNN_DATA_DIR),$(wildcard ../shared/data/mnist))
train: $(STAMP)
	$(PY) -m train.mnist $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(TRAIN_ARGS)

# The pictures in docs/ (docs/inspect.md): mnist_cnn after one epoch on MNIST, then train.inspect on test image 0.
FIGURES := runs/docs-figures
docs-figures: $(STAMP)
	$(PY) -m train.mnist --model mnist_cnn --epochs 1 $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --out $(FIGURES) --overwrite --no-progress
	$(PY) -m train.inspect --checkpoint $(FIGURES) --out $(FIGURES)/inspect
	cp $(FIGURES)/inspect/guided_backprop.png $(FIGURES)/inspect/class_models.png docs/

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
