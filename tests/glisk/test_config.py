from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from glisk.config import DEFAULT_SECRET_KEY, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]

KEEPER_KEY = "0x" + "ab" * 32
GOOD_PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "s3cr3t-" + "k" * 40,
    "ALCHEMY_WEBHOOK_SECRET": "whsec_live_value_123",
    "KEEPER_PRIVATE_KEY": KEEPER_KEY,
    "GLISK_NFT_CONTRACT_ADDRESS": "0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb0",
    "NETWORK": "BASE_SEPOLIA",
    "ALCHEMY_API_KEY": "alch-key-abcdef",
    "IMAGE_PROVIDER": "replicate",
    "REPLICATE_API_TOKEN": "r8_abcdefghijklmnopqrstuvwxyz",
    "IPFS_PROVIDER": "pinata",
    "PINATA_JWT": "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",
    "METRICS_TOKEN": "metrics-token-for-prometheus-0123456789",
}


def test_defaults_work_offline_in_development():
    config = load_config({})
    assert config.app_env == "development"
    assert config.network == "DEVNET"
    assert config.chain_id == 31337
    assert config.image_provider == "local"
    assert config.ipfs_provider == "local"
    assert config.replicate_model_version == "black-forest-labs/flux-schnell"
    assert config.reveal_gas_buffer == Decimal("1.2")
    assert config.transaction_timeout_seconds == 180
    assert (config.worker_batch_size, config.batch_reveal_wait_seconds, config.batch_reveal_max_tokens) == (
        10,
        5.0,
        50,
    )


def test_the_devnet_runs_the_chain_id_it_is_told_and_no_other_network_does():
    """DEVNET_CHAIN_ID lets the devnet pass for Base Sepolia (the web frontend knows only Base's
    two chains); everything that checks the chain id reads `chain_id`."""
    assert load_config({"DEVNET_CHAIN_ID": "84532"}).chain_id == 84532
    assert load_config({}, devnet={"DEVNET_CHAIN_ID": "84532"}).chain_id == 84532  # var/devnet.env
    assert load_config({"DEVNET_CHAIN_ID": "31337"}, devnet={"DEVNET_CHAIN_ID": "84532"}).chain_id == 31337
    assert load_config({**GOOD_PRODUCTION, "DEVNET_CHAIN_ID": "31337"}).chain_id == 84532
    for bad in ("0", "-5", "base", str(2**53)):
        with pytest.raises(ConfigError, match="DEVNET_CHAIN_ID"):
            load_config({"DEVNET_CHAIN_ID": bad})
    # Passing for a Base chain is for a chain of our own only (found by review: the chain guard
    # then accepted a real Base node with the devnet's placeholder providers).
    with pytest.raises(ConfigError, match="must not be 8453"):
        load_config({"DEVNET_CHAIN_ID": "8453", "RPC_URL": "http://127.0.0.1:8545"})
    with pytest.raises(ConfigError, match=r"not base-sepolia\.g\.alchemy\.com") as remote:
        load_config(
            {"DEVNET_CHAIN_ID": "84532", "RPC_URL": "https://base-sepolia.g.alchemy.com/v2/k3y-s3cr3t"}
        )
    assert "k3y-s3cr3t" not in str(remote.value)
    for local in (
        "http://127.0.0.1:8545",
        "http://localhost:8545",
        "http://anvil:8545",
        "http://10.0.0.5:8545",
    ):
        assert load_config({"DEVNET_CHAIN_ID": "84532", "RPC_URL": local}).chain_id == 84532
    # Empty, as `cp .env.example .env` leaves it: var/devnet.env's value, not an override.
    assert load_config({"DEVNET_CHAIN_ID": ""}, devnet={"DEVNET_CHAIN_ID": "84532"}).chain_id == 84532
    assert load_config({"X_AUTHORIZE_URL": ""}).x_authorize_url == "https://x.com/i/oauth2/authorize"


def test_good_production_config_loads_and_derives_the_alchemy_rpc_url():
    config = load_config(GOOD_PRODUCTION)
    assert config.chain_id == 84532
    assert config.rpc_url == "https://base-sepolia.g.alchemy.com/v2/alch-key-abcdef"
    assert config.explorer_url == "https://sepolia.basescan.org"


def test_production_names_every_missing_and_unsafe_variable_at_once():
    with pytest.raises(ConfigError) as excinfo:
        load_config(
            {
                "APP_ENV": "production",
                "DEBUG": "true",
                "IMAGE_PROVIDER": "replicate",
                "IPFS_PROVIDER": "pinata",
                "ALLOWED_HOSTS": "*",
            }
        )
    message = str(excinfo.value)
    for name in (
        "DEBUG",
        "SECRET_KEY",
        "ALCHEMY_WEBHOOK_SECRET",
        "KEEPER_PRIVATE_KEY",
        "GLISK_NFT_CONTRACT_ADDRESS",
        "RPC_URL",
        "REPLICATE_API_TOKEN",
        "PINATA_JWT",
        "ALLOWED_HOSTS",
    ):
        assert name in message, name
    assert len(excinfo.value.problems) == 9


