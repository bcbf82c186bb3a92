"""`manage.py demo`: the whole pipeline on this machine, offline, then a checked summary.

A fresh `glisk_demo` database on the embedded PostgreSQL, anvil with our contract, the web app
under gunicorn, one qcluster and the webhook relay; several collectors mint DEMO_TOKENS tokens
for a mix of authors; progress per stage is shown live; at the end every token is audited
(tokenURI on chain, metadata and image served and hashing to their CIDs) and the command exits
non-zero if anything does not hold. With --keep-running (KEEP_RUNNING=1) the stack stays up
with an admin login until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Sum

DEMO_DATABASE = "glisk_demo"
AUTHOR_PROMPTS = [
    "A lighthouse made of glass on a stormy cliff, cinematic light",
    "Tiny astronauts tending a bonsai garden on the moon",
    None,
    "Neon koi fish swimming through a rainy Tokyo alley",
    None,
    "An origami dragon unfolding at sunrise, paper texture",
]


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Command(BaseCommand):
    help = "Run the whole pipeline offline on the embedded defaults, mint, and check every token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tokens", type=int, default=int(os.environ.get("DEMO_TOKENS", "100")))
        parser.add_argument("--keep-running", action="store_true", default=env_flag("KEEP_RUNNING"))
        parser.add_argument("--block-time", type=float, default=float(os.environ.get("DEMO_BLOCK_TIME", "1")))
        parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for every reveal")
        parser.add_argument("--child", action="store_true", help=_internal())

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tokens"] < 1:
            raise CommandError("DEMO_TOKENS must be at least 1")
        if not options["child"]:
            self._run_parent(options)
            return
        sys.exit(self._run_child(options))

    # The demo runs against its own fresh database: the parent makes it, the child uses it.
    def _run_parent(self, options: dict[str, Any]) -> None:
        from glisk.embedded_db import reset_database

        if settings.GLISK.database_url:
            raise CommandError("the demo runs on the embedded PostgreSQL: unset DATABASE_URL")
        self.stdout.write(
            f"demo: fresh database '{DEMO_DATABASE}' on the embedded PostgreSQL ({settings.VAR_DIR})"
        )
        url = reset_database(settings.VAR_DIR, DEMO_DATABASE)
        argv = [
            sys.executable,
            "manage.py",
            "demo",
            "--child",
            "--tokens",
            str(options["tokens"]),
            "--block-time",
            str(options["block_time"]),
        ]
        if options["keep_running"]:
            argv.append("--keep-running")
        if options["timeout"]:
            argv += ["--timeout", str(options["timeout"])]
        # Unbuffered: with `KEEP_RUNNING=1 make demo > log &` the admin URL and login reach the
        # log at once, not when the stack stops.
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "APP_ENV": os.environ.get("APP_ENV", "development"),
            "PYTHONUNBUFFERED": "1",
        }
        self.stdout.flush()
        child = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env)
        # Ctrl-C reaches the child through the terminal; the child stops the stack and exits.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        sys.exit(child.wait())

    def _run_child(self, options: dict[str, Any]) -> int:
        from django.core.management import call_command

        from glisk.devtools.stack import Stack

        total = options["tokens"]
        call_command("migrate", verbosity=0, interactive=False)
        var = Path(settings.VAR_DIR) / "demo"
        stack = Stack(
            var_dir=var,
            database_url=settings.GLISK.database_url or "",
            block_time=options["block_time"],
            workers_per_cluster=4,
            extra_env={
                "APP_ENV": "development",
                "DEBUG": "false",
                "LOG_LEVEL": "WARNING",
                "BATCH_REVEAL_WAIT_SECONDS": os.environ.get("BATCH_REVEAL_WAIT_SECONDS", "2"),
                "WATCHER_CONFIRMATIONS": "2",
                "IMAGE_PROVIDER": "local",
                "IPFS_PROVIDER": "local",
                "NETWORK": "DEVNET",
            },
        )
        stop = threading.Event()

        def interrupt(*_: Any) -> None:
            stop.set()
            raise KeyboardInterrupt

        # Explicit handlers: a process started in the background inherits SIGINT as ignored.
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
        try:
            started = time.monotonic()
            self.stdout.write("demo: starting anvil and deploying GliskNFT …")
            stack.start_chain()
            self.stdout.write("demo: starting the web app (gunicorn), a qcluster and the webhook relay …")
            stack.start_social_standins()
            stack.start_web()
            stack.start_cluster("qcluster")
            stack.start_relay()
            self.stdout.write(f"demo: stack up in {time.monotonic() - started:.1f}s; web at {stack.web_url}")
            linked = self._link(stack)
            mint_times = self._mint(stack, total)
            timeout = options["timeout"] or 120 + total * 1.0
            self._follow(total, timeout)
            code = self._summary(stack, total, mint_times, linked)
            if options["keep_running"]:
                with contextlib.suppress(KeyboardInterrupt):
                    self._keep_running(stack, stop)
            return code
        except KeyboardInterrupt:
            if not options["keep_running"] or not stop.is_set():
                self.stdout.write("\ndemo: interrupted")
            return 130
        finally:
            self.stdout.write("demo: stopping every process it started …")
            stack.stop()

    def _link(self, stack: Any) -> dict[str, str]:
        """The first author links X and Farcaster the way the frontend does (through the X and
        name-registry stand-ins and the chain's IdRegistry), before minting: its tokens'
        metadata names both handles."""
        from glisk.devtools import devnet
        from glisk.devtools.stack import link_social_accounts

        wallet = devnet.dev_accounts(stack.chain())[10]
        linked = link_social_accounts(stack, wallet=wallet, fname="glisk-demo")
        self.stdout.write(f"demo: author {wallet} linked X {linked['x']} and Farcaster {linked['farcaster']}")
        return linked

    def _mint(self, stack: Any, total: int) -> dict[int, float]:
        from authors.models import Author
        from authors.services import authors_ensure
        from glisk.devtools import devnet
        from glisk.devtools.stack import mint_plan

        chain = stack.chain()
        accounts = devnet.dev_accounts(chain)
        collectors, author_wallets = accounts[2:8], accounts[10:16]
        authors, _ = authors_ensure(wallets=[*author_wallets, settings.GLISK.default_author_wallet])
        for n, (wallet, prompt) in enumerate(zip(author_wallets, AUTHOR_PROMPTS, strict=True)):
            Author.objects.filter(pk=authors[wallet.lower()].pk).update(prompt_text=prompt)
            if n and prompt:  # sample handles for the others (the first linked its own)
                Author.objects.filter(pk=authors[wallet.lower()].pk).update(
                    twitter_handle=f"author{wallet[-4:].lower()}"
                )
        Author.objects.filter(pk=authors[settings.GLISK.default_author_wallet.lower()].pk).update(
            prompt_text="Sun rays breaking through clouds with the word GLISK in elegant type"
        )
        sizes = mint_plan(total)
        self.stdout.write(
            f"demo: {len(collectors)} collectors mint {total} tokens in {len(sizes)} transactions "
            f"(batches of {min(sizes)}-{max(sizes)}) for {len(author_wallets)} authors, "
            f"{sum(1 for p in AUTHOR_PROMPTS if p)} with prompts"
        )
        mint_times: dict[int, float] = {}
        next_id = chain.next_token_id()
        for n, size in enumerate(sizes):
            devnet.mint(
                chain,
                minter=collectors[n % len(collectors)],
                prompt_author=author_wallets[n % len(author_wallets)],
                quantity=size,
            )
            now = time.time()
            for token_id in range(next_id, next_id + size):
                mint_times[token_id] = now
            next_id += size
        return mint_times

    def _follow(self, total: int, timeout: float) -> None:
        from lifecycle.models import Token

        tty = self.stdout.isatty()
        deadline = time.monotonic() + timeout
        last_line = ""
        last_print = 0.0
        while True:
            counts = dict(Token.objects.values_list("status").annotate(n=Count("pk")))
            order = ["detected", "generating", "uploading", "ready", "revealed", "failed"]
            line = "  ".join(f"{s} {counts.get(s, 0):>4}" for s in order)
            line = f"progress: {line}  (of {total})"
            done = counts.get("revealed", 0) + counts.get("failed", 0)
            if tty:
                self.stdout.write("\r" + line, ending="")
                self.stdout.flush()
            elif line != last_line and time.monotonic() - last_print >= 2:
                self.stdout.write(line)
                last_print = time.monotonic()
            last_line = line
            if done >= total or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if tty:
            self.stdout.write("")
        else:
            self.stdout.write(last_line)

    def _summary(self, stack: Any, total: int, mint_times: dict[int, float], linked: dict[str, str]) -> int:
        from chain.models import RevealTransaction
        from glisk.backoffice.audit import pipeline_audit
        from lifecycle.models import Token

        revealed = list(Token.objects.filter(status="revealed").values_list("token_id", "revealed_at"))
        failed = Token.objects.filter(status="failed").count()
        latencies = sorted(r.timestamp() - mint_times[t] for t, r in revealed if t in mint_times and r)
        confirmed = RevealTransaction.objects.filter(status="confirmed")
        gas = confirmed.aggregate(g=Sum("gas_used"))["g"] or 0
        self.stdout.write("")
        self.stdout.write("=" * 64)
        self.stdout.write(f"tokens minted:   {total}")
        self.stdout.write(f"tokens revealed: {len(revealed)}")
        self.stdout.write(f"tokens failed:   {failed}")
        if latencies:
            first_mint = min(mint_times.values())
            last_reveal = max(r.timestamp() for _, r in revealed if r)
            self.stdout.write(f"first mint → last reveal: {last_reveal - first_mint:.1f}s")
            p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
            self.stdout.write(
                f"mint → reveal latency: p50 {statistics.median(latencies):.1f}s  p95 {p95:.1f}s"
            )
        self.stdout.write(
            f"reveal transactions: {confirmed.count()}  gas per token: "
            f"{(gas // len(revealed)) if revealed else 0:,}"
        )
        audit = pipeline_audit(chain=stack.chain(), gateway_url=stack.web_url)
        self.stdout.write(
            f"checked on chain and over HTTP: {audit.checked_content} tokens "
            f"(tokenURI = ipfs://metadata CID, metadata names the image CID, bytes hash to CIDs)"
        )
        self.stdout.write(
            f"social accounts linked with proofs: X {linked['x']}, Farcaster {linked['farcaster']}"
        )
        self.stdout.write("=" * 64)
        link_failed = [
            f"linking {name} {result}" for name, result in linked.items() if result.startswith("failed")
        ]
        if audit.problems or len(revealed) != total or link_failed:
            for problem in link_failed:
                self.stderr.write(f"  problem: {problem}")
            for problem in audit.problems:
                self.stderr.write(f"  problem: {problem}")
            if len(revealed) != total:
                self.stderr.write(f"  problem: {total - len(revealed)} of {total} tokens are not revealed")
            self.stderr.write("demo: FAILED")
            return 1
        self.stdout.write("demo: OK, every token revealed exactly once and verified")
        return 0

    def _keep_running(self, stack: Any, stop: threading.Event) -> None:
        from django.contrib.auth import get_user_model

        password = secrets.token_urlsafe(12)
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(username="admin", defaults={"email": "admin@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(
            f"\nthe stack keeps running: admin at {stack.web_url}/admin/  "
            f"login admin / {password}\nCtrl-C stops everything."
        )
        while not stop.is_set():
            stop.wait(1)


def _internal() -> str:
    return "internal: run inside the demo database (the parent process sets it up)"
