"""The services' public HTTP APIs, called with the signed-in officer's own token.

A refusal comes back as `Refused` carrying the service's problem document (RFC 9457), so a
page can show each error next to the field it names; a service that does not answer is
`Unreachable`. The request's correlation id travels with every call, so an operator finds
one officer's click in every service's log.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.settings import Settings

__all__ = ["SERVICES", "Backend", "Refused", "Unreachable"]

SERVICES = ("registration", "guidance", "supervision", "notification", "audit")
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class Refused(Exception):
    """A service answered with a problem (4xx or 5xx)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or str(status))
        self.status = status
        self.problem = problem

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Each error with its field (`person.nik`) and rule (a refused input lists them
        as `errors`, a refused command its unmet conditions as `missing`); a problem naming
        one field without a list counts as one."""
        listed = self.problem.get("errors") or self.problem.get("missing")
        if isinstance(listed, list) and listed:
            return [e for e in listed if isinstance(e, dict)]
        return [{"field": self.problem.get("field"), "rule": self.problem.get("rule"),
                 "message": self.problem.get("detail") or self.problem.get("title")}]


class Unreachable(Exception):
    """A service did not answer (down, restarting, or too slow)."""

    def __init__(self, service: str) -> None:
        super().__init__(f"{service} did not answer")
        self.service = service


class Backend:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.urls = {name: settings.url(name) for name in SERVICES}
        self.http = httpx.AsyncClient(timeout=TIMEOUT, transport=transport,
                                      limits=httpx.Limits(max_connections=64))

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, service: str, path: str, token: str, *,
                   json: Any = None, params: dict[str, Any] | None = None,
                   correlation_id: str | None = None,
                   idempotency_key: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if correlation_id:
            headers["X-Correlation-Id"] = correlation_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self.http.request(method, self.urls[service] + path, json=json,
                                               params=query, headers=headers)
        except httpx.TransportError:
            raise Unreachable(service) from None
        if response.status_code == 204:
            return None
        try:
            doc = response.json()
        except ValueError:
            doc = {"title": response.reason_phrase, "status": response.status_code}
        if response.status_code >= 400:
            raise Refused(response.status_code, doc if isinstance(doc, dict) else {})
        return doc

    async def ready(self) -> dict[str, bool]:
        """Which services answer /healthz (the console works with those that do)."""
        out = {}
        for name, url in self.urls.items():
            try:
                out[name] = (await self.http.get(url + "/healthz", timeout=2.0)).status_code == 200
            except httpx.TransportError:
                out[name] = False
        return out
