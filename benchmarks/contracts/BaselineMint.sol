// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @notice benchmarks/gas.py's in-run baseline: a bare OpenZeppelin ERC-721 mint, the anchor that
/// ModelRegistry.list (a mint plus the listing's data) is compared with. Not part of the suite.
contract BaselineMint is ERC721 {
    uint256 private _nextId = 1; // non-zero, as in ModelRegistry: every mint pays the same for the counter

    constructor() ERC721("Baseline", "BASE") {}

    /// @notice Mint the next token id to the caller.
    function mint() external returns (uint256 id) {
        id = _nextId++;
        _mint(msg.sender, id);
    }
}
