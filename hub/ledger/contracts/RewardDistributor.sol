// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Cumulative Merkle claims of OPEN rewards (1inch style).
/// @notice Each settlement publishes a new root over (account, cumulative amount earned so far); a claim pays the
///         difference to what the account already claimed, so one proof against the latest root pays everything
///         owed. Anyone may submit a claim for any account: the tokens always go to the account.
///         Leaves are OpenZeppelin StandardMerkleTree leaves with the types (address, uint256).
contract RewardDistributor is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant ATTESTOR_ROLE = keccak256("ATTESTOR_ROLE");

    IERC20 public immutable token;
    bytes32 public merkleRoot;
    mapping(address account => uint256 amount) public cumulativeClaimed;

    event RootUpdated(bytes32 indexed previousRoot, bytes32 indexed newRoot);
    event Funded(address indexed from, uint256 amount);
    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount, bytes32 indexed root);

    error ZeroAddress();
    error RootMismatch(bytes32 expectedRoot, bytes32 currentRoot);
    error InvalidProof(address account, uint256 cumulativeAmount);
    error NothingToClaim(address account, uint256 cumulativeAmount, uint256 alreadyClaimed);
    error InsufficientFunding(uint256 needed, uint256 available);

    constructor(address admin, IERC20 rewardToken) {
        if (admin == address(0) || address(rewardToken) == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        token = rewardToken;
    }

    /// @dev `expectedCurrentRoot` makes root updates compare-and-swap: a stale settlement cannot overwrite a newer one.
    function setRoot(bytes32 newRoot, bytes32 expectedCurrentRoot) external onlyRole(ATTESTOR_ROLE) {
        bytes32 current = merkleRoot;
        if (current != expectedCurrentRoot) revert RootMismatch(expectedCurrentRoot, current);
        merkleRoot = newRoot;
        emit RootUpdated(current, newRoot);
    }

    /// @notice Pull `amount` OPEN from the caller (after `approve`); dev chains may mint to this contract instead.
    function fund(uint256 amount) external nonReentrant {
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Funded(msg.sender, amount);
    }

    /// @dev `expectedRoot` pins the root the proof was built against, so a claim racing a root update fails clearly.
    function claim(address account, uint256 cumulativeAmount, bytes32 expectedRoot, bytes32[] calldata proof)
        external
        nonReentrant
        returns (uint256 amount)
    {
        bytes32 current = merkleRoot;
        if (expectedRoot != current) revert RootMismatch(expectedRoot, current);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, current, leaf)) revert InvalidProof(account, cumulativeAmount);
        uint256 already = cumulativeClaimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(account, cumulativeAmount, already);
        amount = cumulativeAmount - already;
        uint256 available = token.balanceOf(address(this));
        if (available < amount) revert InsufficientFunding(amount, available);
        cumulativeClaimed[account] = cumulativeAmount;
        token.safeTransfer(account, amount);
        emit Claimed(account, amount, cumulativeAmount, current);
    }
}
