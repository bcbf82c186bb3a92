"""The image and IPFS stages: claim a batch, do the external work outside any transaction,
finish each token with a lease-checked transition, and record every attempt as a row.

`runner` holds what both share; `image` and `ipfs` are the stages themselves.
"""

from lifecycle.services.stages.image import image_generate_token, image_stage_run, prompt_for
from lifecycle.services.stages.ipfs import ipfs_pin_token, ipfs_stage_run, metadata_bytes, token_metadata
from lifecycle.services.stages.outcomes import StageReport, backoff_seconds

__all__ = [
    "StageReport",
    "backoff_seconds",
    "image_generate_token",
    "image_stage_run",
    "ipfs_pin_token",
    "ipfs_stage_run",
    "metadata_bytes",
    "prompt_for",
    "token_metadata",
]
