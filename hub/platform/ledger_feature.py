"""The ledger in the platform service: contracts (deploy-or-attach at start), the chain relay, custodial wallets,
payout-address linking and the dev-chain faucet.

What other features find in `runtime.extras`: "ledger" (hub.ledger.deploy.LedgerDeployment: `.ledger.datanets` etc.
build PreparedCalls for `hub.relay.enqueue`), "relay" (RelayService: `.wake()` after committing outbox rows),
"wallet_keys" (WalletKeyStore for hub.keys.wallets.ensure_wallet).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, update
from web3 import Web3

from hub.auth import HubUser, admin_user, current_user, hub_user, token_from_request
from hub.db import session_scope
from hub.keys.faucet import FaucetRefusedError, require_dev_chain, to_wei, top_up_eth
from hub.keys.link import LinkError, LinkRequest, verify_link
from hub.keys.store import WalletKeyStore
from hub.keys.wallets import UserWallet, ensure_wallet, utcnow
from hub.ledger.deploy import LedgerDeployment, deploy_or_attach, redact_url
from hub.ledger.errors import ChainUnreachableError, LedgerError, WrongChainError
from hub.ledger.tx import PreparedCall, send_call
from hub.platform.idempotency import idempotent
from hub.platform.runtime import Feature, PlatformRuntime, get_runtime, stop_task
from hub.platform.welcome_grant import grant_welcome_open, is_dev_chain
from hub.relay.finality import settings_finality
from hub.relay.outbox import OPERATOR, OutboxEntry, OutboxStatus, enqueue
from hub.relay.parts import RelayConfig
from hub.relay.service import RelayService
from hub.relay.signers import KeyRing, load_operator
from openledger_sdk.wallet import DOMAIN_NAME, DOMAIN_VERSION, LINK_TYPE

log = logging.getLogger("hub.platform.ledger")
router = APIRouter()

CHAIN_WAIT_S = 60.0  # while the chain does not answer, a warning this often
RETRY_S = 30.0  # after other failures (e.g. an unfunded deployer), try again this often
OPERATOR_GAS_FLOOR = 10**19  # on a dev chain the operator is topped up from the deployer below 10 ETH
OPERATOR_GAS_TOP_UP = 100 * 10**18


# Start and stop ------------------------------------------------------------------------------------------------------
@dataclass
class LedgerState:
    """Where bringing the ledger up stands: starting (waiting for the chain), ready, or error (needs an admin)."""

    status: str = "starting"
    message: str = ""
    since: float = field(default_factory=time.time)

    def set(self, status: str, message: str) -> None:
        self.status, self.message, self.since = status, message, time.time()


def fund_operator(deployment: LedgerDeployment, operator: str) -> None:
    """On a dev chain, send the relay operator gas money from the deployer; elsewhere only warn when it has none."""
    w3 = deployment.ledger.w3
    balance = w3.eth.get_balance(operator)
    if not is_dev_chain(w3):
        if balance == 0:
            log.warning("relay operator %s has no gas on chain %s: send it some", operator, deployment.ledger.chain_id)
        return
    if balance < OPERATOR_GAS_FLOOR:
        send_call(w3, PreparedCall("ETH", "transfer", operator, "0x", OPERATOR_GAS_TOP_UP), deployment.deployer)
        log.info("funded relay operator %s with 100 ETH from the deployer", operator)


async def bring_up(runtime: PlatformRuntime, state: LedgerState) -> None:
    """Deploy-or-attach once the chain answers, then start the relay.

    In the background, not in the service's startup: JupyterHub starts its managed services one after the other and
    waits for each to answer, and the chain service (whose anvil this waits for) starts after this one.
    """
    settings = runtime.settings
    operator: LocalAccount = load_operator(settings.data_dir)
    started, last_warning = time.monotonic(), 0.0
    while True:
        try:
            deployment = await asyncio.to_thread(deploy_or_attach, settings, operator=operator.address)
            await asyncio.to_thread(fund_operator, deployment, operator.address)
            break
        except ChainUnreachableError as err:
            waited = time.monotonic() - started
            state.set("starting", f"waiting for the chain ({waited:.0f} s): {err}")
            if waited - last_warning >= CHAIN_WAIT_S:
                log.warning("ledger: still %s", state.message)
                last_warning = waited
            await asyncio.sleep(0.5)
        except WrongChainError as err:
            state.set("error", f"{err} Restart the platform service after fixing the settings.")
            log.error("ledger: %s", state.message)
            return
        except LedgerError as err:  # e.g. an unfunded deployer on a real chain: fixable without a restart
            state.set("error", f"{err} (retrying every {RETRY_S:.0f} s)")
            log.error("ledger: %s", state.message)
            await asyncio.sleep(RETRY_S)
    wallets = WalletKeyStore.for_data_dir(settings.data_dir)
    finality = settings_finality(settings, deployment.ledger.w3)
    relay = RelayService(
        runtime.engine,
        settings.chain_rpc_url,
        settings.chain.chain_id,
        KeyRing(runtime.engine, operator, wallets),
        settings.data_dir / "relay",
        RelayConfig(finality=finality, reverify_seconds=settings.chain.reverify_seconds),
    )
    relay.start()
    runtime.extras.update(ledger=deployment, relay=relay, wallet_keys=wallets)
    state.set("ready", f"{deployment.message}; relay operator {operator.address}")
    log.info("ledger: %s", state.message)


async def startup(runtime: PlatformRuntime) -> None:
    state = runtime.extras["ledger_state"] = LedgerState(message="waiting for the chain")
    runtime.extras["ledger_task"] = asyncio.create_task(bring_up(runtime, state), name="ledger-bring-up")


async def shutdown(runtime: PlatformRuntime) -> None:
    await stop_task(runtime, "ledger_task")
    relay: RelayService | None = runtime.extras.pop("relay", None)
    if relay is not None:
        await asyncio.to_thread(relay.stop)


# Routes --------------------------------------------------------------------------------------------------------------
def ledger_parts(runtime: PlatformRuntime) -> tuple[LedgerDeployment, RelayService, WalletKeyStore]:
    """The running ledger, or 503 saying why there is none yet (other features may call this too)."""
    try:
        return runtime.extras["ledger"], runtime.extras["relay"], runtime.extras["wallet_keys"]
    except KeyError:
        state: LedgerState | None = runtime.extras.get("ledger_state")
        why = f"{state.status}: {state.message}" if state else "the ledger feature is not enabled"
        raise HTTPException(503, f"the ledger is not available yet ({why})") from None


def user_only(user: HubUser) -> HubUser:
    if user.kind != "user":
        raise HTTPException(403, f"wallets belong to hub users; {user.name!r} is a {user.kind}")
    return user


def link_domain(deployment: LedgerDeployment) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": deployment.ledger.chain_id,
        "verifyingContract": deployment.ledger.distributor.address,
    }


def wallet_view(wallet: UserWallet, deployment: LedgerDeployment, rpc_url: str) -> dict[str, Any]:
    ledger = deployment.ledger
    balances: dict[str, str] | None = None
    chain_error = None
    try:
        # Wei as decimal strings: JSON numbers lose precision above 2**53.
        balances = {
            "OPEN": str(ledger.token.balance_of(wallet.address)),
            "ETH": str(ledger.w3.eth.get_balance(wallet.address)),
        }
    except Exception as err:  # noqa: BLE001 - the chain may be down while the platform is up: the address still is
        chain_error = f"cannot read balances: the chain at {redact_url(rpc_url)} does not answer ({type(err).__name__})"
    return {
        "user": wallet.username,
        "address": wallet.address,
        "chain_id": ledger.chain_id,
        "balances": balances,
        "chain_error": chain_error,
        "payout_address": wallet.payout_address,
        "reward_address": wallet.reward_address,
        "link": {"nonce": wallet.link_nonce, "primary_type": LINK_TYPE, "domain": link_domain(deployment)},
    }


@router.get("/api/wallet")
def my_wallet(user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)) -> dict:
    """My custodial address (created on first use), OPEN and ETH balances, and linked payout address."""
    deployment, _, keys = ledger_parts(runtime)
    grant_welcome_open(runtime, user_only(user).name)
    wallet = ensure_wallet(runtime.engine, user.name, keys)
    return wallet_view(wallet, deployment, runtime.settings.chain_rpc_url)


class LinkBody(BaseModel):
    payout: str = Field(description="the external address rewards should go to")
    nonce: int = Field(ge=0, description="`link.nonce` from GET /api/wallet")
    expiry: int = Field(ge=0, description="unix seconds after which the signature is void")
    signature: str = Field(description="EIP-712 signature of the LinkPayoutAddress message by `payout`'s key")


@router.post("/api/wallet/link")
def link_payout(
    body: LinkBody, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> dict:
    """Link an external payout address, proven by its owner's EIP-712 signature over my user name and nonce."""
    deployment, _, keys = ledger_parts(runtime)
    wallet = ensure_wallet(runtime.engine, user_only(user).name, keys)
    try:
        payout = verify_link(
            LinkRequest(body.payout, body.nonce, body.expiry, body.signature),
            username=wallet.username,
            expected_nonce=wallet.link_nonce,
            chain_id=deployment.ledger.chain_id,
            verifying_contract=deployment.ledger.distributor.address,
            now=time.time(),
        )
    except LinkError as err:
        raise HTTPException(400, str(err)) from None
    with session_scope(runtime.engine) as session:
        # Compare-and-swap on the nonce: of two requests with one signature, only the first links.
        result = session.exec(
            update(UserWallet)
            .where(UserWallet.username == wallet.username, UserWallet.link_nonce == body.nonce)
            .values(payout_address=payout, link_nonce=body.nonce + 1, linked_at=utcnow())
        )
        if result.rowcount != 1:
            raise HTTPException(400, "stale link nonce: the wallet was linked meanwhile; sign again")
    log.info("user %s linked payout address %s", wallet.username, payout)
    return {"user": wallet.username, "payout_address": payout, "link_nonce": body.nonce + 1}


