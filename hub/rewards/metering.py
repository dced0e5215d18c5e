"""Metering: one inference → one record row with its fee and split, in the caller's SQL transaction.

The OpenLoRA service (its own process, same DB URL) calls this per request:

    with session_scope(engine) as session:
        record_inference(session, request_id=..., model="support-bot", model_owner=owner_address, payer="alice",
                         prompt_tokens=812, completion_tokens=64, price_per_1k_wei=open_to_wei("0.5"),
                         shares={contributor_address: weight, ...}, top_examples=[{"row_id": 7, ...}],
                         settings=hub_settings.rewards)

Imports stay light (sqlmodel, eth-utils; no web3, no torch): web3 is loaded only in "per_record" mode, where the
record's AttributionLedger.recordInference also goes into the outbox in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlmodel import Session, select

from hub.governance.parameters import rewards_with
from hub.governance.periods import parameters_for_metering
from hub.rewards.config import RewardSettings
from hub.rewards.models import InferenceRecordRow
from hub.rewards.split import FeeSplit, Weight, inference_fee, split_fee_under
from openledger_sdk.attribution import DOCUMENT_VERSION, attribution_hash, canonical_document
from openledger_sdk.ledger.records import InferenceRecord, derive_id, to_bytes32

MAX_TOP_EXAMPLES = 64
MAX_DOCUMENT_BYTES = 64 * 1024


class MeteringError(ValueError):
    """An inference could not be recorded; nothing was added to the session."""


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _weight_text(value: Weight) -> str:
    return str(value)  # as given (a float prints its shortest exact repr): evidence, not money


def attribution_document(
    *,
    request_id: str,
    model: str,
    adapter: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    price_in_per_1k: int,
    price_out_per_1k: int,
    platform_fee: int,
    split: FeeSplit,
    model_owner: str,
    shares: Mapping[str, Weight],
    unattributed_to: str,
    top_examples: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the record's attributionHash commits to (amounts as decimal strings: JSON numbers lose precision)."""
    weights = {to_checksum_address(account): value for account, value in shares.items()}
    return {
        "v": DOCUMENT_VERSION,
        "request_id": request_id,
        "model": model,
        "adapter": adapter,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "price_in_per_1k": str(price_in_per_1k),
        "price_out_per_1k": str(price_out_per_1k),
        "platform_fee": str(platform_fee),
        "fee": str(split.fee),
        "owner": {"address": model_owner, "amount": str(split.owner)},
        "contributors": [
            {"address": account, "weight": _weight_text(weights[account]), "amount": str(amount)}
            for account, amount in split.contributors.items()
        ],
        "protocol": str(split.protocol),
        "unattributed": str(split.unattributed),
        "unattributed_to": unattributed_to,
        "top_examples": [dict(example) for example in top_examples],
        # The governed parameters the split used (values, the block they were read at, their hash): a verifier
        # recomputes the split from them and checks the hash against ProtocolParameters on chain.
        "parameters": dict(parameters) if parameters is not None else None,
    }


def _check_inputs(request_id: str, model: str, model_owner: str, top_examples: Sequence[Any]) -> str:
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 255:
        raise MeteringError(f"request_id must be a non-empty string of at most 255 characters, got {request_id!r}")
    if not isinstance(model, str) or not model.strip() or len(model) > 255:
        raise MeteringError(f"model must be a non-empty name of at most 255 characters, got {model!r}")
    if not isinstance(model_owner, str) or not is_address(model_owner):
        raise MeteringError(f"model_owner {model_owner!r} is not an Ethereum address")
    if len(top_examples) > MAX_TOP_EXAMPLES or not all(isinstance(item, Mapping) for item in top_examples):
        raise MeteringError(f"top_examples must be at most {MAX_TOP_EXAMPLES} JSON objects")
    return to_checksum_address(model_owner)


def _payer_address(session: Session, payer: str) -> str:
    from hub.keys.wallets import UserWallet  # here: it pulls in eth_account (~0.7 s), paid once at the first record

    wallet = session.get(UserWallet, payer)
    if wallet is None:
        raise MeteringError(
            f"payer {payer!r} has no platform wallet yet: create it first (hub.keys.wallets.ensure_wallet, or the "
            "user opens GET /api/wallet); the fee is charged from that wallet at settlement"
        )
    return wallet.address


