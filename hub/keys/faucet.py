"""The dev-chain faucet: OPEN minted through the relay, ETH for gas set directly with `anvil_setBalance`."""

from __future__ import annotations

from web3 import Web3

from hub.input_rules import parse_amount

DEV_CLIENTS = ("anvil", "hardhat")
ZERO_ADDRESS = "0x" + "0" * 40


class FaucetRefusedError(Exception):
    """Not a dev chain, or an amount out of range."""


def require_dev_chain(w3: Web3) -> str:
    """The node's client name when it is a local dev node; else FaucetRefusedError (real chains mint nothing)."""
    client = w3.client_version
    if not client.lower().startswith(DEV_CLIENTS):
        raise FaucetRefusedError(
            f"the faucet only runs on a local dev chain (anvil); this node is {client.split('/')[0]} on chain id "
            f"{w3.eth.chain_id}: fund addresses with the chain's own faucet or a transfer"
        )
    return client


def to_wei(amount: str | int, what: str, maximum: int, positive: bool = False) -> int:
    """Whole units (e.g. "12.5" OPEN) as a plain decimal → base units, within [0, maximum] whole units (> 0 when
    `positive`). "1_000", "1e3", fractions of a base unit and negative amounts are refused."""
    try:
        wei = parse_amount(str(amount), what, maximum)
    except ValueError as err:
        raise FaucetRefusedError(str(err)) from None
    if positive and wei == 0:
        raise FaucetRefusedError(f"{what} amount must be positive, got {amount}")
    return wei


def top_up_eth(w3: Web3, address: str, wei: int) -> int:
    """Raise the ETH balance of `address` to at least `wei` (never lowers it); the new balance."""
    balance = w3.eth.get_balance(address)
    if balance < wei:
        response = w3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]
        if "error" in response:
            raise FaucetRefusedError(f"anvil_setBalance failed: {response['error']}")
        balance = wei
    return balance
