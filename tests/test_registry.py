"""The registry: in-repo lines plus ``coldbench.methods`` entry points, with clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmark import registry
from benchmark.api import Method
from benchmark.cli import main
from methods import REGISTRY


def fake_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution on ``root``: what pip writes, so importlib.metadata finds it."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[coldbench.methods]\n{lines}\n")


def test_every_registry_line_loads_a_method_class() -> None:
    for name in REGISTRY:
        assert registry.NAME.match(name)
        assert issubclass(registry.load_method(name), Method)


def test_a_duplicate_name_from_an_entry_point_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, "dup_plugin", {"popularity": "dup_plugin:Whatever"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registry.RegistryError, match="'popularity' is registered twice"):
        registry.load_method("popularity")
    assert "popularity" in registry.problems()
    assert issubclass(registry.load_method("item-mean"), Method)  # only the duplicated name is unusable


def test_a_broken_entry_point_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_distribution(tmp_path, "broken_plugin", {"broken-method": "no_such_module_here:Thing"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "broken-method" in registry.available()
    with pytest.raises(registry.RegistryError, match=r"broken-method.*no_such_module_here:Thing"):
        registry.load_method("broken-method")
    assert (
        main(["run", "--method", "broken-method", "--task", "L-beauty-k1", "--data-dir", str(tmp_path)]) == 2
    )


def test_unknown_method_lists_the_registered_ones() -> None:
    with pytest.raises(registry.RegistryError, match=r"registered: .*popularity"):
        registry.load_method("nope")


def test_installed_plugin_package_shows_up_in_methods_list(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:  # installed, with its entry point (another test may only put its folder on sys.path)
        distribution("coldbench-example-plugin")
    except PackageNotFoundError:
        pytest.skip("tests/plugin_example is installed by tox -e py (pip install it)")
    assert main(["methods", "list", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["item-median"]["family"] == ["R"]
    assert rows["item-median"]["class"] == "coldbench_example_plugin:ItemMedian"
    assert set(REGISTRY) <= set(rows)
    assert sys.modules["coldbench_example_plugin"]


def test_a_method_name_that_cannot_be_a_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, "slash_plugin", {"a/b": "slash_plugin:Thing"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registry.RegistryError, match="method names must match"):
        registry.load_method("a/b")
    assert issubclass(registry.load_method("popularity"), Method)
