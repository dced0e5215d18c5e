"""Where the deployer's key comes from: anvil's public dev accounts (local chain only) or a key file in the data dir."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from hub.ledger.errors import LedgerError
from hub.secrets import read_or_create_secret

# anvil's (and hardhat's) default mnemonic: public knowledge, so its accounts are only ever used on a local anvil.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"

Account.enable_unaudited_hdwallet_features()


class KeySource(Protocol):
    def load(self, w3: Web3) -> LocalAccount: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class AnvilDevKey:
    """Account `index` of anvil's dev mnemonic; refuses any node that is not anvil."""

    index: int = 0

    def load(self, w3: Web3) -> LocalAccount:
        client = w3.client_version
        if not client.lower().startswith("anvil"):
            raise LedgerError(
                f"refusing anvil's public dev key on a node that is not anvil ({client}): use a key file instead"
            )
        return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{self.index}")

    def describe(self) -> str:
        return f"anvil dev account #{self.index}"


@dataclass(frozen=True)
class KeyFile:
    """A hex private key in `path`; with `create`, a new random key is written there (mode 0600) if absent."""

    path: Path
    create: bool = True

    def load(self, w3: Web3 | None = None) -> LocalAccount:
        if not self.create and not self.path.exists():
            raise LedgerError(f"key file {self.path} not found")
        read_or_create_secret(self.path, lambda: "0x" + secrets.token_hex(32))
        text = self.path.read_text().strip()
        try:
            return Account.from_key(text)
        except Exception:  # noqa: BLE001 - eth_account raises several types; never echo key material
            raise LedgerError(f"key file {self.path} does not hold a hex private key") from None

    def describe(self) -> str:
        return f"key file {self.path}"


# Enough gas for the deployment and years of a dev chain's operator transactions.
DEV_DEPLOYER_WEI = 10_000 * 10**18


@dataclass(frozen=True)
class DevChainKeyFile(KeyFile):
    """The embedded anvil's deployer: a generated key in the key store, given gas by the node itself when it has
    none (anvil_setBalance). Refuses any node that is not anvil, where nobody mints gas for free."""

    def load(self, w3: Web3 | None = None) -> LocalAccount:
        account = super().load(w3)
        if w3 is None:
            return account
        if not w3.client_version.lower().startswith("anvil"):
            raise LedgerError(f"{self.path} is a dev-chain key: the node is not anvil ({w3.client_version})")
        if w3.eth.get_balance(account.address) < DEV_DEPLOYER_WEI // 2:
            answer = w3.provider.make_request("anvil_setBalance", [account.address, hex(DEV_DEPLOYER_WEI)])
            if "error" in answer:
                raise LedgerError(f"anvil_setBalance for the deployer failed: {answer['error']}")
        return account
