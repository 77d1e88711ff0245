"""Settings fail fast: no default secret or database outside development."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.privacy import IndexKey
from shared.runtime import index_key
from shared.settings import DEV_DATABASE_URL, SERVICE_PORTS, Settings

REPO = Path(__file__).resolve().parents[2]

SECRET = "s" * 32
DSN = "postgresql://bapas@db.internal:5432/bapas"


@pytest.fixture(autouse=True)
def no_bapas_environment(monkeypatch):
    """Whatever the developer's shell exports, each test starts from none of it."""
    for name in list(os.environ):
        if name.upper().startswith("BAPAS_"):
            monkeypatch.delenv(name)


def test_production_refuses_to_start_without_secret_and_database():
    with pytest.raises(ValidationError) as err:
        Settings()
    message = str(err.value)
    assert "BAPAS_JWT_SECRET" in message and "BAPAS_DATABASE_URL" in message
    assert "BAPAS_ENV=development" in message  # says how a workstation gets past it


def test_production_names_only_what_is_missing(monkeypatch):
    monkeypatch.setenv("BAPAS_JWT_SECRET", SECRET)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "BAPAS_DATABASE_URL" in str(err.value) and "BAPAS_JWT_SECRET" not in str(err.value)
    monkeypatch.delenv("BAPAS_JWT_SECRET")
    monkeypatch.setenv("BAPAS_DATABASE_URL", DSN)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "BAPAS_JWT_SECRET" in str(err.value) and "BAPAS_DATABASE_URL" not in str(err.value)


def test_production_refuses_a_short_secret(monkeypatch):
    monkeypatch.setenv("BAPAS_JWT_SECRET", "s" * 31)
    monkeypatch.setenv("BAPAS_DATABASE_URL", DSN)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings()


def test_production_starts_with_both(monkeypatch):
    monkeypatch.setenv("BAPAS_JWT_SECRET", SECRET)
    monkeypatch.setenv("BAPAS_DATABASE_URL", DSN)
    s = Settings()
    assert not s.development
    assert s.secret() == SECRET and s.dsn == DSN
    assert SECRET not in repr(s)  # the secret never shows in logs of the settings


def test_an_unknown_environment_name_is_refused(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "dev")
    with pytest.raises(ValidationError, match="env"):
        Settings()


def test_development_starts_without_secret_or_database(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    s = Settings()
    assert s.development
    assert s.jwt_secret is None and s.dsn == DEV_DATABASE_URL
    with pytest.raises(ValueError, match="bapas up"):
        s.secret()  # a service still needs one: `bapas up` provides it


def test_development_accepts_a_short_secret(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    monkeypatch.setenv("BAPAS_JWT_SECRET", "short")
    assert Settings().secret() == "short"


def test_bapas_variables_are_read(monkeypatch):
    env = {
        "BAPAS_ENV": "development", "BAPAS_NATS_URL": "nats://nats.internal:4333",
        "BAPAS_DATABASE_URL": DSN, "BAPAS_NAMESPACE": "side", "BAPAS_STREAM_REPLICAS": "3",
        "BAPAS_JWT_ISSUER": "idp.bapas.id", "BAPAS_HOST": "0.0.0.0", "BAPAS_LOG_FORMAT": "json",
        "BAPAS_PROJECTION_BATCH": "64", "BAPAS_PROJECTION_RETRY_DELAYS": "[0.5, 2]",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.nats_url == "nats://nats.internal:4333" and s.dsn == DSN
    assert (s.namespace, s.stream_replicas, s.jwt_issuer, s.host) == ("side", 3, "idp.bapas.id",
                                                                        "0.0.0.0")
    assert s.log_format == "json" and s.projection_batch == 64
    assert s.projection_retry_delays == (0.5, 2.0)


def test_variables_without_the_prefix_are_not_read(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    monkeypatch.setenv("DATABASE_URL", DSN)
    s = Settings()
    assert s.nats_url == "nats://127.0.0.1:4222" and s.database_url is None


def test_the_monitor_url_defaults_to_each_nats_host_on_8222(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    monkeypatch.setenv("BAPAS_NATS_URL", "nats://nats-1.internal:4222,nats://nats-2.internal:4222")
    assert Settings().monitor_url == "http://nats-1.internal:8222,http://nats-2.internal:8222"
    monkeypatch.setenv("BAPAS_NATS_MONITOR_URL", "http://monitor:9999")
    assert Settings().monitor_url == "http://monitor:9999"


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    for name, value in {"BAPAS_STREAM_REPLICAS": "0", "BAPAS_PROJECTION_BATCH": "100000",
                        "BAPAS_GUIDANCE_PORT": "eighty"}.items():
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError, match=name.removeprefix("BAPAS_").lower()):
            Settings()
        monkeypatch.delenv(name)


def test_service_ports_default_to_8101_to_8105(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    s = Settings()
    assert {name: s.port(name) for name in SERVICE_PORTS} == {
        "registration": 8101, "guidance": 8102, "supervision": 8103, "notification": 8104,
        "audit": 8105}


def test_a_service_port_is_overridden_by_its_variable(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    monkeypatch.setenv("BAPAS_REGISTRATION_PORT", "9101")
    s = Settings()
    assert s.port("registration") == 9101
    assert s.port("guidance") == 8102  # the others keep their defaults


def test_settings_are_frozen(monkeypatch):
    monkeypatch.setenv("BAPAS_ENV", "development")
    s = Settings()
    with pytest.raises(ValidationError):
        s.nats_url = "nats://elsewhere:4222"


def test_registration_refuses_to_start_in_production_without_an_index_key(monkeypatch):
    """The NIK index is named with BAPAS_PRIVACY_INDEX_KEY: no default outside development,
    and a service that needs it says so before it connects to anything."""
    monkeypatch.setenv("BAPAS_JWT_SECRET", SECRET)
    monkeypatch.setenv("BAPAS_DATABASE_URL", DSN)
    with pytest.raises(ValueError, match="BAPAS_PRIVACY_INDEX_KEY"):
        index_key(Settings())
    monkeypatch.setenv("BAPAS_PRIVACY_INDEX_KEY", "short")
    with pytest.raises(ValueError, match="at least 32"):
        index_key(Settings())
    key = "i" * 32
    monkeypatch.setenv("BAPAS_PRIVACY_INDEX_KEY", key)
    assert index_key(Settings()).digest("x") == IndexKey(key.encode()).digest("x")
    assert key not in repr(Settings())

    monkeypatch.delenv("BAPAS_PRIVACY_INDEX_KEY")
    # development derives one from the token secret: the same one every time
    dev = Settings(env="development", jwt_secret=SECRET)
    assert index_key(dev).digest("x") == index_key(dev).digest("x") != IndexKey(
        key.encode()).digest("x")
    monkeypatch.setenv("BAPAS_PRIVACY_MASTER_KEYS", "m=" + base64.b64encode(b"k" * 32).decode())
    result = subprocess.run([sys.executable, "-m", "services.registration"], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    assert "BAPAS_PRIVACY_INDEX_KEY" in result.stderr
