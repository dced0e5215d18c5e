"""Why an inference paid whom: `ol.attribution.explain(request_id)`, and checking it yourself with `.verify()`.

    e = ol.attribution.explain("req-42")
    e.fee_wei, e.split            # the fee and who got what (owner, contributors with weights, protocol, unattributed)
    e.top_examples                # the training rows that weighed most (row ids, datanet version)
    e.verify()                    # True: this record, with this split, is in the epoch root committed on chain
    ol.attribution.verify_on_chain(e)   # the same check against the root read from the chain yourself

Every inference record carries an attribution document (the fee split, the shares and the top examples) whose hash
is part of the record's Merkle leaf `(recordId, modelId, user, tokens, fee, attributionHash)`. `verify()` recomputes
that hash from the document, rebuilds the leaf and checks the inclusion proof against the records root that the
platform reads from the AttributionLedger contract — so a changed split, fee, token count or proof fails.
`verify_on_chain()` does not trust the platform for the root either: it reads `getEpoch(epoch)` from the
contract with an `eth_call` through the hub's chain gateway. It also checks the payout against governance: the
epoch's committed parameters hash equals `ProtocolParameters.parametersHashAt(epoch start block)`, the record's
document names those same parameters, and the fee and split recomputed from the document's inputs with them are
exactly the amounts recorded (`check_on_chain()` gives each check by name).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from eth_abi import decode, encode
from eth_hash.auto import keccak

from openledger_sdk.errors import OpenLedgerError
from openledger_sdk.ledger.fees import inference_fee, split_fee_under
from openledger_sdk.ledger.parameters import GovernedParameters
from openledger_sdk.ledger.records import RECORD_LEAF_TYPES, derive_id
from openledger_sdk.merkle import MerkleError, verify

if TYPE_CHECKING:
    from openledger_sdk.client import Client

DOCUMENT_VERSION = 1
# AttributionLedger.getEpoch(uint64) returns Epoch(recordsRoot, payoutsRoot, EpochTotals(6 ints), committedAt, uri,
# parametersBlock, parametersHash).
GET_EPOCH_SELECTOR = keccak(b"getEpoch(uint64)")[:4]
EPOCH_TYPE = "(bytes32,bytes32,(uint64,uint64,uint128,uint128,uint128,uint128),uint64,string,uint64,bytes32)"
PARAMETERS_HASH_AT_SELECTOR = keccak(b"parametersHashAt(uint256)")[:4]


def canonical_document(document: Mapping[str, Any]) -> bytes:
    """The attribution document's canonical bytes: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def attribution_hash(document: Mapping[str, Any]) -> bytes:
    """keccak256 of the canonical attribution document: the record leaf's `attributionHash`."""
    return keccak(canonical_document(document))


def record_leaf(record: Mapping[str, Any]) -> list[Any]:
    """The record's Merkle leaf values, with the attribution hash recomputed from its document."""
    return [
        record["record_id"],
        record["model_id"],
        record["payer_address"],
        int(record["tokens"]),
        int(record["fee"]),
        attribution_hash(record["attribution"]),
    ]


@dataclass(frozen=True)
class Explanation:
    """One inference record as the platform stores it, with its inclusion proof once its epoch is committed."""

    record: dict[str, Any]

    @property
    def request_id(self) -> str:
        return self.record["request_id"]

    @property
    def fee_wei(self) -> int:
        return int(self.record["fee"])

    @property
    def split(self) -> dict[str, Any]:
        """owner {address, amount}, contributors [{address, weight, amount}], protocol, unattributed (base units)."""
        doc = self.record["attribution"]
        keys = ("owner", "contributors", "protocol", "unattributed", "unattributed_to")
        return {key: doc[key] for key in keys}

    @property
    def top_examples(self) -> list[dict[str, Any]]:
        return self.record["attribution"]["top_examples"]

    @property
    def epoch(self) -> int | None:
        return self.record["epoch"]

    @property
    def settled(self) -> bool:
        """True when the record is in an epoch root committed on chain (then `verify()` can check it)."""
        proof = self.record.get("proof")
        return bool(proof and proof.get("chain_records_root"))

    def verify(self, proof: Sequence[str] | None = None, root: str | None = None) -> bool:
        """Check this record against the on-chain records root of its epoch (or the `proof`/`root` given).

        False when anything does not match (document, leaf, proof); an error when there is nothing to check yet."""
        record_proof = self.record.get("proof") or {}
        root = root or record_proof.get("chain_records_root")
        proof = record_proof.get("proof") if proof is None else proof
        if not root or proof is None:
            state = self.record.get("charge_status")
            raise OpenLedgerError(
                f"record {self.request_id} is not in an epoch committed on chain yet (epoch {self.epoch}, "
                f"charge {state}): settle first, or it was excluded as unpaid"
            )
        if self.record["record_id"] != "0x" + derive_id("inference", self.request_id).hex():
            return False
        if self.record["attribution"].get("request_id") != self.request_id:
            return False
        try:
            return verify(root, record_leaf(self.record), RECORD_LEAF_TYPES, list(proof))
        except (MerkleError, KeyError, TypeError, ValueError):
            return False


