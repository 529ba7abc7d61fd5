"""The examples in the public API's docstrings run and show what they claim (doctest), so they stay true."""

from __future__ import annotations

import doctest
import importlib
import tempfile

import pytest

# the core modules whose docstrings hold examples
MODULES = [
    "l2h.algorithm",
    "l2h.reference",
    "l2h.exact",
    "l2h.hierarchy",
    "l2h.metrics",
    "l2h.validation",
    "l2h.io",
    "l2h.levels",
    "l2h.compare",
]
# the entry points a newcomer reads first: each must keep at least one example
REQUIRED = [
    "l2h.algorithm.l2h",
    "l2h.reference.literal_l2h",
    "l2h.hierarchy.Hierarchy",
    "l2h.hierarchy.Hierarchy.cut",
    "l2h.hierarchy.Hierarchy.to_linkage",
    "l2h.hierarchy.Hierarchy.from_linkage",
    "l2h.hierarchy.Hierarchy.to_newick",
    "l2h.hierarchy.Hierarchy.from_newick",
    "l2h.hierarchy.Hierarchy.save",
    "l2h.hierarchy.parse_newick",
    "l2h.metrics.evaluate",
]


def examples(name: str) -> list[doctest.DocTest]:
    return [test for test in doctest.DocTestFinder().find(importlib.import_module(name)) if test.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples that write files write them here
    tests = examples(name)
    assert tests, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_main_entry_points_have_examples():
    found = {test.name for name in MODULES for test in examples(name)}
    assert not [name for name in REQUIRED if name not in found]
