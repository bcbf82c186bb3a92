// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The part of Multicall3 (github.com/mds1/multicall) that the backend and wagmi call:
/// `aggregate3`, with the same ABI. Base has the canonical Multicall3 at
/// 0xcA11bde05977b3631167028862bE2a173976CA11 on every network; the devnet puts this code at that
/// address, so one `eth_call` reads many tokens' state there as it does on Base.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function aggregate3(Call3[] calldata calls) public payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; i++) {
            Call3 calldata call = calls[i];
            (bool success, bytes memory data) = call.target.call(call.callData);
            require(success || call.allowFailure, "Multicall3: call failed");
            returnData[i] = Result(success, data);
        }
    }

    function getBlockNumber() public view returns (uint256) {
        return block.number;
    }

    function getEthBalance(address account) public view returns (uint256) {
        return account.balance;
    }
}
