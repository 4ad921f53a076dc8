"""Settings: defaults, env parsing (comma lists), validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import PACKAGE_MODELS_DIR, Settings


def test_defaults(monkeypatch):
    for name in ("VIDPOSE_API_KEYS", "VIDPOSE_MODELS", "VIDPOSE_REDIS_URL", "VIDPOSE_DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.redis_url is None
    assert s.api_keys == [] and not s.auth_enabled
    assert s.models == [s.default_model] == ["vidpose-movenet-thunder-video"]
    assert s.max_upload_bytes == 500 * 1024 * 1024
    assert s.models_dir == PACKAGE_MODELS_DIR
    assert (s.max_frames, s.max_queued_frames, s.result_page_limit) == (3600, 20000, 500)


def test_env_comma_and_json_lists(monkeypatch):
    monkeypatch.setenv("VIDPOSE_API_KEYS", " k1, k2 ,,")
    monkeypatch.setenv("VIDPOSE_MODELS", '["a", "b"]')
    monkeypatch.setenv("VIDPOSE_MAX_FRAMES", "12")
    monkeypatch.setenv("VIDPOSE_WORKER_DEVICE", "cpu")
    s = Settings()
    assert s.api_keys == ["k1", "k2"] and s.auth_enabled
    assert s.models == ["a", "b"]
    assert s.max_frames == 12 and s.worker_device == "cpu"


def test_single_key_and_default_model_follows(monkeypatch):
    monkeypatch.delenv("VIDPOSE_MODELS", raising=False)
    monkeypatch.setenv("VIDPOSE_API_KEYS", "only")
    monkeypatch.setenv("VIDPOSE_DEFAULT_MODEL", "big")
    s = Settings()
    assert s.api_keys == ["only"] and s.models == ["big"]


@pytest.mark.parametrize("env,value", [("VIDPOSE_MAX_UPLOAD_BYTES", "0"), ("VIDPOSE_WORKER_DEVICE", "tpu"),
                                       ("VIDPOSE_API_PORT", "70000")])
def test_invalid_values_rejected(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError):
        Settings()


def test_every_field_documented():
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 10, name
