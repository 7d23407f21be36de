"""The deployment files: docker-compose parses and names every service; the JetStream
definitions are what the actors rely on."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from tests.conftest import REPO_ROOT
from tuneforge.embedded import nats_server_binary
from tuneforge.infra.jetstream import definitions


def test_compose_names_every_service_with_replicas() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nats", "postgres", "azurite", "redis", "api", "converter", "exporter", "mood"} <= set(services)
    for actor in ("converter", "exporter", "mood"):
        assert services[actor]["command"] == ["actor", actor]
        assert services[actor]["deploy"]["replicas"] >= 1
        assert services[actor]["environment"]["TUNEFORGE_NATS_URL"] == "nats://nats:4222"
    assert services["api"]["command"][0] == "api"
    assert "/etc/nats/nats-server.conf" in services["nats"]["command"]
    mounted = [v.split(":")[0] for v in services["nats"]["volumes"]]
    assert "./infra/nats/nats-server.conf" in mounted


def test_nats_server_accepts_the_config() -> None:
    """The real nats-server checks the compose file's server config (`-t`: test and exit)."""
    config = REPO_ROOT / "infra" / "nats" / "nats-server.conf"
    checked = subprocess.run([nats_server_binary(), "-c", str(config), "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"^jetstream\s*{", config.read_text(), re.MULTILINE)


def test_jetstream_definitions_are_consistent() -> None:
    spec = definitions()
    streams = {s["name"]: s for s in spec["streams"]}
    assert streams["TUNEFORGE_JOBS"]["retention"] == "workqueue"
    assert streams["TUNEFORGE_JOBS"]["max_age_seconds"] == 0  # a waiting job never expires unreported
    assert streams["TUNEFORGE_EVENTS"]["retention"] == "limits"
    consumers = {c["durable_name"]: c for c in spec["consumers"]}
    for stage in ("convert", "export", "mood"):
        durable = {"convert": "converter", "export": "exporter", "mood": "mood"}[stage]
        assert consumers[durable]["filter_subject"] == f"tuneforge.jobs.{stage}"
        assert consumers[durable]["max_deliver"] > 1 and consumers[durable]["ack_wait_seconds"] >= 5
    # A work-queue stream needs its consumers' filters not to overlap.
    filters = [c["filter_subject"] for c in spec["consumers"] if c["stream"] == "TUNEFORGE_JOBS"]
    assert len(set(filters)) == len(filters)
    assert json.loads((REPO_ROOT / "infra" / "nats" / "jetstream.json").read_text()) == spec
