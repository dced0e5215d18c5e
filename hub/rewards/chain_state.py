"""What settlement still has to write for an epoch, judged from the chain: the epoch commit, the distributor root.

Split from hub.rewards.settlement (no behaviour change): a crash between the two writes, or a retry, must repeat only
what is missing, and a chain that disagrees with the database (reset, or a root set by someone else) blocks.
"""

from __future__ import annotations

from hub.ledger.contracts import Ledger
from hub.ledger.errors import ContractRevert, LedgerError


class SettlementBlockedError(Exception):
    """The chain does not match what the database expects (e.g. a reset chain, or a root set by someone else)."""


def pending_chain_writes(
    ledger: Ledger, number: int, records_root: str, payouts_root: str, previous_root: str
) -> tuple[bool, bool]:
    """Which of commitEpoch / setRoot still have to happen; SettlementBlockedError when the chain disagrees."""
    try:
        committed = ledger.attribution.get_epoch(number)
    except ContractRevert as err:
        if err.error_name != "UnknownEpoch":
            raise
        committed = None
    except LedgerError as err:
        raise SettlementBlockedError(f"cannot read epoch {number} from the AttributionLedger: {err}") from None
    if committed is not None and ("0x" + committed.records_root.hex(), "0x" + committed.payouts_root.hex()) != (
        records_root.lower(),
        payouts_root.lower(),
    ):
        raise SettlementBlockedError(
            f"epoch {number} is already committed on chain with other roots: the database and the chain disagree "
            "(was the database reset while the chain kept its state?)"
        )
    current = "0x" + ledger.distributor.merkle_root().hex()
    if current not in (previous_root.lower(), payouts_root.lower()):
        raise SettlementBlockedError(
            f"the RewardDistributor root is {current}, but the last settled epoch left {previous_root}: someone "
            "else set it, or the chain was reset; settlement waits until an admin resolves it"
        )
    return committed is None, current != payouts_root.lower()


def payment_refusal(ledger: Ledger, address: str, amount: int, gas_cost: int) -> str | None:
    """Why `address` cannot pay `amount` OPEN plus up to `gas_cost` wei of gas now; None when it can."""
    if amount == 0:
        return None
    balance = ledger.token.balance_of(address)
    if balance < amount:
        return f"wallet {address} holds {balance} OPEN base units but owes {amount}"
    gas = ledger.w3.eth.get_balance(address)
    if gas < gas_cost:
        return f"wallet {address} has {gas} wei of gas; the transfer needs up to {gas_cost}"
    return None
