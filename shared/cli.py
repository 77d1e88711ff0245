"""The `bapas` command: run the system locally, mint development tokens, look at it."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from .settings import SERVICE_PORTS

DATA_HELP = "data folder of the local platform (default: $BAPAS_DATA or .bapas)"


def _data_option(fn):
    return click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path),
                        default=lambda: os.environ.get("BAPAS_DATA", ".bapas"),
                        show_default=".bapas", help=DATA_HELP)(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """bapas: the case system for Balai Pemasyarakatan offices.

    \b
    up      run NATS, PostgreSQL and the five services on this machine
    token   print a development token
    status  show each service, its readiness and its consumers' lag
    bench   measure the kernel against raw NATS and PostgreSQL
    """


@main.command()
@_data_option
def up(data: Path) -> None:
    """Run the whole system locally until Ctrl-C.

    Embedded nats-server and PostgreSQL live under the data folder unless BAPAS_NATS_URL /
    BAPAS_DATABASE_URL are set. Service ports: BAPAS_<SERVICE>_PORT (defaults 8101-8105).
    """
    from .local.up import run_platform
    sys.exit(run_platform(data))


@main.command()
@click.option("--office", required=True, help="office code, e.g. jaksel")
@click.option("--role", "roles", required=True, multiple=True,
              help="pk, supervisor, head, tpp, auditor, agency or admin (repeatable)")
@click.option("--sub", default=None, help="officer id (default: <role>-dev)")
@click.option("--hours", default=12, show_default=True, help="validity")
@_data_option
def token(office: str, roles: tuple[str, ...], sub: str | None, hours: int, data: Path) -> None:
    """Print a development JWT, signed with the local platform's secret."""
    from .local.up import load_secret
    from .web.auth import TokenService

    secret = load_secret(data)
    if secret is None and os.environ.get("BAPAS_ENV") == "development":
        secret = os.environ.get("BAPAS_JWT_SECRET")
    if not secret:
        raise click.ClickException(f"no development secret in {data}: run `bapas up` first "
                                   "(tokens for production come from the identity provider)")
    try:
        jwt = TokenService(secret).issue(sub or f"{roles[0]}-dev", office, list(roles),
                                         ttl_s=hours * 3600)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--role") from None
    click.echo(jwt)


@main.command()
@_data_option
@click.option("--json", "as_json", is_flag=True, help="print the raw readiness documents")
def status(data: Path, as_json: bool) -> None:
    """Each service: URL, readiness, and every consumer's role and lag."""
    from .local.up import read_run_file

    run = read_run_file(data) or {}
    urls = run.get("services") or {
        name: f"http://127.0.0.1:{os.environ.get(f'BAPAS_{name.upper()}_PORT', port)}"
        for name, port in SERVICE_PORTS.items()}
    docs, all_ready = {}, True
    for name, url in urls.items():
        doc = _get_json(url + "/readyz")
        docs[name] = doc
        all_ready &= doc.get("status") == "ready"
    if as_json:
        click.echo(json.dumps(docs, indent=2))
    else:
        for name, url in urls.items():
            doc = docs[name]
            click.echo(f"{name:<13} {url:<24} {doc.get('status', 'down')}")
            for check, value in (doc.get("checks") or {}).items():
                if value != "ok":
                    click.echo(f"    {check}: {value}")
            for c in doc.get("consumers") or []:
                lag = ", ".join(f"{k.split(':')[-1]} {v}" for k, v in (c.get("lag") or {}).items())
                click.echo(f"    {c['kind']} {c['name']}: {c['role']}"
                           + (f", lag {lag}" if lag else "")
                           + (f", building {c['building']}" if c.get("building") else ""))
            for h in doc.get("held_cases") or []:
                click.echo(f"    HELD {h['projection']} {h['subject']} ({h['status']}): {h['error']}")
    sys.exit(0 if all_ready else 1)


def _get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        try:
            return json.loads(exc.read())
        except ValueError:
            return {"status": f"HTTP {exc.code}"}
    except (OSError, ValueError):
        return {"status": "down"}


@main.group()
def bench() -> None:
    """Benchmarks: our figures as ratios to the raw operations, measured in the same run."""


@bench.command("kernel")
@click.option("--events", default=20_000, show_default=True, help="events per append run")
@click.option("--stream-size", default=100_000, show_default=True,
              help="events in the stream for the case-load test")
def bench_kernel(events: int, stream_size: int) -> None:
    """Appends, projector and case load against raw nats-py and asyncpg."""
    from .bench.kernel import run
    run(events=events, stream_size=stream_size)
