"""Read and validate the service's configuration from environment variables.

All variables are read here, once, through django-environ, and checked together so that a bad
deployment is refused with *every* problem named at once. Messages name variables, never their
values: a secret must not reach a log or a terminal through a validation error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from glisk.env import EnvReader

APP_ENVS = ("development", "production", "test")
# Where generated images live: PostgreSQL (every worker shares it), S3-compatible object storage,
# or the local disk (one machine only).
FILE_STORAGES = ("database", "s3", "filesystem")
NETWORKS = {"BASE_MAINNET": 8453, "BASE_SEPOLIA": 84532, "DEVNET": 31337}
ALCHEMY_HOSTS = {"BASE_MAINNET": "base-mainnet", "BASE_SEPOLIA": "base-sepolia"}
EXPLORERS = {"BASE_MAINNET": "https://basescan.org", "BASE_SEPOLIA": "https://sepolia.basescan.org"}
IMAGE_PROVIDERS = ("local", "replicate")
IPFS_PROVIDERS = ("local", "pinata")
GAS_STRATEGIES = ("slow", "medium", "fast")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

DEFAULT_SECRET_KEY = "django-insecure-glisk-development-only-do-not-deploy"  # noqa: S105 (refused in production)
DEFAULT_AUTHOR_WALLET = "0x0000000000000000000000000000000000000001"
DEFAULT_PROMPT = "Sun rays breaking through clouds over a calm sea, luminous digital painting"
DEFAULT_FALLBACK_PROMPT = "Cute kittens playing with a ball of yarn in a sunlit room, soft pastel colors"
MAX_REVEAL_BATCH = 50
X_AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
X_API_URL = "https://api.x.com"
FARCASTER_ID_REGISTRY = "0x00000000Fc6c5F01Fc30151999387Bb99A9f489b"  # on OP Mainnet
FNAME_REGISTRY_URL = "https://fnames.farcaster.xyz"
PROMPT_MAX_LENGTH = 1000


class ConfigError(ImproperlyConfigured):
    """Raised with the full list of configuration problems."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"GLISK configuration is invalid ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Config:
    app_env: str
    debug: bool
    log_level: str
    secret_key: str = field(repr=False)  # secret (or may hold one)
    allowed_hosts: list[str]
    cors_origins: list[str]
    csrf_trusted_origins: list[str]
    database_url: str | None = field(repr=False)  # secret (or may hold one)
    conn_max_age: int
    secure_ssl_redirect: bool
    secure_hsts_seconds: int
    token_list_cache_seconds: float
    leaderboard_cache_seconds: float

    alchemy_api_key: str = field(repr=False)  # secret (or may hold one)
    alchemy_webhook_secret: str = field(repr=False)  # secret (or may hold one)
    rpc_url: str = field(repr=False)  # secret (or may hold one)
    rpc_timeout_seconds: float
    network: str
    chain_id: int
    devnet_chain_id: int
    explorer_url: str
    contract_address: str
    contract_deployment_block: int
    watcher_confirmations: int
    watcher_max_block_range: int

    default_author_wallet: str
    default_prompt: str

    image_provider: str
    local_image_size: int
    replicate_api_token: str = field(repr=False)  # secret (or may hold one)
    replicate_base_url: str
    replicate_model_version: str
    replicate_timeout_seconds: float
    fallback_censored_prompt: str

    ipfs_provider: str
    pinata_jwt: str = field(repr=False)  # secret (or may hold one)
    pinata_api_url: str
    pinata_gateway: str
    pinata_timeout_seconds: float
    metadata_description: str
    metadata_external_url: str

    # The providers' accounts' request budgets (glisk.core.budgets); 0 is unlimited.
    pinata_requests_per_minute: float
    pinata_burst: float
    replicate_creates_per_minute: float
    replicate_create_burst: float
    replicate_reads_per_minute: float
    replicate_read_burst: float
    rpc_compute_units_per_second: float
    rpc_compute_units_burst: float
    throttle_wait_max_seconds: float
    ipfs_batch_wait_seconds: float

    keeper_private_key: str = field(repr=False)  # secret (or may hold one)
    keeper_gas_strategy: str
    reveal_gas_buffer: Decimal
    reveal_max_fee_gwei: Decimal | None
    reveal_confirmations: int
    transaction_timeout_seconds: int

    worker_batch_size: int
    batch_reveal_wait_seconds: float
    batch_reveal_max_tokens: int
    stage_lease_seconds: int
    stage_concurrency: int
    image_max_attempts: int
    ipfs_max_attempts: int
    reveal_max_attempts: int
    retry_backoff_base_seconds: float
    retry_backoff_max_seconds: float
    qcluster_workers: int

    file_storage: str
    s3_bucket: str
    s3_endpoint_url: str
    s3_region: str
    s3_access_key_id: str = field(repr=False)  # secret (or may hold one)
    s3_secret_access_key: str = field(repr=False)  # secret
    metrics_token: str = field(repr=False)  # secret
    author_accept_static_message: bool
    author_nonce_ttl_seconds: int
    num_proxies: int

    # Linking authors' X and Farcaster accounts (see authors.social).
    frontend_url: str
    x_client_id: str
    x_client_secret: str = field(repr=False)  # secret
    x_redirect_uri: str
    x_authorize_url: str
    x_api_url: str
    x_require_same_browser: bool
    social_timeout_seconds: float
    social_link_ttl_seconds: int
    farcaster_rpc_url: str = field(repr=False)  # may hold a key
    farcaster_id_registry: str
    fname_registry_url: str

    @property
    def x_configured(self) -> bool:
        return bool(self.x_client_id and self.x_client_secret and self.x_redirect_uri and self.frontend_url)

    @property
    def farcaster_configured(self) -> bool:
        return bool(self.farcaster_rpc_url and self.frontend_url)

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    def secret_values(self) -> list[str]:
        """Every configured secret (for the log filter that masks them)."""
        values = [
            self.secret_key,
            self.alchemy_api_key,
            self.alchemy_webhook_secret,
            self.replicate_api_token,
            self.pinata_jwt,
            self.keeper_private_key,
            self.metrics_token,
            self.s3_access_key_id,
            self.s3_secret_access_key,
            self.x_client_secret,
            self.farcaster_rpc_url,  # may carry a provider's key
        ]
        if self.keeper_private_key.startswith("0x"):
            values.append(self.keeper_private_key[2:])
        if self.database_url:
            password = database_config(self.database_url).get("PASSWORD")
            if password:
                values.append(str(password))
        return [v for v in values if v and len(v) >= 6]


