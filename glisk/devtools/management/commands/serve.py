"""`manage.py serve` (`make run`): the web app under gunicorn and the qclusters, until Ctrl-C.

It uses the configuration as it is (.env, the environment): pointed at Base Sepolia with real
credentials it runs the real pipeline. On NETWORK=DEVNET it starts the devnet if needed and the
webhook relay too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from glisk.devtools.stack import Stack


def current_database_url() -> str:
    s = connection.settings_dict
    host = s.get("OPTIONS", {}).get("host") or s.get("HOST") or ""
    if host.startswith("/"):
        return f"postgresql://{s['USER']}:@/{s['NAME']}?host={host}"
    return settings.GLISK.database_url or ""


class Command(BaseCommand):
    help = "Run the web app (gunicorn) and the qclusters with the current configuration until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--clusters", type=int, default=1)
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.GLISK
        call_command("migrate", verbosity=0, interactive=False)
        if (
            config.network == "DEVNET"
            and not self._devnet_alive()
            and not os.environ.get("GLISK_SERVE_STARTED_DEVNET")
        ):
            call_command("devnet", "--detach")
            # Start again so that the settings pick up var/devnet.env; stop the devnet on the way out.
            self.stdout.flush()
            os.environ["GLISK_SERVE_STARTED_DEVNET"] = "1"
            os.execv(sys.executable, [sys.executable, *sys.argv])  # noqa: S606 (re-run ourselves)
        stack = Stack(
            var_dir=Path(settings.VAR_DIR),
            database_url=current_database_url(),
            web_port=options["port"],
            workers_per_cluster=config.qcluster_workers,
            extra_env={"APP_ENV": config.app_env, "DEBUG": "true" if config.debug else "false"},
        )
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stack.start_web(workers=options["web_workers"])
            for n in range(options["clusters"]):
                stack.start_cluster(f"qcluster-{n + 1}")
            if config.network == "DEVNET":
                stack.start_relay_to_head()
            self.stdout.write(
                f"serve: {config.network} · web {stack.web_url} (admin {stack.web_url}/admin/, "
                f"health {stack.web_url}/health) · {options['clusters']} qcluster(s) · logs in "
                f"{Path(settings.VAR_DIR) / 'logs'}\nCtrl-C stops everything."
            )
            while not stop.is_set():
                for proc in stack.procs:
                    if proc.process.poll() is not None:
                        self.stderr.write(
                            f"serve: {proc.name} exited with {proc.process.returncode}; stopping"
                        )
                        stop.set()
                time.sleep(0.5)
        finally:
            self.stdout.write("serve: stopping …")
            stack.stop()
            if os.environ.get("GLISK_SERVE_STARTED_DEVNET") == "1":
                self._stop_devnet()

    def _devnet_alive(self) -> bool:
        from chain.adapter import GliskChain
        from chain.errors import ChainError
        from glisk.devtools.devnet import has_contract

        if not settings.GLISK.contract_address or not settings.GLISK.rpc_url:
            return False
        try:
            return has_contract(GliskChain.from_settings(), settings.GLISK.contract_address)
        except ChainError:
            return False

    def _stop_devnet(self) -> None:
        from glisk.devtools.devnet import DevnetInfo

        info = DevnetInfo.read(settings.DEVNET_ENV_FILE)
        if info and info.anvil_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.anvil_pid, signal.SIGTERM)  # anvil saves its state on the way out
            self.stdout.write("serve: devnet stopped (state saved in var/devnet)")
