"""The production compose file, checked without Docker: structure, entry points, env names, ports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml

from taskservice import search_attributes
from taskservice.queues import Queue
from taskservice.settings import Settings
from taskservice.tracing import tracing_requested

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.temporal.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
OUR_SERVICES = {name: s for name, s in SERVICES.items() if str(s.get("image", "")).startswith("task-service")}
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}


def test_compose_has_the_whole_stack() -> None:
    assert {
        "postgresql",
        "temporal",
        "temporal-ui",
        "temporal-admin-tools",
        "temporal-init",
        "minio",
        "minio-init",
        "api",
        "otel-collector",
        "jaeger",
    } <= set(SERVICES)
    worker_queues = {s["command"][-1] for name, s in OUR_SERVICES.items() if name.startswith("worker-")}
    assert worker_queues == {q.value for q in Queue}


def test_our_commands_are_real_entry_points() -> None:
    for name, service in OUR_SERVICES.items():
        command = service["command"]
        assert command[:2] == ["python", "-m"], name
        module = importlib.import_module(f"{command[2]}.__main__")
        assert callable(module.main), name
        if command[2] == "workers":
            assert Queue(command[3])


# Standard OpenTelemetry variables: the SDK and taskservice/tracing.py read them, not Settings.
OTEL_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"}


def test_env_names_match_settings() -> None:
    ignored = {"HF_HOME"} | OTEL_ENV
    for name, service in OUR_SERVICES.items():
        unknown = set(service["environment"]) - SETTINGS_ENV - ignored
        assert not unknown, f"{name} sets env vars that Settings does not read: {unknown}"


def test_gpu_queues_reserve_gpus_and_restart() -> None:
    for queue in ("gpu_heavy", "gpu_medium"):
        service = SERVICES[f"worker-{queue.replace('_', '-')}"]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    for service in OUR_SERVICES.values():
        assert service["restart"] == "unless-stopped"


def test_search_attributes_registered_by_init_service() -> None:
    script = SERVICES["temporal-init"]["command"][0]
    for name in (key.name for key in search_attributes.ALL):
        assert name in script


def test_ports_match_readme_and_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "8001:8001" in SERVICES["api"]["ports"]
    assert Settings.model_fields["api_port"].default == 8001
    assert SERVICES["temporal-ui"]["ports"] == ["127.0.0.1:8233:8080"]
    assert re.search(r"localhost:8001", readme) and re.search(r"localhost:8233", readme)
    assert SERVICES["jaeger"]["ports"] == ["127.0.0.1:16686:16686"] and "localhost:16686" in readme


def test_dockerfiles_copy_every_package() -> None:
    for name in ("Dockerfile", "Dockerfile.cuda"):
        text = (ROOT / name).read_text()
        for package in ("taskservice", "workflows", "activities", "api", "workers"):
            assert f"COPY {package} {package}" in text, (name, package)


def test_grafana_dashboard_queries_metrics_we_export() -> None:
    import json

    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exported = (ROOT / "taskservice" / "telemetry.py").read_text()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = re.findall(r"taskservice_[a-z_]+", target["expr"])
            assert names, panel["title"]
            for name in names:
                base = re.sub(r"_(total|bucket|sum|count)$", "", name)
                assert f'"{base}"' in exported, (panel["title"], name)


def _published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host interface, host port) of each published port; "" when it listens on every interface."""
    published = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        published.append((parts[0], parts[1]) if len(parts) == 3 else ("", parts[0]))
    return published


def test_nothing_unauthenticated_is_published() -> None:
    # Temporal's frontend, its Web UI and the workers' metrics answer anyone: never on the host's interfaces.
    assert not any(port == "7233" for s in SERVICES.values() for _, port in _published(s))
    assert "ports" not in SERVICES["temporal"]
    assert _published(SERVICES["temporal-ui"]) == [("127.0.0.1", "8233")]
    assert _published(SERVICES["jaeger"]) == [("127.0.0.1", "16686")]
    assert "ports" not in SERVICES["otel-collector"]
    for name, service in OUR_SERVICES.items():
        if name.startswith("worker-"):
            assert "ports" not in service and "expose" not in service, name
    for name, service in SERVICES.items():
        for interface, port in _published(service):
            assert interface == "127.0.0.1" or name == "api", (name, port)


def test_minio_is_internal_and_our_services_hold_a_bucket_user_not_its_root() -> None:
    assert _published(SERVICES["minio"]) == [("127.0.0.1", "9000"), ("127.0.0.1", "9001")]
    for name, service in OUR_SERVICES.items():
        env = service["environment"]
        assert not any("MINIO_ROOT" in str(value) for value in env.values()), name
        assert (
            "MINIO_APP_USER" in env["AWS_ACCESS_KEY_ID"]
            and "MINIO_APP_PASSWORD" in env["AWS_SECRET_ACCESS_KEY"]
        )
    init = SERVICES["minio-init"]
    script = init["command"][0]
    assert 'mc admin user add local "$${MINIO_APP_USER}"' in script
    assert "mc admin policy attach local task-service-bucket" in script
    # The policy names the one bucket's objects and listing, nothing else (no `s3:*`, no `admin:`).
    assert '"Resource":["arn:aws:s3:::%s/*"]' in script and "s3:*" not in script and "admin:" not in script
    assert set(init["environment"]) >= {"MINIO_APP_USER", "MINIO_APP_PASSWORD", "S3_BUCKET"}


def test_worker_metrics_bind_locally_unless_compose_opens_them_to_its_network() -> None:
    assert Settings.model_fields["worker_metrics_host"].default == "127.0.0.1"
    # (tests/test_temporal_connection.py checks where a real worker's two metrics ports listen.)
    # Inside the compose network Prometheus scrapes them by service name: workers bind all their interfaces.
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    scraped = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    for name, service in OUR_SERVICES.items():
        if name.startswith("worker-"):
            assert service["environment"]["WORKER_METRICS_HOST"] == "0.0.0.0", name
            ports = Settings().worker_metrics_ports(Queue(service["command"][-1]))
            assert ports is not None
            assert {f"{name}:{port}" for port in ports} <= scraped, name
        else:
            assert "WORKER_METRICS_HOST" not in service["environment"], name


def test_every_service_of_ours_sends_traces_through_the_collector_to_jaeger() -> None:
    collector_service = SERVICES["otel-collector"]
    source, target, _ = collector_service["volumes"][0].split(":")
    assert source == "./deploy/otel-collector.yaml" and collector_service["command"] == [f"--config={target}"]
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    assert [collector["exporters"][name]["endpoint"] for name in pipeline["exporters"]] == ["jaeger:4317"]
    assert SERVICES["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert SERVICES["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    service_names = set()
    for name, service in OUR_SERVICES.items():
        env = service["environment"]
        assert set(env) & OTEL_ENV == OTEL_ENV, name
        # `${VAR:-default}`: what the service gets when .env sets nothing.
        defaults = {key: re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", str(env[key])) for key in OTEL_ENV}
        assert defaults["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name
        assert tracing_requested(defaults), name
        assert "otel-collector" in service["depends_on"], name
        service_names.add(env["OTEL_SERVICE_NAME"])
    assert len(service_names) == len(OUR_SERVICES)
