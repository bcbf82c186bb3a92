"""`manage.py standin replicate|pinata`: one provider stand-in as a server of its own.

The container devnet runs each in a container of its own, so that the workers reach them over
the network exactly as they reach api.replicate.com and api.pinata.cloud. The credentials they
accept come from the same settings the app uses (REPLICATE_API_TOKEN, PINATA_JWT).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from glisk.devtools.standins.base import StandInServer


class Command(BaseCommand):
    help = "Serve the Replicate or the Pinata stand-in (with its IPFS gateway) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", choices=["replicate", "pinata"])
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument(
            "--public-url", default="", help="how clients reach it (the file URLs Replicate hands out)"
        )
        parser.add_argument(
            "--run-seconds",
            type=float,
            default=0.0,
            help="how long each prediction runs (Replicate's flux-schnell takes about 1 s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.GLISK
        server = {"host": options["host"], "port": options["port"], "public_url": options["public_url"]}
        standin: StandInServer
        if options["provider"] == "replicate":
            from glisk.devtools.standins.replicate import ReplicateStandIn

            if not config.replicate_api_token:
                raise CommandError("set REPLICATE_API_TOKEN: the stand-in accepts the token the app sends")
            replicate = ReplicateStandIn(token=config.replicate_api_token, **server)
            replicate.run_seconds = (options["run_seconds"], options["run_seconds"])
            standin = replicate
        else:
            from glisk.devtools.standins.pinata import PinataStandIn

            if not config.pinata_jwt:
                raise CommandError("set PINATA_JWT: the stand-in accepts the JWT the app sends")
            standin = PinataStandIn(jwt=config.pinata_jwt, **server)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        standin.start()
        host, port = standin.httpd.server_address[:2]
        bound = (str(host), int(port))
        self.stdout.write(
            f"{options['provider']} stand-in on {bound[0]}:{bound[1]} (clients use {standin.url})"
        )
        self.stdout.flush()
        stop.wait()
        standin.stop()
