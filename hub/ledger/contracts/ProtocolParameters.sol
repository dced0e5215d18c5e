// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title The governed protocol parameters: fee split, contributor cap, platform fee, training price.
/// @notice Owned by the governance timelock from construction: only a passed, queued and executed proposal changes
///         them. Every change is kept with the block it was made in, so `parametersAt(block)` tells anyone which
///         parameters were in force at an epoch's start block without an archive node. Percentages are basis points
///         (10000 = 100%); amounts are OPEN base units (18 decimals).
contract ProtocolParameters is Ownable {
    uint16 public constant BPS = 10_000;

    struct Parameters {
        uint16 ownerBps;
        uint16 contributorsBps;
        uint16 protocolBps;
        uint16 contributorCapBps;
        uint256 platformFee; // per inference, on top of the token price
        uint256 trainingPricePerToken; // per token trained
    }

    struct Snapshot {
        uint64 fromBlock;
        Parameters parameters;
    }

    Snapshot[] private _history;

    event ParametersChanged(uint64 indexed fromBlock, Parameters parameters, bytes32 parametersHash);

    error InvalidFeeSplit(uint256 ownerBps, uint256 contributorsBps, uint256 protocolBps);
    error InvalidContributorCap(uint256 contributorCapBps);
    error BlockInFuture(uint256 blockNumber, uint256 currentBlock);

    constructor(address timelock, Parameters memory genesis) Ownable(timelock) {
        _set(genesis);
    }

    // Changes (the timelock only) -----------------------------------------------------------------------------------
    function setFeeSplit(uint16 ownerBps_, uint16 contributorsBps_, uint16 protocolBps_) external onlyOwner {
        Parameters memory next = parameters();
        (next.ownerBps, next.contributorsBps, next.protocolBps) = (ownerBps_, contributorsBps_, protocolBps_);
        _set(next);
    }

    function setContributorCap(uint16 contributorCapBps_) external onlyOwner {
        Parameters memory next = parameters();
        next.contributorCapBps = contributorCapBps_;
        _set(next);
    }

    function setPlatformFee(uint256 platformFee_) external onlyOwner {
        Parameters memory next = parameters();
        next.platformFee = platformFee_;
        _set(next);
    }

    function setTrainingPricePerToken(uint256 trainingPricePerToken_) external onlyOwner {
        Parameters memory next = parameters();
        next.trainingPricePerToken = trainingPricePerToken_;
        _set(next);
    }

    // Reads ---------------------------------------------------------------------------------------------------------
    function parameters() public view returns (Parameters memory) {
        return _history[_history.length - 1].parameters;
    }

    function ownerBps() external view returns (uint16) {
        return parameters().ownerBps;
    }

    function contributorsBps() external view returns (uint16) {
        return parameters().contributorsBps;
    }

    function protocolBps() external view returns (uint16) {
        return parameters().protocolBps;
    }

    function contributorCapBps() external view returns (uint16) {
        return parameters().contributorCapBps;
    }

    function platformFee() external view returns (uint256) {
        return parameters().platformFee;
    }

    function trainingPricePerToken() external view returns (uint256) {
        return parameters().trainingPricePerToken;
    }

    /// @notice The parameters in force at `blockNumber` (set in that block or before), and the block they were set in.
    function parametersAt(uint256 blockNumber) public view returns (Parameters memory, uint64 fromBlock) {
        if (blockNumber > block.number) revert BlockInFuture(blockNumber, block.number);
        // Binary search for the last snapshot with fromBlock <= blockNumber; before genesis, genesis applies.
        uint256 low = 0;
        uint256 high = _history.length;
        while (high - low > 1) {
            uint256 mid = (low + high) / 2;
            if (_history[mid].fromBlock <= blockNumber) low = mid;
            else high = mid;
        }
        return (_history[low].parameters, _history[low].fromBlock);
    }

    function parametersHashAt(uint256 blockNumber) external view returns (bytes32) {
        (Parameters memory p, ) = parametersAt(blockNumber);
        return hashParameters(p);
    }

    function historyLength() external view returns (uint256) {
        return _history.length;
    }

    /// @notice keccak256 of the ABI-encoded parameters: what an epoch commitment records.
    function hashParameters(Parameters memory p) public pure returns (bytes32) {
        return keccak256(abi.encode(p));
    }

    function _set(Parameters memory p) private {
        if (uint256(p.ownerBps) + p.contributorsBps + p.protocolBps != BPS) {
            revert InvalidFeeSplit(p.ownerBps, p.contributorsBps, p.protocolBps);
        }
        if (p.contributorCapBps == 0 || p.contributorCapBps > BPS) revert InvalidContributorCap(p.contributorCapBps);
        uint64 here = uint64(block.number);
        // Always a new entry, even for a second change in the same block (one proposal with several calls):
        // parametersAt takes the last entry of a block, and the gas does not depend on the block (estimates hold).
        _history.push(Snapshot(here, p));
        emit ParametersChanged(here, p, hashParameters(p));
    }
}
