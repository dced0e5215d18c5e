"""Deploy-or-attach: the platform's contracts on the configured chain, addresses kept in the data dir per chain id.

First start: deploy the five contracts and the governance contracts (hub.governance.deploy) with the deployer key,
grant the operator (the account the platform writes
with) its roles, write `<data_dir>/chain/<chain_id>/deployments.json`. Later starts attach after checking that code
is still at every address; a reset dev chain (no code) gets a fresh deployment, and the log says so.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3

from hub.ledger.artifacts import CONTRACT_NAMES, GOVERNANCE_NAMES, sources_hash
from hub.ledger.contracts import Ledger
from hub.ledger.errors import ChainUnreachableError, DeploymentError, LedgerError, WrongChainError
from hub.ledger.keys import DevChainKeyFile, KeyFile, KeySource
from hub.ledger.provider import make_provider
from hub.ledger.tx import constructor_call, send_call
from hub.settings import Settings

log = logging.getLogger("hub.ledger")

# Which roles the operator gets on which contract; the deployer keeps DEFAULT_ADMIN_ROLE everywhere.
OPERATOR_ROLES = {
    "OpenToken": ("minter",),
    "DatanetRegistry": ("registrar",),
    "ModelRegistry": ("registrar",),
    "AttributionLedger": ("attestor",),
    "RewardDistributor": ("attestor",),
}


@dataclass
class LedgerDeployment:
    ledger: Ledger
    deployer: LocalAccount
    operator: str
    status: Literal["deployed", "attached", "redeployed"]
    path: Path
    message: str
    governance_block: int = 0  # where the governance contracts' events start (proposal listings scan from here)


def redact_url(url: str) -> str:
    """scheme://host:port only: RPC URLs often carry API keys in the path or user info."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" if parts.hostname else url


def connect(rpc_url: str, expected_chain_id: int, timeout: float = 10) -> Web3:
    """A Web3 on `rpc_url` that answered with `expected_chain_id`, or a clear error."""
    # The probe does not retry, so a dead endpoint fails at once; the Web3 returned keeps web3's retries.
    probe = Web3(make_provider(rpc_url, timeout, retries=False))
    try:
        actual = probe.eth.chain_id
    except Exception as err:  # noqa: BLE001 - connection errors come from requests, urllib3 and web3
        raise ChainUnreachableError(
            f"cannot reach the chain's JSON-RPC at {redact_url(rpc_url)} ({type(err).__name__}): is the node "
            "running? Check [chain] rpc_url (empty: the embedded anvil on [chain] anvil_port)."
        ) from None
    if actual != expected_chain_id:
        raise WrongChainError(
            f"the node at {redact_url(rpc_url)} is chain id {actual}, but the settings say {expected_chain_id}: "
            "fix [chain] chain_id or [chain] rpc_url."
        )
    return Web3(make_provider(rpc_url, timeout))


def default_key_source(settings: Settings) -> KeySource:
    """A generated key in the key store: funded by the embedded anvil at first use; on any other chain fund it
    yourself. Never an unlocked dev account, whose key is public."""
    path = deployments_dir(settings.data_dir, settings.chain.chain_id) / "deployer.key"
    return DevChainKeyFile(path) if not settings.chain.rpc_url else KeyFile(path)


def deployments_dir(data_dir: Path, chain_id: int) -> Path:
    return data_dir / "chain" / str(chain_id)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One deployer at a time per chain: services starting together must not deploy twice."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "deploy.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def deploy_contracts(w3: Web3, deployer: LocalAccount, token_address: str | None = None) -> tuple[dict[str, str], int]:
    """Deploy all five (or four, with an existing ERC-20 as the reward token); (addresses, first block)."""
    admin = deployer.address
    addresses: dict[str, str] = {}
    first_block: int | None = None
    for name in CONTRACT_NAMES:
        if name == "OpenToken" and token_address:
            addresses[name] = to_checksum_address(token_address)
            continue
        args: tuple[Any, ...] = (admin, addresses["OpenToken"]) if name == "RewardDistributor" else (admin,)
        receipt = send_call(w3, constructor_call(name, w3, *args), deployer)
        addresses[name] = receipt["contractAddress"]
        first_block = receipt["blockNumber"] if first_block is None else first_block
        log.info("deployed %s at %s", name, receipt["contractAddress"])
    return addresses, int(first_block or 0)


def grant_operator_roles(ledger: Ledger, admin: LocalAccount, operator: str, skip: tuple[str, ...] = ()) -> None:
    """Grant (only the missing) operator roles: safe to repeat on every start."""
    for wrapper in ledger.contracts():
        if wrapper.NAME in skip:
            continue
        for role in OPERATOR_ROLES[wrapper.NAME]:
            if not wrapper.has_role(role, operator):
                wrapper.send(wrapper.grant_role(role, operator), admin)


