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
from tuneforge.main import ACTOR_BACKENDS, API_BACKENDS


def test_compose_names_every_service_with_replicas() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nats", "postgres", "azurite", "redis", "api", "converter", "exporter", "mood"} <= set(services)
    for actor in ("converter", "exporter", "mood"):
        assert services[actor]["command"] == ["actor", actor]
        assert services[actor]["deploy"]["replicas"] >= 1
        assert services[actor]["environment"]["TUNEFORGE_NATS_URL"] == "nats://nats:4222"
    # The mood actor's warm-up can delete a numba cache that crashes its loader only in a named folder.
    assert services["mood"]["environment"]["NUMBA_CACHE_DIR"]
    assert services["api"]["command"][0] == "api"
    assert "/etc/nats/nats-server.conf" in services["nats"]["command"]
    mounted = [v.split(":")[0] for v in services["nats"]["volumes"]]
    assert "./infra/nats/nats-server.conf" in mounted


def test_compose_starts_tuneforge_once_its_backends_are_healthy() -> None:
    """Each tuneforge process checks its backends on start and exits when one does not answer, so
    compose starts it after the backends it checks are healthy, not merely started."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    compose_service = {"database": "postgres", "blob store": "azurite", "cache": "redis", "NATS": "nats"}
    needs = {"api": API_BACKENDS, **dict.fromkeys(("converter", "exporter", "mood"), ACTOR_BACKENDS)}
    for name, backends in needs.items():
        depends_on = services[name]["depends_on"]
        for backend in backends:
            assert depends_on[compose_service[backend]] == {"condition": "service_healthy"}, (name, backend)
    for name, service in services.items():
        for dependency, how in (service.get("depends_on") or {}).items():
            if how["condition"] == "service_healthy":
                assert services[dependency]["healthcheck"]["test"], (name, dependency)
    # NATS is healthy when its monitoring port's /healthz says so (JetStream included).
    assert "http://127.0.0.1:8222/healthz" in services["nats"]["healthcheck"]["test"]
    config = (REPO_ROOT / "infra" / "nats" / "nats-server.conf").read_text()
    assert re.search(r"^http_port:\s*8222\s*$", config, re.MULTILINE)
    # Azurite otherwise reports usage to Application Insights.
    assert "--disableTelemetry" in services["azurite"]["command"]


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
