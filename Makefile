# Two commands do everything on a fresh machine:
#   make demo   train and evaluate a parallel capsule network (DATA=dir for real data)
#   make test   run the whole test suite once per backend (TensorFlow, JAX, PyTorch),
#               the backends side by side (TEST_JOBS=1: one after another), each
#               backend's tests in two processes (TEST_WORKERS="": one each)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=
TEST_JOBS ?= 3
TEST_WORKERS ?= tensorflow=2 jax=2 torch=2
DATA ?=
DEMO_ARGS ?=

.PHONY: venv test demo bench bench-all lint docs wheel-check clean

$(VENV)/.installed: pyproject.toml ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c ci/constraints.txt -e ".[tensorflow,jax,torch,tuner,test,docs]"
	touch $@

venv: $(VENV)/.installed

# Every backend runs, each in two processes of one thread (TEST_WORKERS), and the target
# fails if any backend fails; the logs are also in .test-logs/<backend>.log.
test: venv
	$(PY) ci/test_backends.py --backends $(BACKENDS) --jobs $(TEST_JOBS) \
		--workers $(TEST_WORKERS) -- -q $(PYTEST_ARGS)

demo: venv
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(VENV)/bin/keras-parcaps demo $(if $(DATA),--data $(DATA)) $(DEMO_ARGS)

# Regenerates the "Benchmark suite" tables of docs/benchmarks.md: every layer and
# builder, jit_compile off and on, against each backend's own matmul FLOP/s (about
# 10-15 minutes per backend on a quiet 2-core CPU). On a GPU:
#   make bench BENCH_ARGS="--size paper --timeout 300"
BENCH_ARGS ?=
bench: venv
	$(PY) benchmarks/suite.py --backend $(BACKENDS) $(BENCH_ARGS)

# Prints every per-component benchmark's markdown table, per backend (the figures of
# the hand-written sections of docs/benchmarks.md; minutes to hours on a CPU).
bench-all: venv
	@for backend in $(BACKENDS); do \
		for script in dr_caps em_caps group_conv2d parallel_branch models_step; do \
			echo "## $$script ($$backend)"; \
			KERAS_BACKEND=$$backend $(PY) benchmarks/$$script.py || exit 1; \
		done; \
	done
	$(PY) benchmarks/data_pipeline.py

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

wheel-check: venv
	PY=$(PY) ci/wheel_check.sh

lint: venv
	$(VENV)/bin/ruff check keras_parcaps tests examples benchmarks ci
	$(VENV)/bin/ruff format --check keras_parcaps tests examples benchmarks ci

clean:
	rm -rf $(VENV) build dist *.egg-info
