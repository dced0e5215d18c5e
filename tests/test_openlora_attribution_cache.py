"""InferenceAttribution's cache of differentiable adapter copies: a slow first load of one adapter must not hold up
the answers of adapters already loaded, and concurrent first answers of one adapter load it once.

The loads are stand-ins (a real load is a model copy plus 12 calibration generations, seconds to minutes): what is
tested is the locking and LRU bookkeeping around them; the real load path is covered by test_openlora_attribution.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import hub.openlora.attribution as attribution_module
from hub.openlora.attribution import AttributionConfig, InferenceAttribution
from openledger_sdk.modelfactory.attribution_index import INDEX_META


class StandInAttributor:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index = SimpleNamespace(meta={"precision": "float32"})

    def attribute(self, prompt_ids: Any, output_ids: Any, top_k: int) -> Any:
        document = {"attributed": True, "adapter": self.directory.name}
        return SimpleNamespace(to_dict=lambda: dict(document), timings={"total": 0.0})


@pytest.fixture
def adapters(tmp_path: Path) -> dict[str, Path]:
    folders = {}
    for name in ("slow", "ready", "third"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        (folders[name] / INDEX_META).write_text("{}")
    return folders


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"count": {}, "release_slow": threading.Event(), "slow_started": threading.Event()}

    def load(directory: Path, base: Any, cache: bool) -> StandInAttributor:
        state["count"][directory.name] = state["count"].get(directory.name, 0) + 1
        if directory.name == "slow":
            state["slow_started"].set()
            assert state["release_slow"].wait(10), "the slow load was never released"
        return StandInAttributor(directory)

    monkeypatch.setattr(attribution_module.Attributor, "load", staticmethod(load))
    monkeypatch.setattr(attribution_module.NullThreshold, "load", staticmethod(lambda directory: object()))
    return state


def test_a_slow_load_does_not_block_loaded_adapters(adapters: dict[str, Path], loads: dict[str, Any]) -> None:
    cache = InferenceAttribution("unused-base", tokenizer=None)
    assert cache.attribute(adapters["ready"], [1], [2])["adapter"] == "ready"
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(cache.attribute, adapters["slow"], [1], [2]) for _ in range(2)]
        assert loads["slow_started"].wait(10)
        # While "slow" is loading, the loaded adapter answers at once.
        assert pool.submit(cache.attribute, adapters["ready"], [1], [2]).result(timeout=5)["adapter"] == "ready"
        assert not any(future.done() for future in slow)
        loads["release_slow"].set()
        assert [future.result(timeout=10)["adapter"] for future in slow] == ["slow", "slow"]
    assert loads["count"] == {"ready": 1, "slow": 1}  # the two concurrent first answers loaded it once


def test_least_recently_used_copy_is_dropped(adapters: dict[str, Path], loads: dict[str, Any]) -> None:
    loads["release_slow"].set()
    cache = InferenceAttribution("unused-base", tokenizer=None, config=AttributionConfig(max_models=2))
    for name in ("ready", "slow", "ready", "third", "ready"):
        cache.attribute(adapters[name], [1], [2])
    # "slow" was the least recently used when "third" came in: dropped, so asking again loads it again.
    assert loads["count"] == {"ready": 1, "slow": 1, "third": 1}
    cache.attribute(adapters["slow"], [1], [2])
    assert loads["count"]["slow"] == 2
