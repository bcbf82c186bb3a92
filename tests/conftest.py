from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Stored images go to a per-test directory, never the developer's var/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IPFS_LOCAL_DIR = tmp_path / "ipfs"


# --- the local chain -------------------------------------------------------------------------
import dataclasses  # noqa: E402

from chain.adapter import GliskChain  # noqa: E402
from glisk.devtools import devnet  # noqa: E402


@pytest.fixture(scope="session")
def anvil_url():
    """A real anvil for the session (a block per transaction)."""
    port = devnet.free_port()
    process = devnet.start_anvil(port=port)
    yield f"http://127.0.0.1:{port}"
    devnet.stop_process(process)


@pytest.fixture(scope="session")
def devnet_info(anvil_url):
    bare = GliskChain(rpc_url=anvil_url, contract_address="", chain_id=devnet.DEVNET_CHAIN_ID)
    return devnet.provision(bare, rpc_url=anvil_url, webhook_secret="whsec_test")


@pytest.fixture
def chain(devnet_info, settings):
    """The deployed contract, with settings pointing at it; chain state is reverted afterwards."""
    settings.GLISK = dataclasses.replace(
        settings.GLISK,
        rpc_url=devnet_info.rpc_url,
        contract_address=devnet_info.contract_address,
        contract_deployment_block=devnet_info.deployment_block,
        keeper_private_key=devnet_info.keeper_private_key,
        alchemy_webhook_secret=devnet_info.webhook_secret,
        network="DEVNET",
        chain_id=devnet.DEVNET_CHAIN_ID,
    )
    client = GliskChain(
        rpc_url=devnet_info.rpc_url,
        contract_address=devnet_info.contract_address,
        chain_id=devnet.DEVNET_CHAIN_ID,
    )
    snapshot = client.rpc("evm_snapshot")
    yield client
    client.rpc("evm_revert", [snapshot])


@pytest.fixture
def accounts(chain):
    return devnet.dev_accounts(chain)
