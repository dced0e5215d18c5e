"""Errors of chain access, each with a message that says what went wrong and what to do."""

from __future__ import annotations

from typing import Any

# Reverts that mean "this write already happened": a relay retrying a deterministic id treats them as success.
ALREADY_DONE_ERRORS = frozenset({"RecordExists", "EpochAlreadyCommitted", "DatanetExists", "ModelExists"})


class LedgerError(Exception):
    """Base of every error raised by hub.ledger."""


class ChainUnreachableError(LedgerError):
    """The JSON-RPC endpoint did not answer."""


class WrongChainError(LedgerError):
    """The endpoint answers with another chain id than the settings name."""


class InsufficientFundsError(LedgerError):
    """The signer cannot pay for gas."""

    def __init__(self, message: str, address: str) -> None:
        super().__init__(message)
        self.address = address


class DeploymentError(LedgerError):
    """Deploying or attaching to the contracts failed."""


class TransactionError(LedgerError):
    """The node refused a transaction, or it was not mined in time."""


class ContractRevert(LedgerError):
    """A call or transaction reverted; `error_name` and `error_args` are the decoded custom error, if known."""

    def __init__(
        self,
        contract: str,
        function: str,
        error_name: str | None,
        error_args: dict[str, Any] | None = None,
        data: str = "0x",
        tx_hash: str | None = None,
    ) -> None:
        self.contract = contract
        self.function = function
        self.error_name = error_name
        self.error_args = error_args or {}
        self.data = data
        self.tx_hash = tx_hash
        super().__init__(self._describe())

    @property
    def already_done(self) -> bool:
        return self.error_name in ALREADY_DONE_ERRORS

    def _describe(self) -> str:
        where = f"{self.contract}.{self.function}" if self.function else self.contract
        if self.error_name is None:
            reason = f"an unknown error (revert data {self.data})" if self.data not in ("", "0x") else "no reason"
        else:
            args = ", ".join(f"{key}={_show(value)}" for key, value in self.error_args.items())
            reason = f"{self.error_name}({args})"
        suffix = f" in transaction {self.tx_hash}" if self.tx_hash else ""
        return f"{where} reverted with {reason}{suffix}"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)
