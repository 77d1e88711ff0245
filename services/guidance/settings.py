"""Guidance settings: the office rules DOMAIN.md calls configurable (`BAPAS_GUIDANCE_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain import Policy


class GuidanceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAPAS_GUIDANCE_", extra="ignore", frozen=True)

    litmas_days: int = Field(7, ge=1, le=90, description="litmas deadline for reintegration "
                             "programs, in days from the officer's assignment")
    diversion_litmas_hours: int = Field(72, ge=1, le=720, description="litmas deadline for "
                                        "DIVERSI, in hours from the request")
    review_fractions: tuple[float, ...] = Field(
        (1 / 3, 2 / 3), description="advisory review dates as fractions of the period")
    sweep_seconds: float = Field(30.0, gt=0, description="how often overdue litmas are sought")

    def policy(self) -> Policy:
        return Policy(litmas_days=self.litmas_days,
                      diversion_litmas_hours=self.diversion_litmas_hours,
                      review_fractions=self.review_fractions)
