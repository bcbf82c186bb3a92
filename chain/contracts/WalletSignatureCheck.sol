// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IERC1271 {
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4);
}

/// @notice A signature check for smart-contract wallets, deployed or not yet (ERC-1271, ERC-6492),
/// run without deploying anything: it is the init code of an `eth_call` that has no `to`.
/// The constructor answers one byte, 0x01 when `signer` accepts `signature` over `hash`.
/// An ERC-6492 signature is `abi.encode(factory, factoryCalldata, innerSignature)` followed by
/// the 32-byte suffix 0x6492…6492: when the wallet has no code yet, the factory call deploys it
/// (inside the simulated call only) and the wallet is then asked about the inner signature.
/// Externally owned accounts are checked off chain (ecrecover) and answer 0x00 here.
contract WalletSignatureCheck {
    bytes32 private constant ERC6492_SUFFIX = 0x6492649264926492649264926492649264926492649264926492649264926492;
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    constructor(address signer, bytes32 hash, bytes memory signature) {
        bool valid = check(signer, hash, signature);
        assembly {
            mstore(0, valid)
            return(31, 1)
        }
    }

    function check(address signer, bytes32 hash, bytes memory signature) private returns (bool) {
        bytes memory inner = signature;
        uint256 length = signature.length;
        if (length >= 32) {
            bytes32 tail;
            assembly {
                tail := mload(add(add(signature, 32), sub(length, 32)))
            }
            if (tail == ERC6492_SUFFIX) {
                assembly {
                    mstore(signature, sub(length, 32)) // drop the suffix in place
                }
                address factory;
                bytes memory factoryCalldata;
                (factory, factoryCalldata, inner) = abi.decode(signature, (address, bytes, bytes));
                if (signer.code.length == 0) {
                    (bool deployed, ) = factory.call(factoryCalldata);
                    if (!deployed) return false;
                }
            }
        }
        if (signer.code.length == 0) return false;
        try IERC1271(signer).isValidSignature(hash, inner) returns (bytes4 magic) {
            return magic == ERC1271_MAGIC;
        } catch {
            return false;
        }
    }
}
