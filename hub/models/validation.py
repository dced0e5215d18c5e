"""Checks of a publish request's files against the ModelFactory manifest, before anything is stored.

The manifest (`openledger_sdk.modelfactory.manifest`) is sealed with its own hash and lists the sha256 of every file
saved beside it. Here: it parses, is sealed and complete, every uploaded file is one it lists with that sha256, the
adapter weights and config are there, the config is a PEFT LoRA config for the manifest's base model, and the
weights file is a safetensors file of LoRA tensors. The base model and the datanet versions are checked by the
service against the platform.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import IO, Any

from hub.datanets.parsing import loads_strict
from hub.models.bases import ref_name
from hub.models.config import MAX_JSON_BYTES
from hub.models.errors import ModelError
from openledger_sdk.modelfactory.manifest import ADAPTER_CONFIG, ADAPTER_WEIGHTS, FORMAT, MANIFEST_FILE, manifest_hash

INCOMPLETE = "this adapter is incomplete (training was stopped); it cannot be published"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FILE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ROOT = re.compile(r"^0x[0-9a-f]{64}$")
MAX_SAFETENSORS_HEADER = 100 << 20  # the JSON header of the weights file; real ones are a few KB


@dataclass
class Upload:
    """One uploaded file, spooled by the multipart parser; its sha256 is computed once, before any check."""

    filename: str
    file: IO[bytes]
    sha256: str
    size: int

    @classmethod
    def hashed(cls, filename: str, file: IO[bytes]) -> Upload:
        file.seek(0)
        digest, size = hashlib.sha256(), 0
        while block := file.read(1 << 20):
            digest.update(block)
            size += len(block)
        file.seek(0)
        return cls(filename, file, digest.hexdigest(), size)

    def read_json(self) -> Any:
        if self.size > MAX_JSON_BYTES:
            raise ModelError(413, f"{self.filename} is {self.size} bytes; JSON files may be at most {MAX_JSON_BYTES}")
        self.file.seek(0)
        try:
            return loads_strict(self.file.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise ModelError(400, f"{self.filename} is not valid UTF-8 JSON: {err}") from None
        finally:
            self.file.seek(0)


@dataclass(frozen=True)
class DatanetRef:
    name: str
    version: int
    root: str


@dataclass
class CheckedUpload:
    """A publish request that passed the file checks; what the service still checks is named here."""

    manifest: dict[str, Any]
    files: dict[str, Upload]  # every uploaded file, manifest.json included
    base_ref: str  # the manifest's base model id (catalog name or path)
    base_weights_sha256: str
    datanets: list[DatanetRef]
    lora_rank: int


def check_name(name: str, reserved: set[str]) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise ModelError(
            422,
            f"model name {str(name)[:80]!r} must be 1-64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '..')",
        )
    if name in reserved:
        raise ModelError(409, f"{name!r} is the name of a base model: pick another name")
    return name


def check_upload(files: dict[str, Upload], declared_hash: str | None) -> CheckedUpload:
    manifest_file = files.get(MANIFEST_FILE)
    if manifest_file is None:
        raise ModelError(400, f"send {MANIFEST_FILE} (the ModelFactory provenance manifest) with the adapter files")
    manifest = manifest_file.read_json()
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelError(400, f"{MANIFEST_FILE} is not a ModelFactory manifest (format {FORMAT!r})")
    if manifest.get("complete") is not True:
        raise ModelError(400, INCOMPLETE)
    sealed = manifest.get("manifest_hash")
    if sealed != manifest_hash(manifest):
        raise ModelError(422, f"{MANIFEST_FILE} was edited after it was sealed (its manifest_hash does not match)")
    if declared_hash is not None and declared_hash != sealed:
        raise ModelError(422, f"the manifest_hash field ({declared_hash[:80]!r}) is not the hash of {MANIFEST_FILE}")
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise ModelError(422, f"{MANIFEST_FILE} has no `files` table of sha256 digests")
    _check_files(files, listed)
    if manifest.get("adapter_sha256") != files[ADAPTER_WEIGHTS].sha256:
        raise ModelError(
            422, f"{ADAPTER_WEIGHTS} does not match the adapter sha256 in {MANIFEST_FILE} (adapter_sha256)"
        )
    base = manifest.get("base_model")
    if not isinstance(base, dict) or not isinstance(base.get("id"), str) or not base["id"]:
        raise ModelError(422, f"{MANIFEST_FILE} does not name its base model (base_model.id)")
    weights = base.get("weights_sha256")
    if not isinstance(weights, str) or not SHA256.match(weights):
        raise ModelError(422, f"{MANIFEST_FILE} has no sha256 of the base weights (base_model.weights_sha256)")
    rank = check_adapter_config(files[ADAPTER_CONFIG].read_json(), base["id"])
    check_safetensors(files[ADAPTER_WEIGHTS])
    return CheckedUpload(manifest, files, base["id"], weights, datanet_refs(manifest.get("datanets")), rank)


def _check_files(files: dict[str, Upload], listed: dict[str, Any]) -> None:
    for required in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        if required not in listed:
            raise ModelError(422, f"{MANIFEST_FILE} does not list {required}")
        if required not in files:
            raise ModelError(400, f"send {required}: an adapter is published with its weights and config")
    for name, upload in files.items():
        if name == MANIFEST_FILE:
            continue
        if name not in listed:
            raise ModelError(400, f"{name} is not listed in {MANIFEST_FILE}: only the files it lists are published")
        if upload.sha256 != listed[name]:
            raise ModelError(422, f"{name} does not match its sha256 in {MANIFEST_FILE}: re-save the model folder")


def check_adapter_config(config: Any, base_ref: str) -> int:
    """A PEFT LoRA config OpenLoRA can serve, made for the manifest's base model; returns its rank."""
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise ModelError(422, f"{ADAPTER_CONFIG} is not a PEFT LoRA config (peft_type must be LORA)")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ModelError(422, f"{ADAPTER_CONFIG} has rank r={rank!r}: it must be a positive integer")
    targets = config.get("target_modules")
    if not targets or not isinstance(targets, (str, list)):
        raise ModelError(422, f"{ADAPTER_CONFIG} names no target_modules")
    if config.get("use_dora") or config.get("modules_to_save"):
        raise ModelError(422, f"{ADAPTER_CONFIG}: DoRA and modules_to_save adapters cannot be served by OpenLoRA")
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or (base != base_ref and ref_name(base) != ref_name(base_ref)):
        raise ModelError(
            422, f"{ADAPTER_CONFIG} is for base model {str(base)[:200]!r}, the manifest for {base_ref[:200]!r}"
        )
    return rank


