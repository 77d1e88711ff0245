"""Supervision settings (`BAPAS_SUPERVISION_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SupervisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAPAS_SUPERVISION_", extra="ignore",
                                      frozen=True)

    sweep_seconds: float = Field(10.0, gt=0, description="how often missed reports are sought")
    due_soon_days: int = Field(7, ge=0, le=60, description="a report due within this many days "
                               "shows on the compliance board")