class FaucetBody(BaseModel):
    user: str | None = Field(
        default=None, min_length=1, max_length=255, description="a hub user: their custodial wallet gets the funds"
    )
    address: str | None = Field(default=None, description="or any address")
    open: str = Field(default="1000", description="OPEN to mint, in whole tokens")
    eth: str = Field(default="1", description="ETH the address should hold at least, for gas")
    wait_s: float = Field(default=20, ge=0, le=120, description="how long to wait for the mint to be confirmed")


@router.post("/api/admin/faucet")
async def faucet(
    body: FaucetBody,
    request: Request,
    admin: HubUser = Depends(admin_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> JSONResponse:
    """Dev chains only: mint OPEN (through the relay, as the operator) and set an ETH balance for gas. With an
    `Idempotency-Key`, a retry returns the first answer instead of minting again."""
    return await idempotent(request, admin, lambda: _faucet(body, request, admin, runtime))


async def _faucet(body: FaucetBody, request: Request, admin: HubUser, runtime: PlatformRuntime) -> JSONResponse:
    deployment, relay, keys = ledger_parts(runtime)
    if body.user is not None:
        # Only to an existing hub user: a wallet made for a typo would be inherited by a later account of that name.
        answer = await hub_user(body.user, token_from_request(request))
        if answer.status_code == 404:
            raise HTTPException(404, f"no hub user {body.user!r}: create the user first (hub admin page or API)")
        if answer.status_code != 200:
            raise HTTPException(502, f"the hub did not confirm user {body.user!r} ({answer.status_code})")
    try:
        address, eth_balance, outbox_id = await asyncio.to_thread(_fund, runtime, deployment, keys, body)
    except FaucetRefusedError as err:
        raise HTTPException(409, str(err)) from None
    relay.wake()
    deadline = time.monotonic() + body.wait_s
    while True:
        with Session(runtime.engine) as session:
            entry = session.get(OutboxEntry, outbox_id) if outbox_id is not None else None
            mint = _mint_view(entry)
        if entry is None or entry.status in (OutboxStatus.CONFIRMED, OutboxStatus.FAILED):
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    log.info("faucet by %s: %s OPEN, %s ETH to %s (%s)", admin.name, body.open, body.eth, address, mint["status"])
    answer = {"address": address, "eth_balance": str(eth_balance), "open": mint}
    if mint["status"] == OutboxStatus.FAILED:
        return JSONResponse(answer | {"detail": f"minting failed: {mint['error']}"}, status_code=502)
    done = mint["status"] in (OutboxStatus.CONFIRMED, "none")
    return JSONResponse(answer, status_code=200 if done else 202)


def _fund(
    runtime: PlatformRuntime, deployment: LedgerDeployment, keys: WalletKeyStore, body: FaucetBody
) -> tuple[str, int, int | None]:
    w3 = deployment.ledger.w3
    require_dev_chain(w3)
    if (body.user is None) == (body.address is None):
        raise FaucetRefusedError("name exactly one of `user` or `address`")
    if body.user is not None:
        address = ensure_wallet(runtime.engine, body.user, keys).address
    elif Web3.is_address(body.address) and int(body.address, 16) != 0:
        address = Web3.to_checksum_address(body.address)
    else:
        raise FaucetRefusedError(
            f"{body.address!r} is not an Ethereum address that can hold funds (nor the zero address)"
        )
    open_wei, eth_wei = to_wei(body.open, "OPEN", 10**9), to_wei(body.eth, "ETH", 10**6)
    if open_wei == 0 and eth_wei == 0:  # "0" OPEN is a gas-only top-up; nothing at all is a mistake
        raise FaucetRefusedError("nothing to send: give a positive `open` (OPEN to mint) or `eth` (gas)")
    eth_balance = top_up_eth(w3, address, eth_wei)
    if open_wei == 0:
        return address, eth_balance, None
    call = deployment.ledger.token.mint(address, open_wei)
    with session_scope(runtime.engine) as session:
        entry = enqueue(session, call, signer=OPERATOR, kind="faucet.mint", ref=uuid.uuid4().hex)
        session.flush()
        outbox_id = entry.id
    return address, eth_balance, outbox_id


def _mint_view(entry: OutboxEntry | None) -> dict[str, Any]:
    if entry is None:
        return {"status": "none"}
    return {
        "amount_wei": str(int(entry.calldata[-64:], 16)),  # mint(address,uint256): the last word
        "outbox_id": entry.id,
        "status": entry.status,
        "tx_hash": entry.tx_hash,
        "error": entry.last_error,
    }


@router.get("/api/ledger")
def ledger_info(user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)) -> dict:
    """The chain, the contracts' addresses, and the relay's state (rows pending and failed, each signer's worker)."""
    deployment, relay, _ = ledger_parts(runtime)
    ledger = deployment.ledger
    status = runtime.extras["ledger_state"].status
    try:
        client = ledger.w3.client_version
        head = ledger.w3.eth.block_number
    except Exception as err:  # noqa: BLE001 - the chain may be down while the platform is up: say so, don't 500
        client, head = f"unreachable ({type(err).__name__})", None
        status = "chain_unavailable"  # not "ready": writes queue up but nothing is confirmed until it is back
    return {
        "chain_id": ledger.chain_id,
        "rpc_url": redact_url(runtime.settings.chain_rpc_url),
        "client": client,
        "dev_chain": client.lower().startswith(("anvil", "hardhat")),
        "contracts": ledger.addresses,
        "deployer": deployment.deployer.address,
        "operator": deployment.operator,
        "status": status,
        "head_block": head,
        "finality": relay.config.finality.describe(),
        "deployment": {"status": deployment.status, "message": deployment.message},
        "relay": relay.status(),
    }


feature = Feature(name="ledger", router=router, startup=startup, shutdown=shutdown)
