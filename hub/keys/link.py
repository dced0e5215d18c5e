"""Linking an external payout address: the address's owner signs an EIP-712 message naming the hub user."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_address, to_checksum_address

from openledger_sdk.wallet import link_typed_data

MAX_TTL = 24 * 3600  # a signature valid longer than a day is refused: it would be a long-lived bearer token


class LinkError(ValueError):
    """The link request is malformed, stale, expired, or signed by another key; the message says which."""


@dataclass(frozen=True)
class LinkRequest:
    payout: str
    nonce: int
    expiry: int
    signature: str


def verify_link(
    request: LinkRequest,
    *,
    username: str,
    expected_nonce: int,
    chain_id: int,
    verifying_contract: str,
    now: float,
) -> str:
    """The checksummed payout address when the signature is valid for this user, nonce and domain; else LinkError."""
    if not is_address(request.payout):
        raise LinkError(f"payout {request.payout!r} is not an Ethereum address")
    payout = to_checksum_address(request.payout)
    if request.nonce != expected_nonce:
        raise LinkError(
            f"stale link nonce {request.nonce}: the current one is {expected_nonce} (GET /api/wallet), sign again"
        )
    if request.expiry < now:
        raise LinkError("the link signature has expired: sign a new one")
    if request.expiry > now + MAX_TTL:
        raise LinkError(f"the link signature's expiry is more than {MAX_TTL // 3600} h ahead: use a shorter one")
    typed = link_typed_data(chain_id, verifying_contract, username, payout, request.nonce, request.expiry)
    try:
        signature = bytes.fromhex(request.signature.removeprefix("0x"))
        if len(signature) != 65:
            raise ValueError("not 65 bytes")
        signer = Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    except Exception:  # noqa: BLE001 - eth_account raises several types for malformed signatures
        raise LinkError("the signature is not a valid 65-byte hex EIP-712 signature") from None
    if signer != payout:
        raise LinkError(
            f"the signature was made by {signer}, not by the payout address {payout}: sign the link message "
            f"(user {username!r}, nonce {request.nonce}, chain {chain_id}) with the payout address's own key"
        )
    return payout
