// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title Inference records and per-epoch attribution commitments.
/// @notice The normal path is one `commitEpoch` per settlement epoch: a Merkle root over every inference record
///         (leaves as in `recordLeaf`) plus the payouts root and totals. `recordInference` writes one record per
///         transaction; it is the per-record baseline and lets a relay write single records idempotently.
///         Each epoch also records the block its fee parameters were read at (its start block) and their hash
///         (ProtocolParameters.parametersHashAt(block)), so anyone can check which governed split paid it.
contract AttributionLedger is AccessControl {
    bytes32 public constant ATTESTOR_ROLE = keccak256("ATTESTOR_ROLE");

    /// @dev Totals of one epoch; fees are in OPEN base units and must add up.
    struct EpochTotals {
        uint64 records;
        uint64 tokens;
        uint128 fees;
        uint128 ownerFees;
        uint128 contributorFees;
        uint128 protocolFees;
    }

    struct Epoch {
        bytes32 recordsRoot;
        bytes32 payoutsRoot;
        EpochTotals totals;
        uint64 committedAt;
        string uri;
        uint64 parametersBlock;
        bytes32 parametersHash;
    }

    mapping(uint64 epoch => Epoch) private _epochs;
    mapping(bytes32 recordId => bytes32 leaf) private _records;
    uint64 public latestEpoch;

    event EpochCommitted(
        uint64 indexed epoch,
        bytes32 recordsRoot,
        bytes32 payoutsRoot,
        EpochTotals totals,
        string uri,
        uint64 parametersBlock,
        bytes32 parametersHash
    );
    event InferenceRecorded(
        bytes32 indexed recordId,
        bytes32 indexed modelId,
        address indexed user,
        uint256 tokens,
        uint256 fee,
        bytes32 attributionHash
    );

    error ZeroAddress();
    error EmptyRoot();
    error EpochAlreadyCommitted(uint64 epoch);
    error UnknownEpoch(uint64 epoch);
    error TotalsMismatch(uint256 fees, uint256 sumOfShares);
    error RecordExists(bytes32 recordId);
    error UnknownRecord(bytes32 recordId);

    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function commitEpoch(
        uint64 epoch,
        bytes32 recordsRoot,
        bytes32 payoutsRoot,
        EpochTotals calldata totals,
        string calldata uri,
        uint64 parametersBlock,
        bytes32 parametersHash
    ) external onlyRole(ATTESTOR_ROLE) {
        if (_epochs[epoch].committedAt != 0) revert EpochAlreadyCommitted(epoch);
        if (recordsRoot == bytes32(0)) revert EmptyRoot();
        uint256 shares = uint256(totals.ownerFees) + totals.contributorFees + totals.protocolFees;
        if (shares != totals.fees) revert TotalsMismatch(totals.fees, shares);
        _epochs[epoch] = Epoch(
            recordsRoot, payoutsRoot, totals, uint64(block.timestamp), uri, parametersBlock, parametersHash
        );
        if (epoch > latestEpoch) latestEpoch = epoch;
        emit EpochCommitted(epoch, recordsRoot, payoutsRoot, totals, uri, parametersBlock, parametersHash);
    }

    /// @dev Stores the record's leaf hash (the same leaf an epoch tree would hold), so a record id is written once.
    function recordInference(
        bytes32 recordId,
        bytes32 modelId,
        address user,
        uint256 tokens,
        uint256 fee,
        bytes32 attributionHash
    ) external onlyRole(ATTESTOR_ROLE) {
        if (_records[recordId] != bytes32(0)) revert RecordExists(recordId);
        _records[recordId] = recordLeaf(recordId, modelId, user, tokens, fee, attributionHash);
        emit InferenceRecorded(recordId, modelId, user, tokens, fee, attributionHash);
    }

    function getEpoch(uint64 epoch) external view returns (Epoch memory) {
        Epoch memory committed = _epochs[epoch];
        if (committed.committedAt == 0) revert UnknownEpoch(epoch);
        return committed;
    }

    function isRecorded(bytes32 recordId) external view returns (bool) {
        return _records[recordId] != bytes32(0);
    }

    function getRecordLeaf(bytes32 recordId) external view returns (bytes32) {
        bytes32 leaf = _records[recordId];
        if (leaf == bytes32(0)) revert UnknownRecord(recordId);
        return leaf;
    }

    /// @notice Leaf of an inference record, as built by OpenZeppelin's StandardMerkleTree with the types
    ///         (bytes32 recordId, bytes32 modelId, address user, uint256 tokens, uint256 fee, bytes32 attributionHash).
    function recordLeaf(
        bytes32 recordId,
        bytes32 modelId,
        address user,
        uint256 tokens,
        uint256 fee,
        bytes32 attributionHash
    ) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(recordId, modelId, user, tokens, fee, attributionHash))));
    }
}
