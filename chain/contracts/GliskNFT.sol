// SPDX-License-Identifier: MIT
// GliskNFT for the devnet: the interface the GLISK backend relies on (docs/reference.md),
// with the same building blocks as the deployed collection (OpenZeppelin 5.0).
pragma solidity ^0.8.20;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721Enumerable} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721Enumerable.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2981} from "@openzeppelin/contracts/token/common/ERC2981.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

contract GliskNFT is ERC721Enumerable, AccessControl, ERC2981, ReentrancyGuard {
    bytes32 public constant KEEPER_ROLE = keccak256("KEEPER_ROLE");
    uint256 public constant MAX_BATCH_SIZE = 50;

    uint256 public mintPrice;
    string public placeholderURI;
    uint256 private _nextTokenId = 1;

    mapping(uint256 => address) public tokenPromptAuthor;
    mapping(uint256 => bool) private _revealed;
    mapping(uint256 => string) private _tokenURIs;

    event BatchMinted(
        address indexed minter,
        address indexed promptAuthor,
        uint256 indexed startTokenId,
        uint256 quantity,
        uint256 totalPaid
    );
    event TokensRevealed(uint256[] tokenIds);
    event MintPriceUpdated(uint256 newPrice);

    error AlreadyRevealed(uint256 tokenId);
    error LengthMismatch();
    error InvalidQuantity(uint256 quantity);
    error InsufficientPayment(uint256 required, uint256 paid);
    error InvalidPromptAuthor();
    error WithdrawFailed();

    constructor(string memory name_, string memory symbol_, string memory placeholderURI_, uint256 mintPrice_)
        ERC721(name_, symbol_)
    {
        placeholderURI = placeholderURI_;
        mintPrice = mintPrice_;
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
        _setDefaultRoyalty(msg.sender, 250);
    }

    /// Mint `quantity` tokens to the caller, crediting `promptAuthor`'s prompt.
    function mint(address promptAuthor, uint256 quantity) external payable nonReentrant {
        if (quantity == 0 || quantity > MAX_BATCH_SIZE) revert InvalidQuantity(quantity);
        if (promptAuthor == address(0)) revert InvalidPromptAuthor();
        uint256 required = mintPrice * quantity;
        if (msg.value < required) revert InsufficientPayment(required, msg.value);

        uint256 startTokenId = _nextTokenId;
        _nextTokenId = startTokenId + quantity;
        for (uint256 i = 0; i < quantity; i++) {
            uint256 tokenId = startTokenId + i;
            tokenPromptAuthor[tokenId] = promptAuthor;
            _mint(msg.sender, tokenId);
        }
        emit BatchMinted(msg.sender, promptAuthor, startTokenId, quantity, msg.value);
    }

    /// The id the next minted token will get (N tokens exist when it returns N + 1).
    function nextTokenId() external view returns (uint256) {
        return _nextTokenId;
    }

    function isRevealed(uint256 tokenId) external view returns (bool) {
        return _revealed[tokenId];
    }

    /// Set the final URIs of minted, unrevealed tokens. Revealing is permanent.
    function revealTokens(uint256[] calldata tokenIds, string[] calldata uris) external {
        if (!hasRole(KEEPER_ROLE, msg.sender) && !hasRole(DEFAULT_ADMIN_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, KEEPER_ROLE);
        }
        if (tokenIds.length != uris.length) revert LengthMismatch();
        for (uint256 i = 0; i < tokenIds.length; i++) {
            uint256 tokenId = tokenIds[i];
            _requireOwned(tokenId);
            if (_revealed[tokenId]) revert AlreadyRevealed(tokenId);
            _revealed[tokenId] = true;
            _tokenURIs[tokenId] = uris[i];
        }
        emit TokensRevealed(tokenIds);
    }

    function tokenURI(uint256 tokenId) public view override returns (string memory) {
        _requireOwned(tokenId);
        if (!_revealed[tokenId]) return placeholderURI;
        return _tokenURIs[tokenId];
    }

    function setMintPrice(uint256 newPrice) external onlyRole(DEFAULT_ADMIN_ROLE) {
        mintPrice = newPrice;
        emit MintPriceUpdated(newPrice);
    }

    function withdraw(address payable to) external onlyRole(DEFAULT_ADMIN_ROLE) nonReentrant {
        (bool ok,) = to.call{value: address(this).balance}("");
        if (!ok) revert WithdrawFailed();
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721Enumerable, AccessControl, ERC2981)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }
}