def record_inference(
    session: Session,
    *,
    request_id: str,
    model: str,
    model_owner: str,
    payer: str,
    prompt_tokens: int,
    completion_tokens: int,
    price_per_1k_wei: int,
    price_out_per_1k_wei: int | None = None,
    adapter: str | None = None,
    shares: Mapping[str, Weight] | None = None,
    top_examples: Sequence[Mapping[str, Any]] = (),
    model_id: bytes | str | None = None,
    settings: RewardSettings | None = None,
    attribution_ledger: str | None = None,
) -> InferenceRecordRow:
    """Add the record of one inference to `session` (the caller commits) and return it.

    `price_per_1k_wei`: OPEN base units per 1000 tokens (prompt and completion), unless `price_out_per_1k_wei` prices
    completion tokens separately. `shares`: contributor address → attribution weight (any non-negative number;
    empty: the contributors' pool is unattributed). `model_id`: the model's bytes32 id in ModelRegistry (default
    derive_id("model", model)). `attribution_ledger`: the contract's address, needed in "per_record" mode.

    Idempotent per request_id: the same request recorded again returns the stored row; a different record under the
    same request_id raises MeteringError.
    """
    # The governed values of the current parameter period replace the settings' split, cap and platform fee.
    parameters = parameters_for_metering(session, settings or RewardSettings())
    settings = rewards_with(settings or RewardSettings(), parameters)
    # A float weight is split as the decimal text the document shows, so anyone can recompute the split from it.
    shares = {account: repr(w) if isinstance(w, float) else w for account, w in (shares or {}).items()}
    owner = _check_inputs(request_id, model, model_owner, top_examples)
    price_out = price_per_1k_wei if price_out_per_1k_wei is None else price_out_per_1k_wei
    try:
        fee = inference_fee(prompt_tokens, completion_tokens, price_per_1k_wei, price_out, settings.platform_fee_wei)
        split = split_fee_under(fee, shares, settings)
    except ValueError as err:
        raise MeteringError(str(err)) from None
    document = attribution_document(
        request_id=request_id,
        model=model,
        adapter=adapter,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        price_in_per_1k=price_per_1k_wei,
        price_out_per_1k=price_out,
        platform_fee=settings.platform_fee_wei,
        split=split,
        model_owner=owner,
        shares=shares,
        unattributed_to=settings.unattributed_to,
        top_examples=top_examples,
        parameters=parameters.as_dict(),
    )
    try:
        size = len(canonical_document(document))
    except (TypeError, ValueError) as err:
        raise MeteringError(f"top_examples must be plain JSON (no NaN, no objects): {err}") from None
    if size > MAX_DOCUMENT_BYTES:
        raise MeteringError(f"the attribution document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES}")
    document = json.loads(canonical_document(document))  # exactly what a JSON column gives back later
    record = InferenceRecord(
        derive_id("inference", request_id),
        to_bytes32(model_id) if model_id is not None else derive_id("model", model),
        _payer_address(session, payer),
        prompt_tokens + completion_tokens,
        fee,
        attribution_hash(document),
    )
    existing = session.exec(select(InferenceRecordRow).where(InferenceRecordRow.request_id == request_id)).first()
    if existing is not None:
        if existing.attribution_hash != _hex(record.attribution_hash) or existing.payer != payer:
            raise MeteringError(f"request {request_id!r} was already recorded with other values")
        return existing
    row = InferenceRecordRow(
        request_id=request_id,
        record_id=_hex(record.record_id),
        model=model,
        model_id=_hex(record.model_id),
        adapter=adapter,
        payer=payer,
        payer_address=record.user,
        model_owner=owner,
        tokens=record.tokens,
        fee=fee,
        attribution=document,
        attribution_hash=_hex(record.attribution_hash),
    )
    session.add(row)
    if settings.record_mode == "per_record":
        _enqueue_record(session, row, record, attribution_ledger)
    return row


def attribution_ledger_address(hub_settings: Any) -> str:
    """The AttributionLedger address a process other than the platform passes in "per_record" mode (read from the
    deployment record the platform writes at start)."""
    from hub.ledger.deploy import deployments_dir  # imports web3: only for this mode

    path = deployments_dir(hub_settings.data_dir, hub_settings.chain.chain_id) / "deployments.json"
    try:
        return json.loads(path.read_text())["contracts"]["AttributionLedger"]
    except FileNotFoundError:
        raise MeteringError(f"no ledger deployment at {path} yet: start the platform (it deploys at start)") from None


def _enqueue_record(
    session: Session, row: InferenceRecordRow, record: InferenceRecord, attribution_ledger: str | None
) -> None:
    if not attribution_ledger:
        raise MeteringError(
            'record_mode "per_record" needs the AttributionLedger address (attribution_ledger=...; the platform '
            "has it in runtime.extras['ledger'], other processes in <data_dir>/chain/<chain_id>/deployments.json)"
        )
    from web3 import Web3  # only in this mode: metering stays importable without web3's start-up cost

    from hub.ledger.contracts import AttributionLedger
    from hub.relay.outbox import OPERATOR, enqueue

    call = AttributionLedger(Web3(), attribution_ledger).record_inference(record)  # encoding only, no node asked
    entry = enqueue(session, call, signer=OPERATOR, kind="inference.record", ref=row.record_id)
    session.flush()
    row.outbox_id = entry.id