def _missing_code(w3: Web3, addresses: dict[str, str]) -> list[str]:
    names = CONTRACT_NAMES + tuple(name for name in GOVERNANCE_NAMES if name in addresses)
    return [name for name in names if len(w3.eth.get_code(addresses[name])) == 0]


def _add_governance(w3: Web3, deployer: LocalAccount, settings: Settings, record: dict[str, Any]) -> None:
    """Deploy the governance contracts into `record` (a fresh deployment, or one made before governance existed)."""
    from hub.governance.deploy import deploy_governance  # here: hub.governance builds on this module

    record["governance_block"] = w3.eth.block_number + 1
    contracts = record["contracts"]
    contracts.update(deploy_governance(w3, deployer, contracts["OpenToken"], settings.rewards, settings.governance))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one, never half of one


def deploy_or_attach(
    settings: Settings,
    *,
    key_source: KeySource | None = None,
    operator: str | None = None,
    token_address: str | None = None,
    redeploy: bool = False,
    rpc_url: str | None = None,
) -> LedgerDeployment:
    """The platform's contracts on the configured chain, deploying them if this chain has none of ours yet.

    `key_source`: the deployer key (default: `default_key_source`). `operator`: the address the platform writes with
    (registrar, attestor, minter); default the deployer. `token_address`: an existing ERC-20 to pay rewards in
    instead of deploying OpenToken. `rpc_url` overrides the settings' (tests).
    """
    chain_id = settings.chain.chain_id
    url = rpc_url or settings.chain_rpc_url
    w3 = connect(url, chain_id)
    directory = deployments_dir(settings.data_dir, chain_id)
    path = directory / "deployments.json"
    with _locked(directory):
        source = key_source or default_key_source(settings)
        deployer = source.load(w3)
        operator = to_checksum_address(operator or deployer.address)
        status: Literal["deployed", "attached", "redeployed"] = "deployed"
        message = f"deployed the ledger contracts on chain {chain_id}"
        if path.exists() and not redeploy:
            record = json.loads(path.read_text())
            missing = _missing_code(w3, record["contracts"])
            # A dev chain deployed by anvil's public dev account (older versions): anyone can sign as that admin.
            recorded_deployer = record.get("deployer", deployer.address)
            public_admin = isinstance(source, DevChainKeyFile) and recorded_deployer != deployer.address
            if not missing and not public_admin:
                message = f"attached to the ledger contracts on chain {chain_id} ({path})"
                skip = ("OpenToken",) if record.get("external_token") else ()
                try:
                    if "ProtocolParameters" not in record["contracts"]:
                        _add_governance(w3, deployer, settings, record)
                        _write_json(path, record)
                        message += "; deployed the governance contracts it lacked"
                    ledger = Ledger.at(w3, chain_id, record["contracts"])
                    grant_operator_roles(ledger, deployer, operator, skip)
                except LedgerError as err:
                    raise DeploymentError(
                        f"granting roles to operator {operator} with {deployer.address} failed: {err}"
                    ) from err
                if record.get("sources_hash") != sources_hash():
                    message += "; they were deployed from other contract sources: pass redeploy=True to replace them"
                log.info(message)
                block = int(record.get("governance_block", 0))
                return LedgerDeployment(ledger, deployer, operator, "attached", path, message, block)
            status = "redeployed"
            message = (
                f"chain {chain_id} was reset (no code at {', '.join(missing)} as recorded in {path}): "
                "redeployed the ledger contracts, earlier on-chain records are gone"
                if missing
                else f"the contracts on chain {chain_id} were deployed by {record['deployer']}, whose key is public: "
                "redeployed them with the generated deployer key, earlier on-chain records are gone"
            )
        elif path.exists():
            status, message = "redeployed", f"redeployed the ledger contracts on chain {chain_id} as asked"
        try:
            addresses, first_block = deploy_contracts(w3, deployer, token_address)
            record = {
                "chain_id": chain_id,
                "contracts": addresses,
                "deployer": deployer.address,
                "operator": operator,
                "external_token": bool(token_address),
                "first_block": first_block,
                "sources_hash": sources_hash(),
                "deployed_at": int(time.time()),
            }
            _add_governance(w3, deployer, settings, record)
            ledger = Ledger.at(w3, chain_id, addresses)
            grant_operator_roles(ledger, deployer, operator, ("OpenToken",) if token_address else ())
        except LedgerError as err:
            raise DeploymentError(f"deploying the ledger contracts on chain {chain_id} failed: {err}") from err
        _write_json(path, record)
        (log.warning if status == "redeployed" else log.info)(message)
        block = int(record["governance_block"])
        return LedgerDeployment(ledger, deployer, operator, status, path, message, block)
