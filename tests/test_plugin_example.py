"""The out-of-tree example method (``tests/plugin_example``) and the README walk-through that shows it.

The README's "Add your method" quotes the example's files whole, so a test keeps the two identical; the
installed package must carry its TOML (package data), or ``tox -e py`` would run it without its defaults.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark import harness, tuning
from benchmark.api import ColdBatch, Interactions
from tests.tiny_tasks import tiny_task

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "plugin_example"
PACKAGE = EXAMPLE / "coldbench_example_plugin"


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_walkthrough_quotes_the_example_files_whole() -> None:
    section = _readme_section("Add your method")
    blocks = re.findall(r"```(?:python|toml)\n(.*?)```", section, re.DOTALL)
    for path in (EXAMPLE / "pyproject.toml", PACKAGE / "item_median.py", PACKAGE / "item_median.toml"):
        assert path.read_text() in blocks, f"README's 'Add your method' no longer shows {path.name} verbatim"
    assert "COLDBENCH_PLUGINS=tests/plugin_example tox -e py" in section


def _example_module():
    """``item_median`` as installed (tox -e py), else from the source tree (its TOML sits beside it)."""
    if importlib.util.find_spec("coldbench_example_plugin") is None:
        sys.path.insert(0, str(EXAMPLE))
    from coldbench_example_plugin import item_median

    return item_median


def test_defaults_and_search_space_come_from_the_toml() -> None:
    cls = _example_module().ItemMedian
    assert cls.default_config("R") == {"min_ratings": 1, "user_shift": 0.0}
    assert tuning.search_space(cls, "R") == {"min_ratings": [1, 3, 10], "user_shift": [0.0, 0.5, 1.0]}


def test_query_user_is_a_position_in_the_batch() -> None:
    method = _example_module().ItemMedian({"min_ratings": 1, "user_shift": 1.0}, seed=0)
    method.median, method.low, method.high = np.array([3.0, 4.0, 2.0]), 1.0, 5.0

    def rows(user: list[int], item: list[int], rating: list[float]) -> Interactions:
        return Interactions(np.array(user), np.array(item), np.array(rating), np.full(len(user), -1))

    batch = ColdBatch(
        users=np.array([917, 42]),  # global indices; everything else in the batch uses positions 0 and 1
        support=rows([0, 1], [0, 1], [4.0, 3.0]),  # user 917 rates 1 above the median, user 42 1 below
        history=rows([], [], []),
        query_user=np.array([1, 0, 0]),
        query_item=np.array([2, 2, 1]),
    )
    np.testing.assert_array_equal(method.predict(batch), [1.0, 3.0, 5.0])


def test_fit_sets_the_validation_score_from_view_validate() -> None:
    enc = tiny_task("R")
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    view = harness.make_view(enc, budget, deadline=float("inf"))
    cls = _example_module().ItemMedian
    method = cls(cls.default_config("R"), seed=0)
    method.fit(view, budget)
    assert method.validation_score == pytest.approx(view.validate(method.predict))
    assert method.validation_score < 0  # minus the validation users' user_mae


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build")
def test_the_installed_package_carries_its_toml(tmp_path: Path) -> None:
    """What ``tox -e py`` does (a wheel install, not the source tree): the TOML must be package data."""
    source, target = tmp_path / "source", tmp_path / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--no-index", "--target", str(target), str(source)], check=True, cwd=tmp_path)
    assert (target / "coldbench_example_plugin" / "item_median.toml").is_file()
    probe = (
        "import inspect, json; from benchmark.registry import load_method, registrations; "
        "cls = load_method('item-median'); dist = registrations()['item-median'].dist; "
        "print(json.dumps([inspect.getfile(cls), cls.default_config('R'), dist]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env)
    where, defaults, dist = json.loads(out.stdout)
    assert Path(where).is_relative_to(target) and dist == "coldbench-example-plugin"
    assert defaults == {"min_ratings": 1, "user_shift": 0.0}
