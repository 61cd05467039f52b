"""Every public name has a docstring with an example, and the examples run."""

import doctest
import importlib
import inspect

import numpy as np
import pytest

from tests.markers import once

PACKAGES = [
    "keras_parcaps.ops",
    "keras_parcaps.layers",
    "keras_parcaps.losses",
    "keras_parcaps.callbacks",
    "keras_parcaps.metrics",
    "keras_parcaps.models",
    "keras_parcaps.data",
    "keras_parcaps.evaluation",
    "keras_parcaps.explain",
    "keras_parcaps.training",
    "keras_parcaps.tuning",
]


def _public():
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{package}.{name}", obj


PUBLIC = dict(_public())
# Every package: each public class and function shows an example, which
# test_docstring_examples_run executes (sub-modules exported as names, such
# as `kp.training.builders`, are not classes or functions and are skipped).
WITH_EXAMPLES = (
    "keras_parcaps.ops.",
    "keras_parcaps.layers.",
    "keras_parcaps.losses.",
    "keras_parcaps.callbacks.",
    "keras_parcaps.metrics.",
    "keras_parcaps.models.",
    "keras_parcaps.data.",
    "keras_parcaps.evaluation.",
    "keras_parcaps.explain.",
    "keras_parcaps.training.",
    "keras_parcaps.tuning.",
)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_has_summary(name):
    doc = inspect.getdoc(PUBLIC[name])
    assert doc and doc.splitlines()[0].strip(), f"{name} has no summary line"


@pytest.mark.parametrize(
    "name", sorted(n for n in PUBLIC if n.startswith(WITH_EXAMPLES))
)
def test_building_blocks_have_examples(name):
    doc = inspect.getdoc(PUBLIC[name])
    assert "Example" in doc and ">>> " in doc, f"{name} has no runnable example"


# The building blocks' examples run on every backend: they show what a layer,
# an op or a loss computes, and that is the backend's work. The other
# packages' examples are programs (train, explain, evaluate a small model)
# whose every backend is checked by their own test modules; on JAX and
# TensorFlow their examples cost a compilation of each model (236 s and
# 100 s of the suite, measured), so they run once.
BACKEND_EXAMPLES = (
    "keras_parcaps.ops.",
    "keras_parcaps.layers.",
    "keras_parcaps.losses.",
    "keras_parcaps.callbacks.",
    "keras_parcaps.metrics.",
)


def _example_cases():
    for name in sorted(PUBLIC):
        if name.startswith(BACKEND_EXAMPLES):
            yield name
        else:
            yield pytest.param(
                name, marks=once("a program's example; its tests run everywhere")
            )


@pytest.mark.parametrize("name", _example_cases())
def test_docstring_examples_run(name):
    obj = PUBLIC[name]
    module = inspect.getmodule(obj)
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(obj, name, module=module, globs=dict(vars(module)))
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    np.random.seed(0)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    if ">>> " in (inspect.getdoc(obj) or ""):
        found = sum(len(test.examples) for test in tests)
        assert found > 0, f"the examples of {name} were not found"
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}"
