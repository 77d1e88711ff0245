"""Notification settings (`BAPAS_NOTIFICATION_*`, `BAPAS_SMTP_*`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain import RetryPolicy


class NotificationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAPAS_NOTIFICATION_", extra="ignore",
                                      frozen=True)

    retry_base_seconds: float = Field(5.0, gt=0)
    retry_cap_seconds: float = Field(3600.0, gt=0)
    retry_horizon_hours: float = Field(24.0, gt=0, description="a delivery still failing "
                                       "after this long is dead (visible in the API)")
    pause_after_failures: int = Field(5, ge=1, description="consecutive failures after which "
                                      "an endpoint is paused")
    pause_seconds: float = Field(60.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0, description="a delivery being sent by a process "
                                 "that died is sent again after this long")
    send_timeout_seconds: float = Field(10.0, gt=0)
    poll_seconds: float = Field(0.5, gt=0)
    secret_overlap_hours: float = Field(24.0, ge=0, description="both signatures are sent "
                                        "this long after a secret rotation")
    reminder_days: int = Field(3, ge=0, le=14, description="clients are reminded this many "
                               "days before a report is due")
    reminder_poll_seconds: float = Field(60.0, gt=0)
    sms_webhook_url: str | None = Field(None, description="HTTP gateway that sends SMS; "
                                        "reminders are skipped without one")
    webhook_origin: str = Field("bapas.kemenkumham.go.id", description="our origin in the "
                                "CloudEvents webhook validation handshake")
    smtp_host: str | None = Field(None, validation_alias="BAPAS_SMTP_HOST")
    smtp_port: int = Field(25, validation_alias="BAPAS_SMTP_PORT")
    smtp_from: str = Field("noreply@bapas.local", validation_alias="BAPAS_SMTP_FROM")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(base_seconds=self.retry_base_seconds,
                           cap_seconds=self.retry_cap_seconds,
                           horizon=timedelta(hours=self.retry_horizon_hours),
                           pause_after_failures=self.pause_after_failures,
                           pause_seconds=self.pause_seconds)
