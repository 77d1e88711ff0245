"""RFC 9457 problem details: every refusal names the field at fault and the rule broken."""

from __future__ import annotations

from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AppendError, DomainError, Unavailable

__all__ = ["Problem", "install_problem_handlers", "problem_response", "PROBLEM_RESPONSES",
           "unexpected_response", "outage_of"]

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://bapas.id/problems/"
log = structlog.get_logger("bapas.http")

NATS_OUTAGE: tuple[type[BaseException], ...] = (
    nats.errors.NoServersError, nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError, nats.errors.TimeoutError,
    nats.errors.OutboundBufferLimitError, nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError)
POSTGRES_OUTAGE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError, ConnectionError)


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 rule: str | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.rule, self.field, self.headers, self.extra = rule, field, headers, extra


def problem_response(status: int, title: str, detail: str | None = None, *,
                     rule: str | None = None, field: str | None = None,
                     errors: list[dict[str, Any]] | None = None, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + rule if rule else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if field:
        body["field"] = field
    if rule:
        body["rule"] = rule
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Request too large",
           415: "Unsupported media type", 421: "Misdirected request", 422: "Unprocessable request",
           429: "Too many requests", 503: "Service unavailable"}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where, parts = parts[0], parts[1:]
        if where != "body" and parts:
            return f"{where}.{'.'.join(parts)}"
    return ".".join(parts) or "(body)"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            field = ("(body)" if err.get("type") == "json_invalid"  # loc is a character offset
                     else _field(err.get("loc", ())))
            errors.append({"field": field, "rule": err.get("type"), "message": err.get("msg")})
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(422, "Invalid request", detail, field=first["field"],
                                rule="invalid_input", errors=errors, instance=request.url.path)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem_response(exc.status, _TITLES.get(exc.status, "Refused"), exc.message,
                                rule=exc.rule, field=exc.field, instance=request.url.path,
                                **exc.extra)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, rule=exc.rule,
                                field=exc.field, instance=request.url.path,
                                headers=exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(exc.status_code, _TITLES.get(exc.status_code, "Error"), detail,
                                instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_response(request.url.path, exc)


def outage_of(exc: BaseException) -> str | None:
    """The dependency whose outage `exc` shows ("nats", "postgres"), or None for a bug."""
    if isinstance(exc, Unavailable):
        return exc.dependency
    if isinstance(exc, NATS_OUTAGE):
        return "nats"
    if isinstance(exc, POSTGRES_OUTAGE):
        return "postgres"
    if isinstance(exc, AppendError) and exc.__cause__ is not None:
        return outage_of(exc.__cause__)
    return None


def unexpected_response(path: str, exc: BaseException) -> JSONResponse:
    """An exception no handler took: a 503 with Retry-After when it shows a dependency's
    outage (the caller may retry; never a 500 or a 401 for that), else a logged 500."""
    dependency = outage_of(exc)
    if dependency is not None:
        log.warning("dependency unavailable", path=path, dependency=dependency, error=repr(exc))
        return problem_response(
            503, "Service unavailable", f"{dependency} is unreachable at the moment; the "
            "request was not completed and may be retried (with the same Idempotency-Key)",
            rule="dependency_unavailable", instance=path,
            headers={"Retry-After": str(Unavailable.retry_after)}, dependency=dependency)
    log.error("unhandled error", path=path, exc_info=exc)
    return problem_response(500, "Internal error",
                            "the request could not be completed; it has been logged",
                            instance=path)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": _TITLES[code], "content": {PROBLEM_JSON: {}}}
    for code in (401, 403, 404, 409, 422)
}
