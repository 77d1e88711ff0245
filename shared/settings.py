"""Settings from the environment (`BAPAS_*`), typed and validated; they fail fast.

Outside development mode there is no default secret and no default database: a service
refuses to start rather than run with a guessable token key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .streams import Topology, default_monitor_url

__all__ = ["Settings", "SERVICE_PORTS", "CONSOLE_PORT", "DEV_DATABASE_URL"]

SERVICE_PORTS = {"registration": 8101, "guidance": 8102, "supervision": 8103,
                 "notification": 8104, "audit": 8105}
CONSOLE_PORT = 8106  # the officers' console: a web front end, not a context (no events)
DEV_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bapas"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAPAS_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = Field(
        "production", description="`development` allows dev-only conveniences (local secret, "
        "loopback http webhooks); `production` allows none.")
    nats_url: str = "nats://127.0.0.1:4222"
    nats_monitor_url: str | None = Field(
        None, description="nats-server monitoring endpoint, read at start-up to verify "
        "`sync_interval: always`; default: the NATS host on port 8222.")
    database_url: str | None = None
    namespace: str = Field("", description="prefix of streams, subjects and schemas "
                           "(side-by-side installs and tests)")
    stream_replicas: int = Field(1, ge=1, le=5)
    office: str = Field("", description="on an office's own nats-server (a leaf): the office "
                        "whose cases this deployment holds, and the only one it writes")
    leaf_offices: str = Field("", description="at the hub: offices (comma-separated) that "
                              "keep their cases on a leaf of their own; the hub's streams "
                              "source theirs and the hub writes none of their cases")
    hub_domain: str = Field("hub", description="the hub's JetStream domain, as seen from a leaf")
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "bapas"
    host: str = "127.0.0.1"
    registration_port: int = SERVICE_PORTS["registration"]
    guidance_port: int = SERVICE_PORTS["guidance"]
    supervision_port: int = SERVICE_PORTS["supervision"]
    notification_port: int = SERVICE_PORTS["notification"]
    audit_port: int = SERVICE_PORTS["audit"]
    console_port: int = CONSOLE_PORT
    # OpenID Connect: the office's identity provider. Services accept its RS256/ES256 tokens
    # (keys from its JWKS) besides the HS256 tokens signed with `jwt_secret`; the console
    # signs officers in with the authorization-code flow.
    oidc_issuer: str | None = Field(None, description="the provider's issuer URL; its "
                                    "/.well-known/openid-configuration names the JWKS")
    oidc_audience: str | None = Field(None, description="the `aud` the provider's tokens "
                                      "carry for bapas (default: oidc_client_id)")
    oidc_jwks_url: str | None = Field(None, description="the JWKS, if not from discovery")
    oidc_office_claim: str = "office"
    oidc_roles_claim: str = "roles"
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    # Personal data (shared.privacy): master keys that wrap each person's data key
    privacy_master_keys: SecretStr | None = Field(
        None, description="kid=base64(32 bytes)[,kid=...]: the first wraps new data keys, "
        "the others still unwrap (rotation); required outside development")
    privacy_index_key: SecretStr | None = Field(
        None, description="at least 32 characters: keys the digests that name the NIK index "
        "(never rotated: the index's subjects are named with it); required outside "
        "development by registration")
    privacy_retention_days: int = Field(
        3653, ge=0, description="how long after a case ends its person's data must be kept "
        "before it may be erased (default: 10 years)")
    # The console
    console_secret: SecretStr | None = Field(None, description="signs the console's session "
                                             "cookies (at least 32 characters)")
    console_public_url: str | None = Field(None, description="where officers reach the "
                                           "console (the OIDC redirect URI is built on it)")
    registration_url: str | None = None  # default: http://{host}:{registration_port}
    guidance_url: str | None = None
    supervision_url: str | None = None
    notification_url: str | None = None
    audit_url: str | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    projection_batch: int = Field(256, ge=1, le=4096)
    projection_retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0)

    @model_validator(mode="after")
    def _no_insecure_defaults(self) -> Settings:
        self.topology  # noqa: B018 - office codes are valid subject tokens
        if self.env == "development":
            return self
        missing = []
        if self.jwt_secret is None:
            missing.append("BAPAS_JWT_SECRET (at least 32 characters)")
        elif len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("BAPAS_JWT_SECRET must be at least 32 characters")
        if not self.database_url:
            missing.append("BAPAS_DATABASE_URL")
        if missing:
            raise ValueError("outside development mode these must be set: " + ", ".join(missing)
                             + " (or set BAPAS_ENV=development on a workstation)")
        return self

    @property
    def topology(self) -> Topology:
        leaves = tuple(o.strip() for o in self.leaf_offices.split(",") if o.strip())
        return Topology(self.namespace, office=self.office, leaves=leaves)

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def monitor_url(self) -> str:
        return self.nats_monitor_url or default_monitor_url(self.nats_url)

    @property
    def dsn(self) -> str:
        return self.database_url or DEV_DATABASE_URL

    def port(self, service: str) -> int:
        return getattr(self, f"{service}_port")

    def url(self, service: str) -> str:
        """Where another service answers over HTTP (the console calls them there)."""
        return (getattr(self, f"{service}_url") or
                f"http://{self.host}:{self.port(service)}").rstrip("/")

    def secret(self) -> str:
        if self.jwt_secret is None:
            raise ValueError("no BAPAS_JWT_SECRET: `bapas up` sets one for development")
        return self.jwt_secret.get_secret_value()
