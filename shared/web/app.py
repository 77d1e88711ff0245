"""The FastAPI app every service serves: problem details, health, readiness, metrics, and
the service's AsyncAPI document."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
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

    @app.middleware("http")
    async def correlate(request: Request, call_next):  # noqa: ANN001
        correlation_id = request.headers.get("x-correlation-id") or new_id()
        request.state.correlation_id = correlation_id
        bind(correlation_id=correlation_id)
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await call_next(request)
            except Exception as exc:  # answer here, while the correlation id is still bound
                response = unexpected_response(request.url.path, exc)
            status = response.status_code
            response.headers["X-Correlation-Id"] = correlation_id
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            metrics.http_seconds.labels(request.method, path, str(status)).observe(elapsed)
            if path not in ("/healthz", "/readyz", "/metrics"):
                log.info("request", method=request.method, route=path, status=status,
                         ms=round(elapsed * 1000, 2))
            clear("correlation_id", "client_id", "office", "actor")

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
