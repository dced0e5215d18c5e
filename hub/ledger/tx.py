"""Contract calls as data, and the steps to send them: build, sign, broadcast, wait.

A `PreparedCall` is only `to` + calldata, so a relay can store it in an outbox row and later build, sign and
persist the raw transaction itself (`build_transaction`, `sign`); tests and deployment use `send_call`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_account.datastructures import SignedTransaction
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from hub.ledger.artifacts import decode_error, load_artifact
from hub.ledger.errors import ContractRevert, InsufficientFundsError, TransactionError

GAS_HEADROOM = 1.2  # estimates are exact for the state they ran on; a later state may need a little more
# ... and sometimes one more fresh storage slot (~22k gas): e.g. a vote checkpoint is updated in place when the estimate
# runs in the same second as the last one, but pushed as a new slot when the transaction lands in a later block.
GAS_EXTRA = 25_000


def with_headroom(estimate: int) -> int:
    """The gas limit to sign for an estimate (a limit: unused gas is not paid)."""
    return int(estimate * GAS_HEADROOM) + GAS_EXTRA


class Signer(Protocol):
    """What sending needs of an account: eth_account's LocalAccount fits."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, transaction_dict: dict[str, Any]) -> SignedTransaction: ...


@dataclass(frozen=True)
class PreparedCall:
    """One contract write, not yet sent. `to=None` deploys `data` (bytecode + constructor arguments)."""

    contract: str
    function: str
    to: str | None
    data: str
    value: int = 0
    args: tuple[Any, ...] = field(default=(), compare=False)

    def call_params(self, sender: str) -> dict[str, Any]:
        params: dict[str, Any] = {"from": sender, "data": self.data, "value": self.value}
        if self.to is not None:
            params["to"] = self.to
        return params


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fees, or `gas_price` alone on chains without a base fee."""

    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    gas_price: int | None = None

    def bumped(self, percent: int = 12) -> Fees:
        """Fees for a replacement transaction (nodes require at least +10% on both)."""
        scale = lambda value: None if value is None else value * (100 + percent) // 100 + 1  # noqa: E731
        return Fees(scale(self.max_fee_per_gas), scale(self.max_priority_fee_per_gas), scale(self.gas_price))

    def as_params(self) -> dict[str, Any]:
        if self.gas_price is not None:
            return {"gasPrice": self.gas_price}
        return {"type": 2, "maxFeePerGas": self.max_fee_per_gas, "maxPriorityFeePerGas": self.max_priority_fee_per_gas}

    @property
    def max_per_gas(self) -> int:
        return self.gas_price if self.gas_price is not None else int(self.max_fee_per_gas or 0)


def constructor_call(name: str, w3: Web3, *constructor_args: Any) -> PreparedCall:
    """Deploying contract `name` (its committed artifact) with these constructor arguments, as a PreparedCall."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(*constructor_args).data_in_transaction
    return PreparedCall(name, "constructor", None, data, 0, constructor_args)


def revert_from_exception(err: ContractLogicError, call: PreparedCall, tx_hash: str | None = None) -> ContractRevert:
    """Turn web3's revert exception into a ContractRevert with the custom error decoded from our ABIs."""
    data = err.data.get("data") if isinstance(err.data, dict) else err.data
    raw = data if isinstance(data, str) and data.startswith("0x") else "0x"
    decoded = decode_error(bytes.fromhex(raw[2:])) if len(raw) >= 10 else None
    if decoded is not None:
        return ContractRevert(call.contract, call.function, decoded[0], decoded[1], raw, tx_hash)
    if raw == "0x" and err.message and "revert" in err.message.lower():
        # Some nodes give only a text reason (require with a string, or their own wording).
        message = err.message.split(":", 1)[-1].strip()
        return ContractRevert(call.contract, call.function, "Error", {"message": message}, raw, tx_hash)
    return ContractRevert(call.contract, call.function, None, None, raw, tx_hash)


def _is_insufficient_funds(err: Exception) -> bool:
    return "insufficient funds" in str(err).lower()


def simulate(w3: Web3, call: PreparedCall, sender: str, block: int | str = "latest") -> bytes:
    """eth_call: the return data, or ContractRevert."""
    try:
        return bytes(w3.eth.call(call.call_params(sender), block_identifier=block))
    except ContractLogicError as err:
        raise revert_from_exception(err, call) from None


