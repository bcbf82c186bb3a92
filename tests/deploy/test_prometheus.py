"""The shipped Prometheus rules: promtool checks them and runs their unit tests, and a real
Prometheus scraping the running app fires the cluster alert when a qcluster stops."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from glisk.devtools import devnet
from glisk.devtools.stack import Stack, wait_until
from tests.e2e.conftest import test_database_url

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `make test` installs Debian's prometheus package for it")
    return found


def test_the_alert_rules_are_valid_and_their_unit_tests_pass():
    checked = subprocess.run(
        [tool("promtool"), "check", "rules", "alerts.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout
    tested = subprocess.run(
        [tool("promtool"), "test", "rules", "alerts_test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_compose_prometheus_config_is_valid(tmp_path):
    """deploy/prometheus/prometheus.yml, with the rule file where the container mounts it."""
    config = (
        (RULES / "prometheus.yml")
        .read_text()
        .replace("/etc/prometheus/alerts.yml", str(RULES / "alerts.yml"))
    )
    (tmp_path / "prometheus.yml").write_text(config)
    checked = subprocess.run(
        [tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_reads_only_series_the_app_exports(client, db):
    import json

    from glisk.core.state import state_set

    state_set(  # what the keeper records (chain.services.keeper.Keeper.record_funds)
        key="keeper.funds",
        value={
            "at": "2026-12-01T00:00:00+00:00",
            "balance_wei": "10",
            "reveal_cost_wei": "1",
            "reveals_affordable": 10,
        },
    )
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "glisk.json").read_text())
    text = client.get("/metrics").content.decode()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]  # empty ones too
    names += [
        line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")
    ]
    exported = {re.sub(r"_(bucket|count|sum|total|created)$", "", name) for name in names}
    wanted = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            wanted |= set(re.findall(r"\b(glisk_[a-z_]+?)(?:_bucket|_total)?\b", target["expr"]))
    alerts = (RULES / "alerts.yml").read_text()
    wanted |= set(re.findall(r"\b(glisk_[a-z_]+?)(?:_bucket|_total)?\b", alerts))
    assert wanted - exported == set()


@pytest.mark.django_db(transaction=True)
def test_a_real_prometheus_fires_the_alert_when_a_cluster_stops(tmp_path):
    """The app under gunicorn with one qcluster, scraped every second by Prometheus with the
    shipped rules (their `for:` shortened so the test takes seconds): SIGKILL the cluster, and once
    it has been silent for 30 s the clusters-running count drops and GliskClusterMissing and
    GliskNoClusterRunning fire."""
    database_url = test_database_url()
    rules = (RULES / "alerts.yml").read_text()
    rules = re.sub(r"for: \d+m", "for: 0s", rules)
    (tmp_path / "alerts.yml").write_text(rules)
    with Stack(var_dir=tmp_path / "var", database_url=database_url) as stack:
        stack.start_chain()
        stack.start_web()
        cluster = stack.start_cluster("c1")
        port = devnet.free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [alerts.yml]\n"
            "scrape_configs:\n"
            f"  - job_name: glisk\n    static_configs: [{{targets: ['127.0.0.1:{stack.web_port}']}}]\n"
        )
        prometheus = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("wb"),
        )
        api = f"http://127.0.0.1:{port}/api/v1"

        def query(expr: str) -> list[dict]:
            try:
                return requests.get(f"{api}/query", params={"query": expr}, timeout=5).json()["data"][
                    "result"
                ]
            except requests.RequestException:
                return []  # still starting

        def firing(name: str) -> list[dict]:
            alerts = requests.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]

        try:
            assert wait_until(lambda: query('up{job="glisk"} == 1'), timeout=60)
            assert wait_until(lambda: query("glisk_clusters_running == 1"), timeout=90)
            (series,) = query("glisk_cluster_last_seen_timestamp_seconds")
            name = series["metric"]["cluster"]
            assert not firing("GliskClusterMissing")
            # The clusters page's record: this cluster, and the tasks it ran (its start-up ones).
            from glisk.core.clusters import clusters_refresh

            assert wait_until(
                lambda: any(c.name == name and c.tasks_done >= 1 for c in clusters_refresh()), timeout=60
            )
            stack.kill(cluster)  # SIGKILL, as a lost machine
            assert wait_until(lambda: firing("GliskClusterMissing"), timeout=90), (
                tmp_path / "prometheus.log"
            ).read_text()[-2000:]
            (series,) = query("time() - glisk_cluster_last_seen_timestamp_seconds > 25")
            assert series["metric"]["cluster"] == name  # the stopped one, for the dashboard
            assert wait_until(lambda: firing("GliskNoClusterRunning"), timeout=90)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
