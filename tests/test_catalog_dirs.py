"""Outside the hub, `finetune(base="smollm2-135m-instruct")` finds the base model the platform converted (issue 16,
item 6), and when it cannot, the error names every place it looked and what to pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from openledger_sdk import catalog
from openledger_sdk.errors import OpenLedgerError

NAME = "smollm2-135m-instruct"


def converted(folder: Path) -> Path:
    (folder / NAME).mkdir(parents=True)
    (folder / NAME / "model.safetensors").write_bytes(b"weights")
    return folder / NAME


def test_the_platforms_converted_model_is_found_without_arguments(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENLEDGER_MODELS_DIR", raising=False)
    monkeypatch.setattr(catalog, "CHECKOUT_MODELS_DIR", tmp_path / "checkout" / ".openledger-data" / "models")
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    platform_copy = converted(tmp_path / "checkout" / ".openledger-data" / "models")
    assert catalog.resolve_base_model(NAME) == platform_copy
    assert catalog.models_dir() == platform_copy.parent


def test_the_environment_wins_and_a_missing_model_says_where_it_looked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(catalog, "CHECKOUT_MODELS_DIR", tmp_path / "checkout-models")
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    monkeypatch.delenv("OPENLEDGER_MODELS_DIR", raising=False)
    with pytest.raises(OpenLedgerError) as missing:
        catalog.resolve_base_model(NAME)
    message = str(missing.value)
    assert str(tmp_path / "checkout-models" / NAME) in message and str(tmp_path / "home") in message
    assert "models_dir=" in message and "OPENLEDGER_MODELS_DIR" in message
    # In a hub kernel the spawner's OPENLEDGER_MODELS_DIR is the only place: a checkout copy does not count.
    converted(tmp_path / "checkout-models")
    monkeypatch.setenv("OPENLEDGER_MODELS_DIR", str(tmp_path / "kernel-models"))
    with pytest.raises(OpenLedgerError, match="kernel-models"):
        catalog.resolve_base_model(NAME)
    kernel_copy = converted(tmp_path / "kernel-models")
    assert catalog.resolve_base_model(NAME) == kernel_copy