def estimate_gas(w3: Web3, call: PreparedCall, sender: str) -> int:
    """Gas to send `call` from `sender` with headroom; a revert surfaces here, before anything is signed."""
    try:
        return with_headroom(w3.eth.estimate_gas(call.call_params(sender)))
    except ContractLogicError as err:
        raise revert_from_exception(err, call) from None
    except Web3RPCError as err:
        if _is_insufficient_funds(err):
            raise _unfunded(w3, sender) from None
        raise TransactionError(f"{call.contract}.{call.function}: gas estimation failed: {err}") from None


def suggest_fees(w3: Web3) -> Fees:
    base_fee = w3.eth.get_block("latest").get("baseFeePerGas")
    if base_fee is None:
        return Fees(gas_price=w3.eth.gas_price)
    priority = w3.eth.max_priority_fee
    # 2x base fee survives several full blocks of base-fee growth before the transaction gets stuck.
    return Fees(max_fee_per_gas=2 * base_fee + priority, max_priority_fee_per_gas=priority)


def build_transaction(
    w3: Web3,
    call: PreparedCall,
    sender: str,
    *,
    nonce: int | None = None,
    gas: int | None = None,
    fees: Fees | None = None,
    chain_id: int | None = None,
) -> dict[str, Any]:
    """The unsigned transaction dict for `call`; whatever is not given is asked of the node."""
    tx: dict[str, Any] = {
        "chainId": chain_id if chain_id is not None else w3.eth.chain_id,
        "nonce": nonce if nonce is not None else w3.eth.get_transaction_count(sender, "pending"),
        "gas": gas if gas is not None else estimate_gas(w3, call, sender),
        "value": call.value,
        "data": call.data,
        **(fees or suggest_fees(w3)).as_params(),
    }
    if call.to is not None:
        tx["to"] = call.to
    return tx


def sign(signer: Signer, tx: dict[str, Any]) -> SignedTransaction:
    """Sign locally; persist `.raw_transaction` and `.hash` before `broadcast` so a crash can resend the same bytes."""
    return signer.sign_transaction(tx)


def broadcast(w3: Web3, raw_transaction: bytes, sender: str | None = None) -> str:
    try:
        return "0x" + bytes(w3.eth.send_raw_transaction(raw_transaction)).hex()
    except Web3RPCError as err:
        if _is_insufficient_funds(err) and sender:
            raise _unfunded(w3, sender) from None
        raise TransactionError(f"the node refused the transaction: {err}") from None


def wait_for_receipt(w3: Web3, tx_hash: str, call: PreparedCall, timeout: float = 120) -> Any:
    """The receipt; a mined-but-reverted transaction raises ContractRevert (reason from a replay at its block)."""
    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
    except TimeExhausted:
        raise TransactionError(f"{call.contract}.{call.function}: {tx_hash} not mined within {timeout:.0f} s") from None
    if receipt["status"] == 1:
        return receipt
    tx = w3.eth.get_transaction(tx_hash)
    try:
        # Replaying on the parent block's state gives the reason unless an earlier tx in the block changed it.
        w3.eth.call(call.call_params(tx["from"]) | {"gas": tx["gas"]}, block_identifier=receipt["blockNumber"] - 1)
    except ContractLogicError as err:
        raise revert_from_exception(err, call, tx_hash) from None
    raise ContractRevert(call.contract, call.function, None, tx_hash=tx_hash)


def send_call(
    w3: Web3,
    call: PreparedCall,
    signer: Signer,
    *,
    nonce: int | None = None,
    gas: int | None = None,
    fees: Fees | None = None,
    timeout: float = 120,
) -> Any:
    """Build, sign, broadcast and wait: the receipt, or ContractRevert / InsufficientFundsError / TransactionError."""
    tx = build_transaction(w3, call, signer.address, nonce=nonce, gas=gas, fees=fees)
    needed = tx["gas"] * (tx.get("maxFeePerGas") or tx.get("gasPrice") or 0) + call.value
    if w3.eth.get_balance(signer.address) < needed:
        raise _unfunded(w3, signer.address, needed)
    signed = sign(signer, tx)
    return wait_for_receipt(w3, broadcast(w3, signed.raw_transaction, signer.address), call, timeout)


def _unfunded(w3: Web3, address: str, needed: int | None = None) -> InsufficientFundsError:
    balance = w3.eth.get_balance(address)
    need = f" (needs up to {needed} wei)" if needed else ""
    return InsufficientFundsError(
        f"signer {address} cannot pay for gas on chain {w3.eth.chain_id}: balance {balance} wei{need}. "
        "Send it the chain's native gas token (on a dev chain: anvil_setBalance).",
        address,
    )
