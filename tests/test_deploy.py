"""The production compose file, checked without Docker: structure, entry points, env names, ports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml

from taskservice.queues import Queue
from taskservice.settings import Settings

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


def test_env_names_match_settings() -> None:
    ignored = {"HF_HOME"}
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
    for name in ("ProjectId", "TaskType", "TaskStatus", "TaskOwner"):
        assert name in script


def test_ports_match_readme_and_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "8001:8001" in SERVICES["api"]["ports"]
    assert Settings.model_fields["api_port"].default == 8001
    assert "8233:8080" in SERVICES["temporal-ui"]["ports"]
    assert re.search(r"localhost:8001", readme) and re.search(r"localhost:8233", readme)


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
