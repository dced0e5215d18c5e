// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title The timelock between a passed vote and its effect; it owns ProtocolParameters.
/// @notice Deployed with the deployer as temporary admin so the governor can be made proposer and canceller; the
///         deploy flow then renounces that admin role, leaving the timelock administered only by itself.
///         Executors: anyone (address 0), once the delay has passed.
contract GovernanceTimelock is TimelockController {
    constructor(uint256 minDelay, address admin)
        TimelockController(minDelay, new address[](0), _anyone(), admin)
    {}

    function _anyone() private pure returns (address[] memory executors) {
        executors = new address[](1);
        executors[0] = address(0);
    }
}