def test_default_secret_key_is_refused_in_production():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config({**GOOD_PRODUCTION, "SECRET_KEY": DEFAULT_SECRET_KEY})


def test_provider_credentials_are_required_only_for_the_chosen_provider():
    config = load_config(
        {
            **GOOD_PRODUCTION,
            "NETWORK": "DEVNET",  # the one network where production may run the offline providers
            "RPC_URL": "http://127.0.0.1:8545",
            "IMAGE_PROVIDER": "local",
            "REPLICATE_API_TOKEN": "",
            "IPFS_PROVIDER": "local",
            "PINATA_JWT": "",
        }
    )
    assert config.image_provider == "local"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLISK_NFT_CONTRACT_ADDRESS", "0x1234"),
        ("GLISK_DEFAULT_AUTHOR_WALLET", "not-an-address"),
        ("KEEPER_PRIVATE_KEY", "0xnothex"),
        ("NETWORK", "ETHEREUM"),
        ("APP_ENV", "staging"),
        ("WORKER_BATCH_SIZE", "-3"),
        ("BATCH_REVEAL_WAIT_SECONDS", "-1"),
        ("BATCH_REVEAL_MAX_TOKENS", "51"),
        ("REVEAL_GAS_BUFFER", "0.5"),
        ("REVEAL_MAX_FEE_GWEI", "-2"),
        ("TRANSACTION_TIMEOUT_SECONDS", "soon"),
        ("IMAGE_PROVIDER", "dalle"),
        ("KEEPER_GAS_STRATEGY", "ludicrous"),
        ("DATABASE_URL", "sqlite:///db.sqlite3"),
        ("RPC_URL", "ftp://node"),
        ("DEFAULT_PROMPT", "p" * 1001),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as excinfo:
        load_config({name: value})
    assert any(problem.startswith(name) for problem in excinfo.value.problems), excinfo.value.problems


def test_no_secret_value_is_echoed_in_any_message():
    bad = {
        **GOOD_PRODUCTION,
        "DEBUG": "on",
        "KEEPER_PRIVATE_KEY": "0xdeadbeef-not-a-key-but-secret-looking",
        "PINATA_JWT": "",
        "SECRET_KEY": "short-secret",
    }
    with pytest.raises(ConfigError) as excinfo:
        load_config(bad)
    message = str(excinfo.value)
    for value in (
        "0xdeadbeef-not-a-key-but-secret-looking",
        "short-secret",
        "whsec_live_value_123",
        "r8_abcdefghijklmnopqrstuvwxyz",
        "alch-key-abcdef",
    ):
        assert value not in message


def test_devnet_file_fills_unset_variables_but_never_overrides_the_environment():
    devnet = {
        "RPC_URL": "http://127.0.0.1:8545",
        "GLISK_NFT_CONTRACT_ADDRESS": "0x" + "11" * 20,
        "KEEPER_PRIVATE_KEY": KEEPER_KEY,
    }
    config = load_config({"RPC_URL": "http://127.0.0.1:9999"}, devnet=devnet)
    assert config.rpc_url == "http://127.0.0.1:9999"
    assert config.contract_address == "0x" + "11" * 20
    # Not on the devnet: the file is ignored.
    assert load_config({"NETWORK": "BASE_SEPOLIA"}, devnet=devnet).contract_address == ""


