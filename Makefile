# Two commands do everything on a fresh machine:
#   make demo   train and evaluate a parallel capsule network (DATA=dir for real data)
#   make test   run the whole test suite once per backend (TensorFlow, JAX, PyTorch)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=
DATA ?=
DEMO_ARGS ?=

.PHONY: venv test demo bench lint docs wheel-check clean

$(VENV)/.installed: pyproject.toml ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c ci/constraints.txt -e ".[tensorflow,jax,torch,tuner,test,docs]"
	touch $@

venv: $(VENV)/.installed

test: venv
	@set -e; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PY) -m pytest -q $(PYTEST_ARGS) tests; \
	done

demo: venv
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(VENV)/bin/keras-parcaps demo $(if $(DATA),--data $(DATA)) $(DEMO_ARGS)

bench: venv
	@for backend in $(BACKENDS); do \
		KERAS_BACKEND=$$backend $(PY) benchmarks/run_all.py; \
	done

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

wheel-check: venv
	PY=$(PY) ci/wheel_check.sh

lint: venv
	$(VENV)/bin/ruff check keras_parcaps tests examples benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
