"""Test settings: the one base module, under APP_ENV=test (speed knobs only)."""

import os

os.environ.setdefault("APP_ENV", "test")
os.environ.setdefault("ALCHEMY_WEBHOOK_SECRET", "whsec_test")

from glisk.settings import *  # noqa: F403
