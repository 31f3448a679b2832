"""An out-of-tree ColdBench method, registered by one entry point in ``pyproject.toml``.

It exists to show, and to test, that a method in another installed package is held to the same contract suite
as in-repo methods, and that its TOML of defaults and ``[search]`` space ships with it (package data).
"""

from coldbench_example_plugin.item_median import ItemMedian

__all__ = ["ItemMedian"]
