// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {ERC20Wrapper} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Wrapper.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title gOPEN: OPEN wrapped 1:1 into a token with votes.
/// @notice `depositFor` locks OPEN and mints gOPEN, `withdrawTo` burns gOPEN and returns the OPEN. Votes count only
///         once delegated (to yourself or someone else) and are read at a proposal's snapshot, so OPEN wrapped
///         after a proposal was made does not vote on it. A wrapper (not votes on OPEN itself) because the real OPEN
///         on OpenLedger's chains cannot be changed, and plain OPEN transfers (every fee payment) stay cheap.
///         The clock is the block timestamp, so voting delay and period are seconds on every chain.
contract GovernanceToken is ERC20, ERC20Permit, ERC20Votes, ERC20Wrapper {
    constructor(IERC20 open) ERC20("OpenLedger Governance", "gOPEN") ERC20Permit("OpenLedger Governance") ERC20Wrapper(open) {}

    function clock() public view override returns (uint48) {
        return uint48(block.timestamp);
    }

    // solhint-disable-next-line func-name-mixedcase
    function CLOCK_MODE() public pure override returns (string memory) {
        return "mode=timestamp";
    }

    function decimals() public view override(ERC20, ERC20Wrapper) returns (uint8) {
        return super.decimals();
    }

    function nonces(address owner) public view override(ERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
    }
}
