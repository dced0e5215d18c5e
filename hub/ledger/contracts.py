"""Typed wrappers over the five contracts (web3 8).

Write methods return a `PreparedCall` (nothing is sent): `.send(call, signer)` on the wrapper sends it now, and a
relay can instead store `call.to`/`call.data` and sign the transaction itself. Views return dataclasses and raise
`ContractRevert` with the decoded custom error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from hub.ledger.artifacts import load_artifact
from hub.ledger.tx import PreparedCall, Signer, revert_from_exception, send_call
from openledger_sdk.ledger.records import InferenceRecord, to_bytes32

if TYPE_CHECKING:
    from hub.ledger.governance_contracts import Governance

DEFAULT_ADMIN_ROLE = b"\x00" * 32
MINTER_ROLE = keccak(b"MINTER_ROLE")
REGISTRAR_ROLE = keccak(b"REGISTRAR_ROLE")
ATTESTOR_ROLE = keccak(b"ATTESTOR_ROLE")
ROLES = {"admin": DEFAULT_ADMIN_ROLE, "minter": MINTER_ROLE, "registrar": REGISTRAR_ROLE, "attestor": ATTESTOR_ROLE}

Bytes32 = bytes | str  # raw 32 bytes or 0x hex


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class ContractWrapper:
    NAME: ClassVar[str]
    VIEW_BLOCK: ClassVar[str] = "latest"  # the block views read (see the governance wrappers for "pending")

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact(self.NAME).abi)

    def __repr__(self) -> str:
        return f"{self.NAME}({self.address})"

    def prepare(self, function: str, *args: Any) -> PreparedCall:
        data = self.contract.encode_abi(function, args=list(args))
        return PreparedCall(self.NAME, function, self.address, data, 0, tuple(args))

    def send(self, call: PreparedCall, signer: Signer, **kwargs: Any) -> Any:
        """Send now and wait for the receipt (tests, deployment, admin tools); the relay signs on its own."""
        return send_call(self.w3, call, signer, **kwargs)

    def view(self, function: str, *args: Any) -> Any:
        try:
            return self.contract.functions[function](*args).call(block_identifier=self.VIEW_BLOCK)
        except ContractLogicError as err:
            call = PreparedCall(self.NAME, function, self.address, "0x", 0, tuple(args))
            raise revert_from_exception(err, call) from None

    def events(self, event: str, from_block: int = 0, to_block: int | str = "latest", **filters: Any) -> list[Any]:
        """Decoded logs of one event type (`args`, `blockNumber`, `transactionHash`, `logIndex`).

        Filters name event arguments in snake_case or as in the ABI (`datanet_id=` or `datanetId=`)."""
        argument_filters = {_camel(name): value for name, value in filters.items()}
        logs = self.contract.events[event].get_logs(
            argument_filters=argument_filters or None, from_block=from_block, to_block=to_block
        )
        return list(logs)

    def decode_events(self, event: str, receipt: Any) -> list[Any]:
        # DISCARD: other contracts' logs in the same receipt (e.g. the token's Transfer in a claim) are not errors.
        return list(self.contract.events[event]().process_receipt(receipt, errors=DISCARD))

    # Roles (all five contracts use OpenZeppelin AccessControl).
    def has_role(self, role: str, account: str) -> bool:
        return bool(self.view("hasRole", ROLES[role], to_checksum_address(account)))

    def grant_role(self, role: str, account: str) -> PreparedCall:
        return self.prepare("grantRole", ROLES[role], to_checksum_address(account))

    def revoke_role(self, role: str, account: str) -> PreparedCall:
        return self.prepare("revokeRole", ROLES[role], to_checksum_address(account))


class OpenToken(ContractWrapper):
    NAME = "OpenToken"

    def mint(self, to: str, amount: int) -> PreparedCall:
        return self.prepare("mint", to_checksum_address(to), amount)

    def transfer(self, to: str, amount: int) -> PreparedCall:
        return self.prepare("transfer", to_checksum_address(to), amount)

    def approve(self, spender: str, amount: int) -> PreparedCall:
        return self.prepare("approve", to_checksum_address(spender), amount)

    def balance_of(self, account: str) -> int:
        return int(self.view("balanceOf", to_checksum_address(account)))

    def total_supply(self) -> int:
        return int(self.view("totalSupply"))

    def metadata(self) -> tuple[str, str, int]:
        return self.view("name"), self.view("symbol"), int(self.view("decimals"))


@dataclass(frozen=True)
class Datanet:
    owner: str
    created_at: int
    latest_version: int
    metadata_hash: bytes


@dataclass(frozen=True)
class DatanetVersion:
    merkle_root: bytes
    contributor_counts_root: bytes
    row_count: int
    published_at: int


class DatanetRegistry(ContractWrapper):
    NAME = "DatanetRegistry"

    def create_datanet(self, datanet_id: Bytes32, owner: str, metadata_hash: Bytes32) -> PreparedCall:
        return self.prepare(
            "createDatanet", to_bytes32(datanet_id), to_checksum_address(owner), to_bytes32(metadata_hash)
        )

    def publish_version(
        self,
        datanet_id: Bytes32,
        version: int,
        merkle_root: Bytes32,
        row_count: int,
        contributor_counts_root: Bytes32,
    ) -> PreparedCall:
        return self.prepare(
            "publishVersion",
            to_bytes32(datanet_id),
            version,
            to_bytes32(merkle_root),
            row_count,
            to_bytes32(contributor_counts_root),
        )

    def get_datanet(self, datanet_id: Bytes32) -> Datanet:
        owner, created_at, latest, metadata_hash = self.view("getDatanet", to_bytes32(datanet_id))
        return Datanet(owner, created_at, latest, bytes(metadata_hash))

    def get_version(self, datanet_id: Bytes32, version: int) -> DatanetVersion:
        root, counts_root, rows, published_at = self.view("getVersion", to_bytes32(datanet_id), version)
        return DatanetVersion(bytes(root), bytes(counts_root), rows, published_at)


@dataclass(frozen=True)
class Model:
    owner: str
    registered_at: int
    base_model_hash: bytes
    manifest_hash: bytes
    adapter_hash: bytes
    price_per_1k_tokens: int
    datanet_version_roots: tuple[bytes, ...]


class ModelRegistry(ContractWrapper):
    NAME = "ModelRegistry"

    def register_model(
        self,
        model_id: Bytes32,
        owner: str,
        base_model_hash: Bytes32,
        datanet_version_roots: Sequence[Bytes32],
        manifest_hash: Bytes32,
        adapter_hash: Bytes32,
        price_per_1k_tokens: int,
    ) -> PreparedCall:
        return self.prepare(
            "registerModel",
            to_bytes32(model_id),
            to_checksum_address(owner),
            to_bytes32(base_model_hash),
            [to_bytes32(root) for root in datanet_version_roots],
            to_bytes32(manifest_hash),
            to_bytes32(adapter_hash),
            price_per_1k_tokens,
        )

    def set_price(self, model_id: Bytes32, price_per_1k_tokens: int) -> PreparedCall:
        return self.prepare("setPrice", to_bytes32(model_id), price_per_1k_tokens)

    def get_model(self, model_id: Bytes32) -> Model:
        owner, registered_at, base, manifest, adapter, price, roots = self.view("getModel", to_bytes32(model_id))
        roots = tuple(bytes(root) for root in roots)
        return Model(owner, registered_at, bytes(base), bytes(manifest), bytes(adapter), price, roots)


@dataclass(frozen=True)
class EpochTotals:
    """Totals of one epoch; fees in OPEN base units, and fees == owner + contributor + protocol fees."""

    records: int
    tokens: int
    fees: int
    owner_fees: int
    contributor_fees: int
    protocol_fees: int

    def as_tuple(self) -> tuple[int, ...]:
        return (self.records, self.tokens, self.fees, self.owner_fees, self.contributor_fees, self.protocol_fees)


@dataclass(frozen=True)
class Epoch:
    records_root: bytes
    payouts_root: bytes
    totals: EpochTotals
    committed_at: int
    uri: str
    parameters_block: int = 0  # the epoch's start block: its fee parameters are ProtocolParameters' at this block
    parameters_hash: bytes = b"\x00" * 32  # keccak256(abi.encode(parameters)), ProtocolParameters.hashParameters


class AttributionLedger(ContractWrapper):
    NAME = "AttributionLedger"

    def commit_epoch(
        self,
        epoch: int,
        records_root: Bytes32,
        payouts_root: Bytes32,
        totals: EpochTotals,
        uri: str,
        parameters_block: int = 0,
        parameters_hash: Bytes32 = b"\x00" * 32,
    ) -> PreparedCall:
        return self.prepare(
            "commitEpoch",
            epoch,
            to_bytes32(records_root),
            to_bytes32(payouts_root),
            totals.as_tuple(),
            uri,
            parameters_block,
            to_bytes32(parameters_hash),
        )

    def record_inference(self, record: InferenceRecord) -> PreparedCall:
        return self.prepare("recordInference", *record.leaf_values())

    def get_epoch(self, epoch: int) -> Epoch:
        records_root, payouts_root, totals, committed_at, uri, block, params_hash = self.view("getEpoch", epoch)
        totals = EpochTotals(*totals)
        return Epoch(bytes(records_root), bytes(payouts_root), totals, committed_at, uri, block, bytes(params_hash))

    def latest_epoch(self) -> int:
        return int(self.view("latestEpoch"))

    def is_recorded(self, record_id: Bytes32) -> bool:
        return bool(self.view("isRecorded", to_bytes32(record_id)))

    def get_record_leaf(self, record_id: Bytes32) -> bytes:
        return bytes(self.view("getRecordLeaf", to_bytes32(record_id)))


class RewardDistributor(ContractWrapper):
    NAME = "RewardDistributor"

    def set_root(self, new_root: Bytes32, expected_current_root: Bytes32) -> PreparedCall:
        return self.prepare("setRoot", to_bytes32(new_root), to_bytes32(expected_current_root))

    def fund(self, amount: int) -> PreparedCall:
        """Pulls `amount` from the sender, who must have approved the distributor on the token first."""
        return self.prepare("fund", amount)

    def claim(
        self, account: str, cumulative_amount: int, expected_root: Bytes32, proof: Sequence[Bytes32]
    ) -> PreparedCall:
        return self.prepare(
            "claim",
            to_checksum_address(account),
            cumulative_amount,
            to_bytes32(expected_root),
            [to_bytes32(node) for node in proof],
        )

    def merkle_root(self) -> bytes:
        return bytes(self.view("merkleRoot"))

    def cumulative_claimed(self, account: str) -> int:
        return int(self.view("cumulativeClaimed", to_checksum_address(account)))

    def token_address(self) -> str:
        return self.view("token")


CONTRACT_CLASSES: dict[str, type[ContractWrapper]] = {
    cls.NAME: cls for cls in (OpenToken, DatanetRegistry, ModelRegistry, AttributionLedger, RewardDistributor)
}


@dataclass
class Ledger:
    """The five contracts on one chain."""

    w3: Web3
    chain_id: int
    token: OpenToken
    datanets: DatanetRegistry
    models: ModelRegistry
    attribution: AttributionLedger
    distributor: RewardDistributor
    governance: Governance | None = None  # None on a deployment made before governance existed, until attached

    @classmethod
    def at(cls, w3: Web3, chain_id: int, addresses: dict[str, str]) -> Ledger:
        from hub.ledger.governance_contracts import Governance  # here: that module builds on this one

        return cls(
            w3,
            chain_id,
            OpenToken(w3, addresses["OpenToken"]),
            DatanetRegistry(w3, addresses["DatanetRegistry"]),
            ModelRegistry(w3, addresses["ModelRegistry"]),
            AttributionLedger(w3, addresses["AttributionLedger"]),
            RewardDistributor(w3, addresses["RewardDistributor"]),
            Governance.at(w3, addresses) if "ProtocolParameters" in addresses else None,
        )

    @property
    def addresses(self) -> dict[str, str]:
        """The five contracts' addresses, and the governance contracts' when deployed."""
        own = {wrapper.NAME: wrapper.address for wrapper in self.contracts()}
        return own | (self.governance.addresses if self.governance is not None else {})

    def contracts(self) -> list[ContractWrapper]:
        return [self.token, self.datanets, self.models, self.attribution, self.distributor]
