// SPDX-License-Identifier: MIT
pragma solidity 0.8.20;

/// @notice For the devnet and the tests only: the part of Farcaster's IdRegistry (OP Mainnet,
/// 0x00000000Fc6c5F01Fc30151999387Bb99A9f489b) that the backend reads, with the same function
/// signatures: `custodyOf(uint256 fid)` and `idOf(address)`. Any account registers itself once
/// (the real registry does that through its IdGateway) and can hand its fid to another custody
/// address, so tests can make a signer that is not (or no longer) the custody address.
contract FarcasterIdRegistry {
    uint256 public idCounter;
    mapping(uint256 => address) public custodyOf;
    mapping(address => uint256) public idOf;

    event Register(address indexed to, uint256 indexed id, address recovery);
    event Transfer(address indexed from, address indexed to, uint256 indexed id);

    error HasId();
    error HasNoId();

    function register(address recovery) external returns (uint256 fid) {
        if (idOf[msg.sender] != 0) revert HasId();
        fid = ++idCounter;
        custodyOf[fid] = msg.sender;
        idOf[msg.sender] = fid;
        emit Register(msg.sender, fid, recovery);
    }

    function transfer(address to) external {
        uint256 fid = idOf[msg.sender];
        if (fid == 0) revert HasNoId();
        if (idOf[to] != 0) revert HasId();
        delete idOf[msg.sender];
        idOf[to] = fid;
        custodyOf[fid] = to;
        emit Transfer(msg.sender, to, fid);
    }
}
