"""Fixtures for the deploy checks (no Docker engine, no cluster: files are parsed and validated)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def load_module(name: str, path: Path):
    """Import a helper module by path (tests run with --import-mode=importlib, no packages)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def load():
    """load(name, path) -> module, for the helper scripts under deploy/ and tests/deploy."""
    return load_module


@pytest.fixture(scope="session")
def kustomize():
    return load_module("vidpose_tests_kustomize_lite", HERE / "kustomize_lite.py")


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def dockerfile_stages():
    parser = load_module("vidpose_tests_dockerfile_parse", HERE / "dockerfile_parse.py")
    return parser.parse((REPO / "Dockerfile").read_text())


@pytest.fixture(scope="session")
def settings_fields() -> set[str]:
    from service.settings import Settings

    return set(Settings.model_fields)