def check_safetensors(upload: Upload) -> None:
    """The weights file's header: 8-byte length, then a JSON table of tensors, LoRA A and B among them."""
    bad = ModelError(422, f"{upload.filename} is not a safetensors file of LoRA weights (lora_A / lora_B tensors)")
    upload.file.seek(0)
    try:
        head = upload.file.read(8)
        if len(head) != 8:
            raise bad
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_SAFETENSORS_HEADER, upload.size - 8):
            raise bad
        header = json.loads(upload.file.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad from None
    finally:
        upload.file.seek(0)
    keys = list(header) if isinstance(header, dict) else []
    if not any("lora_A" in key for key in keys) or not any("lora_B" in key for key in keys):
        raise bad


def datanet_refs(entries: Any) -> list[DatanetRef]:
    """The manifest's training data: published datanet versions with their Merkle roots, nothing else."""
    if not isinstance(entries, list) or not entries:
        raise ModelError(
            422,
            "the manifest names no datanet version: a published model must be trained on published datanet versions "
            "(finetune(datanet=..., version=...)), so that its contributors can be attributed and paid",
        )
    refs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ModelError(422, "the manifest's `datanets` entries must be objects with name, version and root")
        name, version, root = entry.get("name"), entry.get("version"), entry.get("root")
        if not isinstance(root, str) or not ROOT.match(root):
            raise ModelError(
                422,
                f"the manifest says it was trained on rows said to come from datanet {str(name)[:80]!r} without a "
                "version root (rows passed in directly): train on the published version itself",
            )
        if not isinstance(name, str) or not isinstance(version, int) or isinstance(version, bool):
            raise ModelError(422, f"the manifest's datanet entry {str(entry)[:200]} has no name or version number")
        refs.append(DatanetRef(name, version, root))
    return refs
