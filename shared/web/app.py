"""The FastAPI app every service serves: problem details, health, readiness, metrics, and
the service's AsyncAPI document."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..asyncapi import asyncapi_html
from ..ids import new_id
from ..logging import bind, clear
from ..metrics import KernelMetrics
from .auth import CurrentPrincipal, TokenService
from .problems import install_problem_handlers, unexpected_response

__all__ = ["create_app", "ReadinessCheck"]

ReadinessCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
log = structlog.get_logger("bapas.http")


def create_app(*, service: str, title: str, description: str, version: str,
               tokens: TokenService, metrics: KernelMetrics, readiness: ReadinessCheck,
               routers: Sequence[APIRouter] = (), lifespan: Any = None,
               asyncapi: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """`asyncapi` gives the service's AsyncAPI document, served without a token at
    /asyncapi.json and as a page at /asyncapi: it is the published contract, not data."""
    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.tokens = tokens
    app.state.metrics = metrics
    app.state.service = service
    install_problem_handlers(app)

    app.add_middleware(_Correlate, metrics=metrics)

    ops = APIRouter(tags=["operations"])

    @ops.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": service}

    @ops.get("/readyz", summary="NATS and PostgreSQL reachable, durability profile held, "
                               "consumers and held cases")
    async def readyz() -> JSONResponse:
        ok, detail = await readiness()
        return JSONResponse({"status": "ready" if ok else "not ready", "service": service,
                             **detail}, status_code=200 if ok else 503)

    @ops.get("/v1/ping", status_code=204, response_class=Response,
             summary="Nothing, once the token is checked: the floor under every route's "
                     "latency (what `bapas bench api` compares the routes with)")
    async def ping(principal: CurrentPrincipal) -> Response:
        return Response(status_code=204)

    @ops.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if asyncapi is not None:
        # Documentation like /docs, so left out of the OpenAPI schema. Plain functions: the
        # first call draws the document, which FastAPI then does off the event loop.
        @ops.get("/asyncapi.json", include_in_schema=False)
        def asyncapi_json() -> JSONResponse:
            return JSONResponse(asyncapi())

        @ops.get("/asyncapi", include_in_schema=False, response_class=HTMLResponse)
        def asyncapi_page() -> HTMLResponse:
            return HTMLResponse(asyncapi_html(asyncapi()))

    app.include_router(ops)
    for router in routers:
        app.include_router(router)
    return app


class _Correlate:
    """Every request: a correlation id (taken from `X-Correlation-Id` or made) bound to the
    logs and sent back, its latency in the metrics and the request log, and an exception no
    handler took answered here, while the id is still bound (a 503 for an outage).

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
    every request through a task group and a streamed copy of the response, about a tenth
    of a registration's time in a profile."""

    def __init__(self, app: Any, metrics: KernelMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = next((v.decode("latin-1") for k, v in scope["headers"]
                               if k == b"x-correlation-id"), None) or new_id()
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        bind(correlation_id=correlation_id)
        started = time.perf_counter()
        status = 500
        sent = False

        async def send_with_id(message: dict) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status, sent = message["status"], True
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if sent:
                raise
            response = unexpected_response(scope["path"], exc)
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            method = scope["method"]
            self.metrics.http_seconds.labels(method, path, str(status)).observe(elapsed)
            if path not in ("/healthz", "/readyz", "/metrics"):
                log.info("request", method=method, route=path, status=status,
                         ms=round(elapsed * 1000, 2))
            clear("correlation_id", "client_id", "office", "actor")
