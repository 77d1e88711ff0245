"""The `bapas` command: run the system locally, mint development tokens, look at it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
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
    up       run NATS, PostgreSQL and the five services on this machine
    token    print a development token
    status   show each service, its readiness and its consumers' lag
    history  a client's timeline across every context
    audit    export a client's history to a file, verify such a file offline
    rebuild  rebuild a service's read model from the streams
    demo     fill a running system with a realistic office
    bench    measure the kernel, and the running system over HTTP, against raw operations
    faults   break a system of its own under load and count what survived
    """


@main.command()
@_data_option
@click.option("--cluster", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="nats-servers to run: 3 routes them on loopback as a cluster (from "
                   "deploy/cluster/node.conf) with streams of three replicas; with --offices, "
                   "the hub is that cluster")
@click.option("--offices", default=None, metavar="A,B",
              help="run the offices' topology on this machine: a hub (JetStream domain hub, "
                   "with audit, notification and the services of offices without a leaf) and, "
                   "per named office, a leaf nats-server (domain = office code) with that "
                   "office's registration, guidance and supervision")
@click.option("--office", default=None, help="run one office's leaf and services against a "
                                             "real hub (with --hub)")
@click.option("--hub", "hub_url", default=None, metavar="URL",
              help="the hub's leaf URL for --office: nats-leaf://USER:PASSWORD@host:7422")
def up(data: Path, cluster: str, offices: str | None, office: str | None,
       hub_url: str | None) -> None:
    """Run the whole system locally until Ctrl-C.

    Embedded nats-server(s) and PostgreSQL live under the data folder unless BAPAS_NATS_URL /
    BAPAS_DATABASE_URL are set; each is started again on its data when it dies. Service
    ports: BAPAS_<SERVICE>_PORT (defaults 8101-8105; an office's own services 8111-8113,
    8121-8123, ...).
    """
    from .local.up import run_platform
    from .streams import valid_token

    codes = tuple(o.strip() for o in (offices or "").split(",") if o.strip())
    for code in (*codes, *([office] if office else [])):
        if not valid_token(code):
            raise click.BadParameter(f"{code!r} is not an office code (a-z, 0-9, - and _)")
    if len(set(codes)) != len(codes):
        raise click.BadParameter("an office is named twice", param_hint="--offices")
    if (office is None) != (hub_url is None):
        raise click.UsageError("--office and --hub go together: the office's leaf connects "
                               "to that hub")
    if office and (codes or cluster != "1"):
        raise click.UsageError("--office runs one office's leaf: without --cluster or --offices")
    sys.exit(run_platform(data, int(cluster), codes, office, hub_url))


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
    restarts = run.get("restarts") or {}
    width = max([13, *map(len, urls), *(len(e["name"]) for e in run.get("embedded") or [])])
    if as_json:
        click.echo(json.dumps(docs, indent=2))
    else:
        for name, url in urls.items():
            doc = docs[name]
            click.echo(f"{name:<{width}} {url:<24} {doc.get('status', 'down')}"
                       + _restarted(restarts.get(name, 0)))
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
        for emb in run.get("embedded") or []:  # the servers `bapas up` runs and restarts
            name = emb["name"]
            if "monitor_url" in emb:
                where, up = emb["url"], _nats_up(emb["monitor_url"])
            else:
                where, up = _without_user(emb["url"]), _port_open(emb["url"])
            click.echo(f"{name:<{width}} {where:<24} {'up' if up else 'down'}"
                       + _restarted(restarts.get(name, 0)))
        for line in _office_lines(run):
            click.echo(line)
    sys.exit(0 if all_ready else 1)


