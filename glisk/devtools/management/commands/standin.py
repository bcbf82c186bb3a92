"""`manage.py standin replicate|pinata|rpc|x|fnames`: one stand-in as a server of its own.

The container devnet runs each in a container of its own, so that the workers reach them over
the network exactly as they reach api.replicate.com and api.pinata.cloud. The credentials they
accept come from the same settings the app uses (REPLICATE_API_TOKEN, PINATA_JWT). Each rations
requests as the real service does, at the documented limits unless told otherwise (`--limits
none` for none): Replicate 600 creates and 3,000 other requests a minute, Pinata 180 requests a
minute, and `rpc` (a front for the node at `--upstream`) 330 compute units a second. `x` (X's
OAuth: it consents at once, for X_CLIENT_ID/X_CLIENT_SECRET) and `fnames` (the Farcaster name
registry) let the container devnet link accounts offline.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from glisk.devtools.standins.base import StandInServer, documented_limits


class Command(BaseCommand):
    help = "Serve one stand-in (Replicate, Pinata with its gateway, an RPC front, X, fnames) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", choices=["replicate", "pinata", "rpc", "x", "fnames"])
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
        parser.add_argument(
            "--limits", choices=["documented", "none"], default="documented", help="ration requests or not"
        )
        parser.add_argument("--upstream", default="", help="rpc: the node to forward to")
        parser.add_argument("--cu-per-second", type=float, default=330.0, help="rpc: the compute-unit budget")

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
            if options["limits"] == "documented":
                documented_limits(replicate)
            standin = replicate
        elif options["provider"] == "x":
            from glisk.devtools.standins.x import XStandIn

            if not (config.x_client_id and config.x_client_secret):
                raise CommandError("set X_CLIENT_ID and X_CLIENT_SECRET: the stand-in accepts the app's")
            standin = XStandIn(client_id=config.x_client_id, client_secret=config.x_client_secret, **server)
        elif options["provider"] == "fnames":
            from glisk.devtools.standins.fnames import FnamesStandIn

            standin = FnamesStandIn(**server)
        elif options["provider"] == "rpc":
            from glisk.devtools.standins.rpc import RpcStandIn

            if not options["upstream"]:
                raise CommandError("set --upstream: the node the RPC front forwards to")
            rate = options["cu_per_second"] if options["limits"] == "documented" else None
            standin = RpcStandIn(options["upstream"], cu_per_second=rate, **server)
        else:
            from glisk.devtools.standins.pinata import PinataStandIn

            if not config.pinata_jwt:
                raise CommandError("set PINATA_JWT: the stand-in accepts the JWT the app sends")
            standin = PinataStandIn(jwt=config.pinata_jwt, **server)
            if options["limits"] == "documented":
                documented_limits(standin)
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