class Attribution:
    """`ol.attribution`: explanations of inference records."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def explain(self, request_id: str) -> Explanation:
        """The record of one inference (its `request_id` from the completion response)."""
        record = self._client.request("GET", "platform", f"api/attribution/{quote(request_id, safe='')}")
        return Explanation(record)

    def _eth_call(self, contract: str, data: bytes, what: str) -> bytes:
        address = self._client.request("GET", "platform", "api/ledger")["contracts"].get(contract)
        if address is None:
            raise OpenLedgerError(f"this platform has no {contract} contract deployed")
        call = {"to": address, "data": "0x" + data.hex()}
        answer = self._client.request(
            "POST", "chain", "", json={"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
        )
        if "error" in answer:  # e.g. UnknownEpoch reverts: the epoch is not committed (yet)
            raise OpenLedgerError(f"{what}: {answer['error'].get('message')}")
        return bytes.fromhex(answer["result"].removeprefix("0x"))

    def epoch_on_chain(self, epoch: int) -> dict[str, Any]:
        """What the AttributionLedger holds for `epoch`: roots, committed time, and its governed parameters' block
        and hash (read from the contract, not from the platform)."""
        raw = self._eth_call(
            "AttributionLedger",
            GET_EPOCH_SELECTOR + encode(["uint64"], [int(epoch)]),
            f"epoch {epoch} is not committed on chain",
        )
        (committed,) = decode([EPOCH_TYPE], raw)
        records_root, payouts_root, _totals, committed_at, uri, block, params_hash = committed
        return {
            "records_root": "0x" + records_root.hex(),
            "payouts_root": "0x" + payouts_root.hex(),
            "committed_at": committed_at,
            "uri": uri,
            "parameters_block": block,
            "parameters_hash": "0x" + params_hash.hex(),
        }

    def records_root_on_chain(self, epoch: int) -> str:
        """The records root committed for `epoch`, read from the AttributionLedger contract (not from the platform)."""
        return self.epoch_on_chain(epoch)["records_root"]

    def parameters_hash_on_chain(self, block: int) -> str:
        """ProtocolParameters.parametersHashAt(block): the hash of the governed parameters in force at `block`."""
        raw = self._eth_call(
            "ProtocolParameters",
            PARAMETERS_HASH_AT_SELECTOR + encode(["uint256"], [int(block)]),
            f"cannot read the parameters at block {block}",
        )
        return "0x" + raw[-32:].hex()

    def check_on_chain(self, explanation: Explanation | str) -> dict[str, bool | None]:
        """Each check of `verify_on_chain` by name; None where the record predates governance (nothing to check).

        record_in_root: the record is in the epoch's records root on chain. epoch_parameters: the epoch's committed
        parameters hash is ProtocolParameters' at the epoch's start block. record_parameters: the record's document
        names those parameters (its values hash to the committed hash). split: the fee and every amount recomputed
        from the document's tokens, prices, weights and those parameters are exactly the recorded ones."""
        if isinstance(explanation, str):
            explanation = self.explain(explanation)
        if explanation.epoch is None:
            raise OpenLedgerError(f"record {explanation.request_id} is not in a settled epoch yet: settle first")
        epoch = self.epoch_on_chain(explanation.epoch)
        checks: dict[str, bool | None] = {"record_in_root": explanation.verify(root=epoch["records_root"])}
        document = explanation.record["attribution"]
        if not document.get("parameters") or epoch["parameters_hash"] == "0x" + "00" * 32:
            return checks | {"epoch_parameters": None, "record_parameters": None, "split": None}
        parameters = GovernedParameters.from_dict(document["parameters"])
        in_force = self.parameters_hash_on_chain(epoch["parameters_block"])
        checks["epoch_parameters"] = in_force == epoch["parameters_hash"]
        checks["record_parameters"] = parameters.hash == epoch["parameters_hash"]
        checks["split"] = split_matches(document, parameters)
        return checks

    def verify_on_chain(self, explanation: Explanation | str) -> bool:
        """True when every check of `check_on_chain` passes: the record is in the root read from the chain, and its
        payout follows the governed parameters committed for its epoch (takes an explanation or request id)."""
        return all(result is not False for result in self.check_on_chain(explanation).values())


def split_matches(document: Mapping[str, Any], parameters: GovernedParameters) -> bool:
    """The document's fee and split recomputed from its inputs with `parameters` (the SDK's exact fee math)."""
    try:
        if int(document["platform_fee"]) != parameters.platform_fee:
            return False
        fee = inference_fee(
            int(document["prompt_tokens"]),
            int(document["completion_tokens"]),
            int(document["price_in_per_1k"]),
            int(document["price_out_per_1k"]),
            parameters.platform_fee,
        )
        shares = {part["address"]: Fraction(part["weight"]) for part in document["contributors"]}
        split = split_fee_under(fee, shares, parameters)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return False
    recorded = {part["address"]: int(part["amount"]) for part in document["contributors"]}
    return (
        fee == int(document["fee"])
        and split.owner == int(document["owner"]["amount"])
        and split.protocol == int(document["protocol"])
        and split.unattributed == int(document["unattributed"])
        and split.contributors == recorded
    )
