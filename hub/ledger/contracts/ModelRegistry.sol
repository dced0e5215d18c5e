// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title Fine-tuned models (LoRA adapters) and their provenance.
/// @notice The manifest hash commits to the whole provenance manifest (config, data order, losses); the
///         datanet version roots name exactly which data the adapter was trained on.
contract ModelRegistry is AccessControl {
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    struct Model {
        address owner;
        uint64 registeredAt;
        bytes32 baseModelHash;
        bytes32 manifestHash;
        bytes32 adapterHash;
        uint256 pricePer1kTokens;
        bytes32[] datanetVersionRoots;
    }

    mapping(bytes32 modelId => Model) private _models;

    event ModelRegistered(
        bytes32 indexed modelId,
        address indexed owner,
        bytes32 baseModelHash,
        bytes32[] datanetVersionRoots,
        bytes32 manifestHash,
        bytes32 adapterHash,
        uint256 pricePer1kTokens
    );
    event PriceChanged(bytes32 indexed modelId, uint256 oldPricePer1kTokens, uint256 newPricePer1kTokens);

    error ZeroAddress();
    error ZeroId();
    error ModelExists(bytes32 modelId);
    error UnknownModel(bytes32 modelId);

    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function registerModel(
        bytes32 modelId,
        address owner,
        bytes32 baseModelHash,
        bytes32[] calldata datanetVersionRoots,
        bytes32 manifestHash,
        bytes32 adapterHash,
        uint256 pricePer1kTokens
    ) external onlyRole(REGISTRAR_ROLE) {
        if (modelId == bytes32(0)) revert ZeroId();
        if (owner == address(0)) revert ZeroAddress();
        Model storage model = _models[modelId];
        if (model.owner != address(0)) revert ModelExists(modelId);
        model.owner = owner;
        model.registeredAt = uint64(block.timestamp);
        model.baseModelHash = baseModelHash;
        model.manifestHash = manifestHash;
        model.adapterHash = adapterHash;
        model.pricePer1kTokens = pricePer1kTokens;
        model.datanetVersionRoots = datanetVersionRoots;
        emit ModelRegistered(
            modelId, owner, baseModelHash, datanetVersionRoots, manifestHash, adapterHash, pricePer1kTokens
        );
    }

    function setPrice(bytes32 modelId, uint256 pricePer1kTokens) external onlyRole(REGISTRAR_ROLE) {
        Model storage model = _models[modelId];
        if (model.owner == address(0)) revert UnknownModel(modelId);
        emit PriceChanged(modelId, model.pricePer1kTokens, pricePer1kTokens);
        model.pricePer1kTokens = pricePer1kTokens;
    }

    function getModel(bytes32 modelId) external view returns (Model memory) {
        Model memory model = _models[modelId];
        if (model.owner == address(0)) revert UnknownModel(modelId);
        return model;
    }
}
