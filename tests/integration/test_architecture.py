"""The floors hold: no import circle, no import upward, nothing below the API imports slmcnn itself
(docs/ARCHITECTURE.md draws them; slmcnn.floors reads the imports from the source)."""

import pytest

from slmcnn import floors


def test_every_module_is_on_a_floor_and_no_import_goes_up_or_round():
    graph = floors.imports()
    assert {"", "api", "backends", "backends.profile", "adapt", "monitoring.watch"} <= set(graph)
    for name in graph:
        floors.floor_of(name)
    assert floors.circles(graph) == []
    assert floors.upward(graph) == []


def test_the_checks_find_what_they_are_for():
    graph = {"": {"api"}, "api": {"pipeline"}, "pipeline": {"outputs"}, "outputs": {"pipeline"}, "tiles": {"api"}}
    graph["labels"] = {""}  # a lower module taking names from slmcnn/__init__
    assert floors.circles(graph) == [["outputs", "pipeline"]]
    assert ("labels", "") in floors.upward(graph) and ("tiles", "api") in floors.upward(graph)
    with pytest.raises(KeyError, match="no floor"):
        floors.floor_of("newmodule")
