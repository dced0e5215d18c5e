"""JSON-RPC reads of the relay worker, batched where a node allows: one request for many rows (4x faster on anvil).

A batch fails as a whole when one of its calls does; callers then go row by row, which also tells which row failed."""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from hub.ledger.errors import ContractRevert
from hub.ledger.tx import revert_from_exception, with_headroom
from hub.relay.outbox import OutboxEntry


def batch_estimates(w3: Web3, rows: list[OutboxEntry], sender: str) -> dict[int | None, int]:
    """Gas limits (with headroom) by row id; empty when the batch failed or is too small to be worth it."""
    if len(rows) < 2:
        return {}
    try:
        with w3.batch_requests() as batch:
            for row in rows:
                batch.add(w3.eth.estimate_gas(row.prepared_call().call_params(sender)))
            results = batch.execute()
    except Exception:  # noqa: BLE001 - a revert (or anything else) in the batch: estimate one by one
        return {}
    return {row.id: with_headroom(gas) for row, gas in zip(rows, results, strict=True)}


def batch_receipts(w3: Web3, rows: list[OutboxEntry]) -> dict[int | None, Any]:
    """Receipts of the rows' current hashes by row id (rows without one are left out)."""
    if len(rows) < 2:
        return {}
    try:
        with w3.batch_requests() as batch:
            for row in rows:
                batch.add(w3.eth.get_transaction_receipt(str(row.tx_hash)))
            results = batch.execute()
    except Exception:  # noqa: BLE001 - e.g. a replaced transaction has no receipt under this hash
        return {}
    return {row.id: receipt for row, receipt in zip(rows, results, strict=True) if receipt is not None}


def receipt_of(w3: Web3, tx_hash: str) -> Any | None:
    try:
        return w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        return None


def node_knows(w3: Web3, tx_hash: str | None) -> bool:
    if tx_hash is None:
        return False
    try:
        w3.eth.get_transaction(tx_hash)
    except TransactionNotFound:
        return False
    return True


def diagnose_revert(w3: Web3, sender: str, row: OutboxEntry, tx_hash: str, receipt: Any) -> ContractRevert:
    """The revert's custom error: replayed on the state before its block, else after it (a write earlier in the
    same block, e.g. the duplicate of this record, only shows there)."""
    call = row.prepared_call()
    if row.gas is not None and receipt["gasUsed"] >= row.gas:
        return ContractRevert(call.contract, call.function, "OutOfGas", {"gasLimit": row.gas}, tx_hash=tx_hash)
    params = call.call_params(sender) | {"gas": row.gas}
    for block in (receipt["blockNumber"] - 1, receipt["blockNumber"]):
        try:
            w3.eth.call(params, block_identifier=block)
        except ContractLogicError as err:
            return revert_from_exception(err, call, tx_hash)
        except Web3RPCError:
            continue  # e.g. a node without that block's state (pruned): no reason from this replay
    return ContractRevert(call.contract, call.function, None, tx_hash=tx_hash)