def database_config(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for `url`. django-environ warns about a URL it cannot read by
    printing the URL (password included); that warning is silenced, and `load_config` names the
    variable instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(environ.Env.db_url_config(url))


def development_secret_key(var_dir: Path) -> str:
    """A SECRET_KEY for development when none is set: made once, kept in var/secret_key (0600).
    Several processes may start at once: the file appears whole (a hard link) or not at all."""
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=var_dir, prefix=".secret_key.")  # created 0600
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        os.unlink(temporary)
    return path.read_text().strip()


# Alchemy's price of the dearest call the keeper makes (eth_sendRawTransaction, in compute units;
# chain.pricing.COMPUTE_UNITS holds every price): an RPC budget must be able to admit it.
DEAREST_RPC_CALL_UNITS = 250


def _local_host(url: str) -> bool:
    """A URL on this machine or a private network: localhost, a loopback or private address, or
    a bare service name (a compose service such as `anvil`)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or ("." not in host and ":" not in host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def load_config(values: Mapping[str, str], *, devnet: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from ``values`` (normally ``os.environ``).

    ``devnet`` holds what ``manage.py devnet`` wrote (RPC URL, contract, keeper key, webhook
    secret); it fills variables the environment leaves unset when ``NETWORK`` is ``DEVNET``.
    Raises :class:`ConfigError` naming every problem.
    """
    merged = dict(values)
    r = EnvReader(merged)
    network = r.choice("NETWORK", "DEVNET", tuple(NETWORKS))
    if network == "DEVNET" and devnet:
        for key, value in devnet.items():
            if not merged.get(key):
                merged[key] = value
        r = EnvReader(merged)
        network = r.choice("NETWORK", "DEVNET", tuple(NETWORKS))

    app_env = r.choice("APP_ENV", "development", APP_ENVS)
    production = app_env == "production"
    devnet_chain_id = r.integer("DEVNET_CHAIN_ID", NETWORKS["DEVNET"], minimum=1, maximum=2**53 - 1)
    debug = r.boolean("DEBUG", app_env == "development")
    database_url = r.raw("DATABASE_URL") or _database_url_from_parts(merged) or None
    if database_url:
        try:
            scheme = database_config(database_url).get("ENGINE", "")
        except (ValueError, KeyError):
            scheme = ""
        if "postgresql" not in str(scheme):
            r.problems.append("DATABASE_URL must be a postgres:// or postgresql:// URL")
            database_url = None

    alchemy_api_key = r.raw("ALCHEMY_API_KEY")
    rpc_url = r.url("RPC_URL")
    if not rpc_url and alchemy_api_key and network in ALCHEMY_HOSTS:
        rpc_url = f"https://{ALCHEMY_HOSTS[network]}.g.alchemy.com/v2/{alchemy_api_key}"
    if network == "DEVNET" and devnet_chain_id in NETWORKS.values() and devnet_chain_id != NETWORKS["DEVNET"]:
        # A devnet that passes for a Base chain (for the web frontend) must be a chain of our own:
        # its offline stand-ins would otherwise reveal placeholder art on a real chain, for good.
        if devnet_chain_id == NETWORKS["BASE_MAINNET"]:
            r.problems.append("DEVNET_CHAIN_ID must not be 8453 (Base mainnet): a devnet may pass for 84532")
        elif rpc_url and not _local_host(rpc_url):
            r.problems.append(
                f"DEVNET_CHAIN_ID={devnet_chain_id} needs a local chain: RPC_URL must name localhost, a "
                f"private address or a service name, not {urlsplit(rpc_url).hostname}"
            )

    # Alchemy counts compute units over a rolling 10 s (a plan's rate, ten seconds of it at once);
    # the default burst keeps half of that in hand for other clients of the key.
    # An Alchemy endpoint defaults to the smallest plan's 330 CU/s; any other RPC to unlimited.
    rpc_cu = r.number("RPC_COMPUTE_UNITS_PER_SECOND", 330.0 if "alchemy.com" in rpc_url else 0.0)
    config = Config(
        app_env=app_env,
        debug=debug,
        log_level=r.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
        secret_key=r.raw("SECRET_KEY", DEFAULT_SECRET_KEY),
        allowed_hosts=r.strings("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"]),
        cors_origins=r.strings("CORS_ORIGINS", []),
        csrf_trusted_origins=r.strings("CSRF_TRUSTED_ORIGINS", []),
        database_url=database_url,
        conn_max_age=r.integer("CONN_MAX_AGE", 60),
        # Secure by default off the devnet (production only: the settings apply them there). The
        # redirect reads X-Forwarded-Proto, so a TLS proxy in front does not loop.
        secure_ssl_redirect=r.boolean("SECURE_SSL_REDIRECT", network != "DEVNET"),
        secure_hsts_seconds=r.integer(
            "SECURE_HSTS_SECONDS", 0 if network == "DEVNET" else 31_536_000, minimum=0
        ),
        token_list_cache_seconds=r.number("TOKEN_LIST_CACHE_SECONDS", 1.0, maximum=10.0),
        leaderboard_cache_seconds=r.number("LEADERBOARD_CACHE_SECONDS", 10.0, maximum=300.0),
        alchemy_api_key=alchemy_api_key,
        alchemy_webhook_secret=r.raw("ALCHEMY_WEBHOOK_SECRET"),
        rpc_url=rpc_url,
        rpc_timeout_seconds=r.number("RPC_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        network=network,
        # The devnet can pretend to be another chain (84532, Base Sepolia, for the web frontend,
        # which knows only Base's two chains): everything that checks the chain id follows it.
        chain_id=devnet_chain_id if network == "DEVNET" else NETWORKS[network],
        devnet_chain_id=devnet_chain_id,
        explorer_url=EXPLORERS.get(network, ""),
        contract_address=r.address("GLISK_NFT_CONTRACT_ADDRESS"),
        contract_deployment_block=r.integer("CONTRACT_DEPLOYMENT_BLOCK", 0),
        watcher_confirmations=r.integer("WATCHER_CONFIRMATIONS", 2 if network == "DEVNET" else 5),
        watcher_max_block_range=r.integer("WATCHER_MAX_BLOCK_RANGE", 2000, minimum=1),
        default_author_wallet=r.address("GLISK_DEFAULT_AUTHOR_WALLET", DEFAULT_AUTHOR_WALLET),
        default_prompt=r.text("DEFAULT_PROMPT", DEFAULT_PROMPT, PROMPT_MAX_LENGTH),
        image_provider=r.choice("IMAGE_PROVIDER", "local", IMAGE_PROVIDERS),
        local_image_size=r.integer("LOCAL_IMAGE_SIZE", 256, minimum=16, maximum=2048),
        replicate_api_token=r.raw("REPLICATE_API_TOKEN"),
        replicate_base_url=r.url("REPLICATE_BASE_URL", "https://api.replicate.com"),
        replicate_model_version=r.text("REPLICATE_MODEL_VERSION", "black-forest-labs/flux-schnell"),
        replicate_timeout_seconds=r.number("REPLICATE_TIMEOUT_SECONDS", 60.0, minimum=1.0),
        fallback_censored_prompt=r.text(
            "FALLBACK_CENSORED_PROMPT", DEFAULT_FALLBACK_PROMPT, PROMPT_MAX_LENGTH
        ),
        ipfs_provider=r.choice("IPFS_PROVIDER", "local", IPFS_PROVIDERS),
        pinata_jwt=r.raw("PINATA_JWT"),
        pinata_api_url=r.url("PINATA_API_URL", "https://api.pinata.cloud"),
        pinata_gateway=r.text("PINATA_GATEWAY", "gateway.pinata.cloud"),
        pinata_timeout_seconds=r.number("PINATA_TIMEOUT_SECONDS", 60.0, minimum=1.0),
        metadata_description=r.text(
            "METADATA_DESCRIPTION", "GLISK Season 0: an AI-generated collection on Base.", 2000
        ),
        metadata_external_url=r.text("METADATA_EXTERNAL_URL", ""),
        pinata_requests_per_minute=r.number("PINATA_REQUESTS_PER_MINUTE", 180.0),
        pinata_burst=r.number("PINATA_BURST", 10.0, minimum=1.0),
        replicate_creates_per_minute=r.number("REPLICATE_CREATES_PER_MINUTE", 600.0),
        replicate_create_burst=r.number("REPLICATE_CREATE_BURST", 10.0, minimum=1.0),
        replicate_reads_per_minute=r.number("REPLICATE_READS_PER_MINUTE", 3000.0),
        replicate_read_burst=r.number("REPLICATE_READ_BURST", 50.0, minimum=1.0),
        rpc_compute_units_per_second=rpc_cu,
        rpc_compute_units_burst=r.number("RPC_COMPUTE_UNITS_BURST", 5 * rpc_cu, minimum=0.0) or 5 * rpc_cu,
        throttle_wait_max_seconds=r.number("THROTTLE_WAIT_MAX_SECONDS", 120.0, minimum=1.0),
        ipfs_batch_wait_seconds=r.number("IPFS_BATCH_WAIT_SECONDS", 3.0, maximum=60.0),
        keeper_private_key=r.private_key("KEEPER_PRIVATE_KEY"),
        keeper_gas_strategy=r.choice("KEEPER_GAS_STRATEGY", "medium", GAS_STRATEGIES),
        reveal_gas_buffer=r.decimal("REVEAL_GAS_BUFFER", Decimal("1.2"), Decimal("1")) or Decimal("1.2"),
        reveal_max_fee_gwei=r.decimal("REVEAL_MAX_FEE_GWEI", None, Decimal("0")),
        reveal_confirmations=r.integer("REVEAL_CONFIRMATIONS", 1, minimum=1),
        transaction_timeout_seconds=r.integer("TRANSACTION_TIMEOUT_SECONDS", 180, minimum=1),
        worker_batch_size=r.integer("WORKER_BATCH_SIZE", 10, minimum=1, maximum=500),
        batch_reveal_wait_seconds=r.number("BATCH_REVEAL_WAIT_SECONDS", 5.0),
        batch_reveal_max_tokens=r.integer(
            "BATCH_REVEAL_MAX_TOKENS", MAX_REVEAL_BATCH, minimum=1, maximum=MAX_REVEAL_BATCH
        ),
        stage_lease_seconds=r.integer("STAGE_LEASE_SECONDS", 30, minimum=3),
        stage_concurrency=r.integer("STAGE_CONCURRENCY", 8, minimum=1, maximum=64),
        image_max_attempts=r.integer("IMAGE_MAX_ATTEMPTS", 5, minimum=1),
        ipfs_max_attempts=r.integer("IPFS_MAX_ATTEMPTS", 5, minimum=1),
        reveal_max_attempts=r.integer("REVEAL_MAX_ATTEMPTS", 5, minimum=1),
        retry_backoff_base_seconds=r.number("RETRY_BACKOFF_BASE_SECONDS", 2.0),
        retry_backoff_max_seconds=r.number("RETRY_BACKOFF_MAX_SECONDS", 300.0),
        qcluster_workers=r.integer("QCLUSTER_WORKERS", 4, minimum=2, maximum=64),
        file_storage=r.choice("FILE_STORAGE", "database", FILE_STORAGES),
        s3_bucket=r.text("S3_BUCKET", ""),
        s3_endpoint_url=r.url("S3_ENDPOINT_URL"),
        s3_region=r.text("S3_REGION", ""),
        s3_access_key_id=r.raw("S3_ACCESS_KEY_ID"),
        s3_secret_access_key=r.raw("S3_SECRET_ACCESS_KEY"),
        metrics_token=r.raw("METRICS_TOKEN"),
        author_accept_static_message=r.boolean("AUTHOR_ACCEPT_STATIC_MESSAGE", True),
        author_nonce_ttl_seconds=r.integer("AUTHOR_NONCE_TTL_SECONDS", 600, minimum=30, maximum=86400),
        num_proxies=r.integer("NUM_PROXIES", 0, minimum=0, maximum=10),
        frontend_url=r.url("FRONTEND_URL"),
        x_client_id=r.raw("X_CLIENT_ID"),
        x_client_secret=r.raw("X_CLIENT_SECRET"),
        x_redirect_uri=r.url("X_REDIRECT_URI"),
        x_authorize_url=r.url("X_AUTHORIZE_URL", X_AUTHORIZE_URL),
        x_api_url=r.url("X_API_URL", X_API_URL),
        x_require_same_browser=r.boolean("X_REQUIRE_SAME_BROWSER", True),
        social_timeout_seconds=r.number("SOCIAL_TIMEOUT_SECONDS", 10.0, minimum=0.5),
        social_link_ttl_seconds=r.integer("SOCIAL_LINK_TTL_SECONDS", 600, minimum=30, maximum=3600),
        farcaster_rpc_url=r.url("FARCASTER_RPC_URL"),
        farcaster_id_registry=r.address("FARCASTER_ID_REGISTRY", FARCASTER_ID_REGISTRY),
        fname_registry_url=r.url("FNAME_REGISTRY_URL", FNAME_REGISTRY_URL),
    )
    problems = list(r.problems)
    if config.file_storage == "s3" and not config.s3_bucket:
        problems.append("S3_BUCKET is required when FILE_STORAGE is s3")
    if 0 < config.rpc_compute_units_burst < DEAREST_RPC_CALL_UNITS:
        # The keeper's broadcast would wait for ever for a turn its budget can never give.
        problems.append(
            f"RPC_COMPUTE_UNITS_BURST must be at least {DEAREST_RPC_CALL_UNITS} (what one"
            " eth_sendRawTransaction costs) when RPC_COMPUTE_UNITS_PER_SECOND is set"
        )
    if production:
        problems.extend(_production_problems(config, problems))
    if problems:
        raise ConfigError(problems)
    return config


