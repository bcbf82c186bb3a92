"""Test settings: the one base module, under APP_ENV=test (speed knobs only)."""

import os

os.environ.setdefault("APP_ENV", "test")
os.environ.setdefault("ALCHEMY_WEBHOOK_SECRET", "whsec_test")
# In-process stage tests run inside the test's transaction, which other threads' connections
# cannot see; the processes the end-to-end tests start use the default (threads).
os.environ.setdefault("STAGE_CONCURRENCY", "1")
# Token lists are read fresh on every request, so a test sees its own writes at once; the tests
# of the short cache turn it on.
os.environ.setdefault("TOKEN_LIST_CACHE_SECONDS", "0")
os.environ.setdefault("LEADERBOARD_CACHE_SECONDS", "0")
# Pinata's batches go up as soon as they are due; the test of gathering a batch turns it on.
os.environ.setdefault("IPFS_BATCH_WAIT_SECONDS", "0")

from glisk.settings import *  # noqa: F403