def _office_lines(run: dict) -> list[str]:
    """Each office leaf: its link to the hub (as the leaf sees it) and how many of its
    events the hub has yet to receive."""
    offices, leaves = run.get("offices") or {}, run.get("leaf_offices") or []
    if not offices:
        return []
    from .local.servers import leaf_link_up

    counts: dict[str, object] = {}
    if leaves:
        import asyncio

        from .offices import office_links
        from .runtime import connect_nats
        from .streams import Topology

        async def hub_view() -> None:
            import nats as nats_py

            nc = await connect_nats(run["nats_url"], "bapas-status", attempts=1)
            own = {}
            try:
                for office, leaf in offices.items():  # each leaf read directly: what waits
                    with contextlib.suppress(Exception):  # is known even with its link cut
                        own[office] = await nats_py.connect(leaf["url"], connect_timeout=2,
                                                            max_reconnect_attempts=0)
                topology = Topology(run.get("namespace", ""), leaves=tuple(leaves))
                for link in await office_links(nc, topology, leaves=own):
                    counts[link.office] = link.waiting
            finally:
                for conn in own.values():
                    await conn.close()
                await nc.close()

        try:
            asyncio.run(hub_view())
        except Exception as exc:  # noqa: BLE001 - the hub down is what status must show
            counts = dict.fromkeys(offices, f"unknown (hub: {type(exc).__name__})")
    lines = []
    for office, leaf in offices.items():
        up = leaf_link_up(leaf["monitor_url"])
        waiting = counts.get(office)
        behind = ("" if not leaves else
                  f", hub has yet to receive {waiting} events" if isinstance(waiting, int)
                  else f", events the hub has yet to receive: {waiting or 'unknown'}")
        lines.append(f"office {office} link to hub {'up' if up else 'DOWN'}{behind}")
    return lines


def _restarted(times: int) -> str:
    return f" (restarted {times}x)" if times else ""


def _without_user(dsn: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}{parts.path}"


def _nats_up(monitor_url: str) -> bool:
    try:
        with urllib.request.urlopen(monitor_url + "/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _port_open(dsn: str) -> bool:
    parts = urllib.parse.urlsplit(dsn)
    try:
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=2):
            return True
    except OSError:
        return False


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


def _system_options(fn):
    fn = click.option("--callers", default=32, show_default=True,
                      help="HTTP callers at once")(fn)
    fn = click.option("--url", default=None, help="the registration service (default: from "
                      "the local platform; the others from BAPAS_<SERVICE>_URL or the same)")(fn)
    return _data_option(fn)


@bench.command("api")
@_system_options
@click.option("--registrations", default=3_000, show_default=True,
              help="registrations in the registrations-only phase")
@click.option("--seconds", default=30.0, show_default=True, help="length of the mixed day")
@click.option("--peer", is_flag=True, help="also the same registrations written with the "
              "`eventsourcing` library on the same PostgreSQL (pip install -e '.[bench]')")
def bench_api(data: Path, url: str | None, callers: int, registrations: int, seconds: float,
              peer: bool) -> None:
    """A running system over HTTP through an office's mixed day: per route count, p50, p99
    and rate against a no-op route and raw JetStream publishes. With no system running, one
    is started in a temporary folder and stopped at the end."""
    from .bench.api import run_api
    sys.exit(run_api(data=data, url=url, callers=callers, registrations=registrations,
                     seconds=seconds, peer=peer))


@bench.command("wave")
@_system_options
@click.option("--clients", default=40_000, show_default=True, help="clients to register")
def bench_wave(data: Path, url: str | None, callers: int, clients: int) -> None:
    """N registrations through HTTP, then the time until every projection of every service
    has caught up."""
    from .bench.api import run_wave
    sys.exit(run_wave(data=data, url=url, callers=callers, clients=clients))


# ----------------------------------------------------------------------- talking to services