def test_manage_py_refuses_to_start_in_production_naming_problems_without_values():
    env = {k: v for k, v in os.environ.items() if k not in GOOD_PRODUCTION}
    env.update(
        {
            "APP_ENV": "production",
            "DATABASE_URL": "postgresql://u:hunter2hunter2@127.0.0.1:1/x",
            "KEEPER_PRIVATE_KEY": "0xsupersecretbutmalformed",
            "DJANGO_SETTINGS_MODULE": "glisk.settings",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "KEEPER_PRIVATE_KEY must be a 32-byte hex private key" in result.stderr
    assert "ALCHEMY_WEBHOOK_SECRET is required in production" in result.stderr
    assert "supersecret" not in result.stderr + result.stdout
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_every_variable_the_service_reads_is_documented_in_env_example():
    import re

    source = (ROOT / "glisk" / "config.py").read_text()
    read = set(re.findall(r'r\.\w+\(\s*"([A-Z_]+)"', source))
    assert len(read) > 40
    documented = set(re.findall(r"^#? ?([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - documented == set()


def test_the_config_repr_never_shows_a_secret():
    config = load_config(GOOD_PRODUCTION)
    text = repr(config)
    for name in (
        "SECRET_KEY",
        "ALCHEMY_WEBHOOK_SECRET",
        "KEEPER_PRIVATE_KEY",
        "REPLICATE_API_TOKEN",
        "PINATA_JWT",
        "ALCHEMY_API_KEY",
    ):
        assert GOOD_PRODUCTION[name] not in text, name
    assert "alch-key-abcdef" not in text  # inside the derived RPC URL too


@pytest.mark.parametrize("network", ["BASE_SEPOLIA", "BASE_MAINNET"])
def test_production_refuses_the_offline_providers_off_the_devnet(network):
    with pytest.raises(ConfigError) as refused:
        load_config(
            {**GOOD_PRODUCTION, "NETWORK": network, "IMAGE_PROVIDER": "local", "IPFS_PROVIDER": "local"}
        )
    assert "IMAGE_PROVIDER must be replicate in production" in str(refused.value)
    assert "IPFS_PROVIDER must be pinata in production" in str(refused.value)
    devnet = {**GOOD_PRODUCTION, "NETWORK": "DEVNET", "IMAGE_PROVIDER": "local", "IPFS_PROVIDER": "local"}
    devnet["RPC_URL"] = "http://127.0.0.1:8545"
    assert load_config(devnet).image_provider == "local"


def manage(*args, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in GOOD_PRODUCTION and not k.startswith("PYTEST")}
    env.update({"DJANGO_SETTINGS_MODULE": "glisk.settings", **env_changes})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_malformed_database_url_is_named_but_never_printed():
    result = manage("check", DATABASE_URL="postgresql//admin:S3cret@db.example/glisk")
    assert result.returncode == 2
    assert "DATABASE_URL must be a postgres:// or postgresql:// URL" in result.stderr
    assert "S3cret" not in result.stderr + result.stdout


def test_an_empty_secret_key_in_development_gets_one_kept_under_var(tmp_path):
    script = (
        "from django.core import signing; from django.conf import settings; "
        "print(signing.dumps(1)); print(settings.SECRET_KEY)"
    )
    from tests.e2e.conftest import test_database_url

    database = test_database_url()  # the suite's server: no embedded one started under tmp_path
    first = manage(
        "shell",
        "-c",
        script,
        APP_ENV="development",
        SECRET_KEY="",
        GLISK_VAR_DIR=str(tmp_path),
        DATABASE_URL=database,
    )
    assert first.returncode == 0, first.stderr
    key = first.stdout.split()[-1]
    assert len(key) >= 50 and (tmp_path / "secret_key").read_text().strip() == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    again = manage(
        "shell",
        "-c",
        script,
        APP_ENV="development",
        SECRET_KEY="",
        GLISK_VAR_DIR=str(tmp_path),
        DATABASE_URL=database,
    )
    assert again.stdout.split()[-1] == key


def test_a_value_starting_with_a_dollar_is_read_as_written():
    config = load_config({"METRICS_TOKEN": "$scrape-token", "S3_SECRET_ACCESS_KEY": "$abc/def+ghi"})
    assert config.metrics_token == "$scrape-token"
    assert config.s3_secret_access_key == "$abc/def+ghi"


def test_production_refuses_an_x_client_id_without_its_secret():
    with pytest.raises(ConfigError) as refused:
        load_config({**GOOD_PRODUCTION, "X_CLIENT_ID": "x-client-id-123"})
    problems = "\n".join(refused.value.problems)
    assert "X_CLIENT_SECRET is required in production" in problems
    assert "X_REDIRECT_URI is required in production" in problems
    assert "FRONTEND_URL is required in production" in problems
    assert "x-client-id-123" not in str(refused.value)
    config = load_config(
        {
            **GOOD_PRODUCTION,
            "X_CLIENT_ID": "x-client-id-123",
            "X_CLIENT_SECRET": "x-secret-value-456",
            "X_REDIRECT_URI": "https://api.glisk.xyz/api/authors/x/callback",
            "FRONTEND_URL": "https://glisk.xyz/",
        }
    )
    assert config.x_configured and config.frontend_url == "https://glisk.xyz"
    assert "x-secret-value-456" in config.secret_values()  # masked in every log line
    assert "x-secret-value-456" not in repr(config)
    assert load_config(GOOD_PRODUCTION).x_configured is False  # X is optional
    with pytest.raises(ConfigError) as plain:
        load_config(
            {
                **GOOD_PRODUCTION,
                "X_CLIENT_ID": "x-client-id-123",
                "X_CLIENT_SECRET": "x-secret-value-456",
                "X_REDIRECT_URI": "http://api.glisk.xyz/api/authors/x/callback",
                "FRONTEND_URL": "http://glisk.xyz",
            }
        )
    assert plain.value.problems == [
        "X_REDIRECT_URI must be an https:// URL in production",
        "FRONTEND_URL must be an https:// URL in production",
    ]


def test_a_malformed_setting_is_reported_once():
    with pytest.raises(ConfigError) as refused:
        load_config({**GOOD_PRODUCTION, "KEEPER_PRIVATE_KEY": "0xnot-a-key"})
    assert refused.value.problems == ["KEEPER_PRIVATE_KEY must be a 32-byte hex private key"]


def test_an_unreachable_database_is_one_line_and_exit_1():
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://glisk:hunter2@127.0.0.1:1/glisk",
        "APP_ENV": "development",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: the database is not reachable (OperationalError); check DATABASE_URL"
    ]
    assert "hunter2" not in done.stdout + done.stderr


@pytest.mark.django_db
def test_a_database_error_with_the_database_up_keeps_its_story():
    """Found in review: a statement timeout was reported as 'not reachable'."""
    from tests.e2e.conftest import test_database_url

    env = {**os.environ, "DATABASE_URL": test_database_url(), "APP_ENV": "development"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = (
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('SET statement_timeout = 1')\n"
        "    c.execute('SELECT pg_sleep(1)')\n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "not reachable" not in done.stderr and "statement timeout" in done.stderr


def test_the_database_url_is_built_from_the_postgres_parts_the_compose_file_passes():
    """Found in review: a password with URL characters (a base64 one) broke the URL compose built."""
    parts = {
        "POSTGRES_HOST": "postgres",
        "POSTGRES_USER": "glisk",
        "POSTGRES_PASSWORD": "kT9+aB3/xY7z9Qw=#?@",
        "POSTGRES_DB": "glisk",
    }
    config = load_config(parts)
    from glisk.config import database_config

    db = database_config(config.database_url or "")
    assert (db["HOST"], db["PORT"], db["USER"], db["NAME"]) == ("postgres", 5432, "glisk", "glisk")
    assert db["PASSWORD"] == "kT9+aB3/xY7z9Qw=#?@"
    assert "kT9+aB3/xY7z9Qw=#?@" in config.secret_values()
    # DATABASE_URL, where the env file sets it, wins over the parts.
    chosen = load_config({**parts, "DATABASE_URL": "postgresql://u:p@db.internal:6432/other"})
    assert chosen.database_url == "postgresql://u:p@db.internal:6432/other"
    assert load_config({}).database_url is None


@pytest.mark.parametrize("value", ["nan", "inf", "11", "-1"])
def test_the_token_list_cache_is_refused_unless_a_finite_number_of_seconds_up_to_ten(value):
    with pytest.raises(
        ConfigError, match="TOKEN_LIST_CACHE_SECONDS must be a finite number between 0 and 10"
    ):
        load_config({"TOKEN_LIST_CACHE_SECONDS": value})


def test_an_rpc_budget_too_small_for_a_broadcast_is_refused():
    """Found in review: with a burst under eth_sendRawTransaction's 250 compute units the keeper
    waited for ever for a turn its budget could never give."""
    with pytest.raises(ConfigError, match="RPC_COMPUTE_UNITS_BURST must be at least 250"):
        load_config({"RPC_COMPUTE_UNITS_PER_SECOND": "5"})
    assert load_config({"RPC_COMPUTE_UNITS_PER_SECOND": "5", "RPC_COMPUTE_UNITS_BURST": "250"})
    assert load_config({"RPC_COMPUTE_UNITS_PER_SECOND": "60"}).rpc_compute_units_burst == 300


def test_production_refuses_to_start_without_a_metrics_token():
    """Found in review: production started with /metrics public, and each anonymous scrape ran
    some 40 queries, a few of them writes. The container devnet (NETWORK=DEVNET) may leave it open."""
    values = {k: v for k, v in GOOD_PRODUCTION.items() if k != "METRICS_TOKEN"}
    with pytest.raises(ConfigError, match="METRICS_TOKEN is required in production"):
        load_config(values)


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    """Found in review: `manage.py check --deploy` with the production values .env.example asks
    for reported security.W004 (no HSTS) and security.W008 (no SSL redirect); both are on by
    default in production now (off only on NETWORK=DEVNET)."""
    import secrets

    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **GOOD_PRODUCTION,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "glisk.example",
        "DATABASE_URL": "postgresql://glisk:unused@127.0.0.1:1/glisk",  # check --deploy never connects
        "GLISK_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "glisk.settings",
    }
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "no issues" in checked.stdout
