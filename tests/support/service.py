"""A service in-process on real NATS and PostgreSQL, driven over HTTP (ASGI)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from shared.runtime import Kernel, ServiceDefinition, started
from shared.settings import Settings


@dataclass
class Running:
    kernel: Kernel
    app: object
    http: httpx.AsyncClient

    def token(self, office: str = "jaksel", *roles: str, sub: str = "pk-0007") -> dict[str, str]:
        """Authorization headers for a person of `office` with `roles` (default: pk)."""
        jwt = self.kernel.tokens.issue(sub, office, list(roles or ("pk",)))
        return {"Authorization": f"Bearer {jwt}"}


@contextlib.asynccontextmanager
async def running(definition: ServiceDefinition, settings: Settings) -> AsyncIterator[Running]:
    async with started(definition, settings) as (kernel, app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app),
                              base_url="http://bapas.test") as http:
        yield Running(kernel, app, http)