def _service_url(service: str, data: Path, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    from .local.up import read_run_file, service_url
    run = read_run_file(data) or {}
    default = f"http://127.0.0.1:{os.environ.get(f'BAPAS_{service.upper()}_PORT', SERVICE_PORTS[service])}"
    return service_url(run, service) or default


def _bearer(token: str | None, data: Path, role: str, office: str) -> str:
    """A token given, or a development token minted from the local platform's secret."""
    token = token or os.environ.get("BAPAS_TOKEN")
    if token:
        return token
    from .local.up import load_secret
    from .web.auth import TokenService
    secret = load_secret(data)
    if not secret:
        raise click.ClickException(f"no token: pass --token (or BAPAS_TOKEN), or run `bapas up` "
                                   f"so that a development token can be minted from {data}")
    return TokenService(secret).issue(f"{role}-cli", office, [role])


def _get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                               "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = exc.reason
        raise click.ClickException(f"{url}: HTTP {exc.code}: {detail}") from None
    except OSError as exc:
        raise click.ClickException(f"{url}: {exc}") from None


def _auth_options(fn):
    fn = click.option("--token", default=None, help="bearer token (default: $BAPAS_TOKEN, or "
                      "a development auditor token)")(fn)
    fn = click.option("--url", default=None, help="the audit service (default: from the "
                      "local platform)")(fn)
    return _data_option(fn)


@main.command()
@click.argument("client_id")
@click.option("--as-of", "as_of", default=None, help="RFC 3339 instant: the timeline up to it "
              "and each context's state then")
@click.option("--json", "as_json", is_flag=True, help="print the raw documents")
@_auth_options
def history(client_id: str, as_of: str | None, as_json: bool, data: Path, url: str | None,
            token: str | None) -> None:
    """A client's timeline across every context and office, each hash link checked."""
    base = _service_url("audit", data, url)
    bearer = _bearer(token, data, "auditor", "pusat")
    doc = _get(f"{base}/v1/audit/clients/{urllib.parse.quote(client_id)}/history", bearer)
    state = None
    if as_of:
        when = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise click.BadParameter("give a time zone, e.g. 2026-05-01T00:00:00Z",
                                     param_hint="--as-of")
        doc["events"] = [e for e in doc["events"]
                         if datetime.fromisoformat(e["time"].replace("Z", "+00:00")) <= when]
        state = _get(f"{base}/v1/audit/clients/{urllib.parse.quote(client_id)}/state?"
                     + urllib.parse.urlencode({"as_of": when.isoformat()}), bearer)
    if as_json:
        click.echo(json.dumps({"history": doc, "state": state}, indent=2, ensure_ascii=False))
        return
    for case in doc["cases"]:
        click.echo(f"case {case['client_id']} at office {case['office']}")
    for e in doc["events"]:
        mark = "ok " if e["link_holds"] else "BROKEN"
        kind = e["type"].split(".")[1]
        click.echo(f"{e['time'][:19].replace('T', ' ')}  {mark}  {e['context']:<12} "
                   f"{kind:<24} {e['office']:<10} {e.get('actor') or '':<16} "
                   f"{_summary(kind, e.get('data') or {})}")
    click.echo(f"{len(doc['events'])} events; chain {'intact' if doc['intact'] else 'BROKEN'}")
    if state:
        for context, s in state["contexts"].items():
            click.echo(f"state of {context} at {state['as_of']}: "
                       f"{json.dumps(_brief(s['state']), ensure_ascii=False)}")


def _summary(kind: str, data: dict) -> str:
    keys = ("register_number", "program", "stage", "to_stage", "officer_id", "subject",
            "outcome", "reason", "due_on", "consecutive", "kind", "category", "code")
    return ", ".join(f"{k}={data[k]}" for k in keys if data.get(k) not in (None, "", []))[:120]


def _brief(state: dict) -> dict:
    return {k: v for k, v in state.items()
            if not isinstance(v, (dict, list)) and v not in (None, "", False)}


@main.group()
def audit() -> None:
    """Exports of a client's history, verified offline."""


@audit.command("export")
@click.argument("client_id")
@click.option("-o", "--output", "output", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="the bundle file to write")
@_auth_options
def audit_export(client_id: str, output: Path, data: Path, url: str | None,
                 token: str | None) -> None:
    """Write a self-contained bundle: every event with its headers and exact body, and a
    manifest of hashes."""
    base = _service_url("audit", data, url)
    doc = _get(f"{base}/v1/audit/clients/{urllib.parse.quote(client_id)}/export",
               _bearer(token, data, "auditor", "pusat"))
    output.write_text(json.dumps(doc, indent=1))
    click.echo(f"{len(doc['messages'])} events of {client_id} written to {output}")


@audit.command("verify")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def audit_verify(bundle: Path) -> None:
    """Check a bundle offline, with no server: manifest and hash chains."""
    from services.audit.history import verify_bundle
    try:
        result = verify_bundle(json.loads(bundle.read_text()))
    except (ValueError, KeyError) as exc:
        raise click.ClickException(f"{bundle} is not an audit bundle: {exc}") from None
    if result["intact"]:
        click.echo(f"intact: {result['checked']} events in {result['cases']} case chains")
        return
    click.echo(f"BROKEN ({result['reason']}): {result.get('detail')}")
    sys.exit(1)


@main.command()
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for the systems it runs (default: a temporary one, removed after)")
@click.option("--only", type=click.Choice(["single", "cluster"]), default=None,
              help="run only the faults of one nats-server, or only those of the cluster")
def faults(data: Path | None, only: str | None) -> None:
    """Inject faults into a system of its own while officers work, and print what survived.

    \b
    Runs `bapas up` twice on free ports (one nats-server, then a 3-node cluster) and, under
    a load of registrations, visits and stage advances, kills each service, the
    nats-server, PostgreSQL and a cluster node, freezes a node for 20 s, delivers every
    consumer's messages again and stores a poison event. For each: commands answered 2xx,
    stored, lost, stored twice (read from the streams with no code of the services), whether
    every projection equals a fresh rebuild, and the longest time with no command answered.
    Exits 1 if anything was lost, stored twice or differs from its rebuild.
    """
    from .local.faults import run
    sys.exit(run(data, only=only, echo=click.echo))


@main.command()
@click.argument("service", type=click.Choice(["registration", "guidance", "supervision",
                                              "notification", "audit"]))
@click.argument("projection", required=False)
@_data_option
def rebuild(service: str, projection: str | None, data: Path) -> None:
    """Rebuild a service's read model(s) from the streams into new tables, with progress,
    and switch over when caught up; no notification is sent again.

    Without PROJECTION, every projection of the service is rebuilt. The service must be
    running (it builds and switches; this command asks and watches).
    """
    from .local.rebuild import run as run_rebuild
    sys.exit(run_rebuild(service, projection, data))


@main.command()
@click.option("--office", default="jaksel", show_default=True)
@click.option("--clients", default=200, show_default=True, help="clients to register")
@click.option("--seed", default=None, type=int, help="for a repeatable office")
@_data_option
def demo(office: str, clients: int, seed: int | None, data: Path) -> None:
    """Fill a running system, through the public HTTP APIs only, with a realistic office:
    clients in every program and stage, litmas, TPP decisions, sessions, visits, missed
    reports, violations and closures."""
    from .local.demo import run as run_demo
    sys.exit(run_demo(office=office, clients=clients, seed=seed, data=data))


@bench.command("audit")
@click.option("--events", default=1_000_000, show_default=True, help="events in the store")
@click.option("--case-events", default=200, show_default=True,
              help="events of the case whose history is read")
def bench_audit(events: int, case_events: int) -> None:
    """History of one case among many stored events: p50/p99 against raw reads."""
    from .bench.audit import run
    run(events=events, case_events=case_events)


@main.group()
def privacy() -> None:
    """Personal data under UU 27/2022: master keys and sealing existing events."""


@privacy.command("new-key")
@click.option("--kid", default=None, help="the key's id (default: today's date)")
def privacy_new_key(kid: str | None) -> None:
    """Print a new master key as BAPAS_PRIVACY_MASTER_KEYS wants it (kid=base64). Put it
    first to rotate: the keys after it still unwrap the data keys they wrapped."""
    import base64
    import secrets
    from datetime import date

    click.echo(f"{kid or date.today().strftime('%Y%m%d')}="
               f"{base64.b64encode(secrets.token_bytes(32)).decode()}")


@privacy.command("seal-existing")
@_data_option
@click.option("--backup", type=click.Path(path_type=Path), required=True,
              help="where the streams' messages are written before they are rewritten")
@click.option("--restore", "restore_from", type=click.Path(path_type=Path, exists=True),
              default=None, help="publish a backup's messages back instead")
def privacy_seal_existing(data: Path, backup: Path, restore_from: Path | None) -> None:
    """Seal the personal fields of events written before sealing (one-off, services
    stopped): each case stream is backed up, rewritten with the same events sealed and
    their chains recomputed, and a manifest ties each old hash to its new one. NIK index
    cases named by an earlier version's unkeyed digest are renamed by the keyed one
    (BAPAS_PRIVACY_INDEX_KEY)."""
    from .local.sealing import run as run_sealing
    sys.exit(run_sealing(data, backup, restore_from=restore_from, echo=click.echo))


@privacy.command("rewrap")
@_data_option
def privacy_rewrap(data: Path) -> None:
    """Wrap every live data key with the current (first) master key, so that an older
    master key can then be retired from BAPAS_PRIVACY_MASTER_KEYS."""
    from .local.sealing import run as run_sealing
    sys.exit(run_sealing(data, rewrap=True, echo=click.echo))
