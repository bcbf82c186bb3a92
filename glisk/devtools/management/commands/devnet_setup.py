"""`manage.py devnet_setup`: put our contract on a running devnet chain, as the settings describe.

For a chain this process does not start (the container devnet's anvil): waits for RPC_URL to
answer, deploys GliskNFT from anvil's first dev account, funds the keeper of KEEPER_PRIVATE_KEY
and grants it KEEPER_ROLE, and deploys the Farcaster IdRegistry. The deployer's nonces make the
addresses predictable, so the settings can name them before the chain exists; the command checks
that they match, and does nothing when the contract is already there (a restart, a saved chain).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from eth_account import Account
from eth_typing import HexAddress, HexStr
from web3.types import Nonce
from web3.utils.address import get_create_address

from chain.adapter import GliskChain
from chain.errors import ChainError
from glisk.devtools import devnet


class Command(BaseCommand):
    help = "Deploy GliskNFT to the devnet chain at RPC_URL with the settings' keeper (devnet only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the chain")

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.GLISK
        if config.network != "DEVNET":
            raise CommandError("devnet_setup deploys to a local chain only (NETWORK=DEVNET)")
        missing = [
            name
            for name, value in (
                ("RPC_URL", config.rpc_url),
                ("GLISK_NFT_CONTRACT_ADDRESS", config.contract_address),
                ("KEEPER_PRIVATE_KEY", config.keeper_private_key),
                ("ALCHEMY_WEBHOOK_SECRET", config.alchemy_webhook_secret),
            )
            if not value
        ]
        if missing:
            raise CommandError(f"set {', '.join(missing)} (see deploy/devnet/devnet.env)")
        bare = GliskChain(rpc_url=config.rpc_url, contract_address="", chain_id=config.chain_id, timeout=2)
        self._wait(bare, options["wait"])
        client = str(bare.rpc("web3_clientVersion"))
        if not client.lower().startswith("anvil"):
            # Deploying from "the first dev account" means anything only on a chain of our own.
            raise CommandError(f"RPC_URL does not serve an anvil devnet ({client[:60]}): nothing deployed")
        keeper = Account.from_key(config.keeper_private_key).address
        if devnet.has_contract(bare, config.contract_address):
            devnet.put_multicall3(bare)  # a chain provisioned before Multicall3 was part of it
            self.stdout.write(f"GliskNFT already at {config.contract_address}; keeper {keeper}")
            return
        # Where the deployment would land, before sending anything: a chain that is not new, or
        # a configured address that is not the deployer's next one, deploys nothing.
        deployer = devnet.dev_accounts(bare)[0]
        nonce = int(bare.rpc("eth_getTransactionCount", [deployer, "latest"]), 16)
        landing = get_create_address(HexAddress(HexStr(deployer)), Nonce(nonce))
        if landing.lower() != config.contract_address.lower():
            why = (
                f"the deployer has sent {nonce} transactions on this chain: start from a new chain"
                if nonce
                else "it is not the deployer's first contract address (see deploy/devnet/devnet.env)"
            )
            raise CommandError(
                f"GLISK_NFT_CONTRACT_ADDRESS is {config.contract_address}, but a deployment now would "
                f"land at {landing}: {why}"
            )
        info = devnet.provision(
            bare,
            rpc_url=config.rpc_url,
            webhook_secret=config.alchemy_webhook_secret,
            keeper_private_key=config.keeper_private_key,
        )
        wrong = [
            f"{name} is {configured} but the chain put it at {deployed}"
            for name, configured, deployed in (
                ("GLISK_NFT_CONTRACT_ADDRESS", config.contract_address, info.contract_address),
                ("FARCASTER_ID_REGISTRY", config.farcaster_id_registry, info.farcaster_id_registry),
            )
            if configured.lower() != deployed.lower()
        ]
        if wrong:
            raise CommandError("; ".join(wrong) + " (settings and chain disagree: start from a new chain)")
        self.stdout.write(
            f"GliskNFT deployed at {info.contract_address} (block {info.deployment_block}); "
            f"keeper {keeper} funded and granted KEEPER_ROLE; IdRegistry at {info.farcaster_id_registry}"
        )

    def _wait(self, chain: GliskChain, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                chain.check_chain_id()
                return
            except ChainError as exc:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"the chain at RPC_URL did not answer within {seconds:g} s: {exc}"
                    ) from None
                time.sleep(0.5)
