// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title Datanets and their published versions.
/// @notice A version freezes the approved rows of a datanet: its Merkle root, the row count and the root of
///         the per-contributor row counts go on-chain. The platform registers on behalf of the owner.
contract DatanetRegistry is AccessControl {
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    struct Datanet {
        address owner;
        uint64 createdAt;
        uint64 latestVersion;
        bytes32 metadataHash;
    }

    struct Version {
        bytes32 merkleRoot;
        bytes32 contributorCountsRoot;
        uint64 rowCount;
        uint64 publishedAt;
    }

    mapping(bytes32 datanetId => Datanet) private _datanets;
    mapping(bytes32 datanetId => mapping(uint64 version => Version)) private _versions;

    event DatanetCreated(bytes32 indexed datanetId, address indexed owner, bytes32 metadataHash);
    event VersionPublished(
        bytes32 indexed datanetId,
        uint64 indexed version,
        bytes32 merkleRoot,
        uint64 rowCount,
        bytes32 contributorCountsRoot
    );

    error ZeroAddress();
    error ZeroId();
    error EmptyRoot();
    error DatanetExists(bytes32 datanetId);
    error UnknownDatanet(bytes32 datanetId);
    error VersionNotIncreasing(bytes32 datanetId, uint64 version, uint64 latestVersion);
    error UnknownVersion(bytes32 datanetId, uint64 version);

    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function createDatanet(bytes32 datanetId, address owner, bytes32 metadataHash) external onlyRole(REGISTRAR_ROLE) {
        if (datanetId == bytes32(0)) revert ZeroId();
        if (owner == address(0)) revert ZeroAddress();
        if (_datanets[datanetId].owner != address(0)) revert DatanetExists(datanetId);
        _datanets[datanetId] = Datanet(owner, uint64(block.timestamp), 0, metadataHash);
        emit DatanetCreated(datanetId, owner, metadataHash);
    }

    /// @dev Versions start at 1 and must strictly increase (gaps are allowed: a rejected draft keeps its number).
    function publishVersion(
        bytes32 datanetId,
        uint64 version,
        bytes32 merkleRoot,
        uint64 rowCount,
        bytes32 contributorCountsRoot
    ) external onlyRole(REGISTRAR_ROLE) {
        Datanet storage datanet = _datanets[datanetId];
        if (datanet.owner == address(0)) revert UnknownDatanet(datanetId);
        if (version <= datanet.latestVersion) revert VersionNotIncreasing(datanetId, version, datanet.latestVersion);
        if (merkleRoot == bytes32(0)) revert EmptyRoot();
        datanet.latestVersion = version;
        _versions[datanetId][version] = Version(merkleRoot, contributorCountsRoot, rowCount, uint64(block.timestamp));
        emit VersionPublished(datanetId, version, merkleRoot, rowCount, contributorCountsRoot);
    }

    function getDatanet(bytes32 datanetId) external view returns (Datanet memory) {
        Datanet memory datanet = _datanets[datanetId];
        if (datanet.owner == address(0)) revert UnknownDatanet(datanetId);
        return datanet;
    }

    function getVersion(bytes32 datanetId, uint64 version) external view returns (Version memory) {
        Version memory published = _versions[datanetId][version];
        if (published.merkleRoot == bytes32(0)) revert UnknownVersion(datanetId, version);
        return published;
    }
}