def _database_url_from_parts(values: Mapping[str, str]) -> str:
    """DATABASE_URL from the postgres image's variables (POSTGRES_HOST, POSTGRES_PORT,
    POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) when POSTGRES_HOST is set: what the compose
    file passes, so that a password needs no URL escaping and DATABASE_URL, where set, wins."""
    host = values.get("POSTGRES_HOST", "").strip()
    if not host:
        return ""
    user = values.get("POSTGRES_USER") or "postgres"
    password = values.get("POSTGRES_PASSWORD", "")
    credentials = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    port = values.get("POSTGRES_PORT") or "5432"
    database = values.get("POSTGRES_DB") or user
    return f"postgresql://{credentials}@{host}:{port}/{quote(database, safe='')}"


def _production_problems(c: Config, already: list[str]) -> list[str]:
    """What production refuses: missing credentials and unsafe defaults (names only)."""
    problems: list[str] = []

    def missing(name: str, why: str) -> None:
        if any(p.startswith(f"{name} ") for p in already):
            return  # set but malformed: said once, by the reader
        problems.append(f"{name} is required in production ({why})")

    if c.debug:
        problems.append("DEBUG must be off in production")
    if c.secret_key == DEFAULT_SECRET_KEY or len(c.secret_key) < 32:
        problems.append("SECRET_KEY must be set to a unique value of at least 32 characters")
    if not c.alchemy_webhook_secret:
        missing("ALCHEMY_WEBHOOK_SECRET", "webhook signatures cannot be verified without it")
    if not c.keeper_private_key:
        missing("KEEPER_PRIVATE_KEY", "the keeper signs reveal transactions")
    if not c.contract_address:
        missing("GLISK_NFT_CONTRACT_ADDRESS", "the contract to watch and reveal")
    if not c.rpc_url:
        missing("RPC_URL or ALCHEMY_API_KEY", "the chain endpoint")
    if c.image_provider == "replicate" and not c.replicate_api_token:
        missing("REPLICATE_API_TOKEN", "IMAGE_PROVIDER is replicate")
    if c.ipfs_provider == "pinata" and not c.pinata_jwt:
        missing("PINATA_JWT", "IPFS_PROVIDER is pinata")
    # The offline stand-ins would reveal placeholder art with CIDs pinned nowhere, permanently.
    if c.network != "DEVNET":
        if c.image_provider == "local":
            problems.append("IMAGE_PROVIDER must be replicate in production (local is for the devnet only)")
        if c.ipfs_provider == "local":
            problems.append("IPFS_PROVIDER must be pinata in production (local is for the devnet only)")
    if "*" in c.allowed_hosts:
        problems.append("ALLOWED_HOSTS must not contain '*' in production")
    if not c.metrics_token and c.network != "DEVNET":
        # Otherwise /metrics is public, and each anonymous scrape runs some 40 queries, a few
        # of them writes (the histograms' watermarks, the clusters' last-seen times).
        missing("METRICS_TOKEN", "/metrics would be open to anyone")
    if c.x_client_id:
        # Without the secret X refuses the code exchange (a confidential client): refuse here.
        for name, value in (
            ("X_CLIENT_SECRET", c.x_client_secret),
            ("X_REDIRECT_URI", c.x_redirect_uri),
            ("FRONTEND_URL", c.frontend_url),
        ):
            if not value:
                missing(name, "X_CLIENT_ID is set: linking X accounts needs it")
        for name, value in (("X_REDIRECT_URI", c.x_redirect_uri), ("FRONTEND_URL", c.frontend_url)):
            # (The container devnet's frontend is a development server on http://localhost.)
            if value and not value.startswith("https://") and c.network != "DEVNET":
                problems.append(f"{name} must be an https:// URL in production")
    return problems
