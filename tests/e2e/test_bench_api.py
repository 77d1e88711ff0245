"""`bapas bench api` and `bapas bench wave` against a real system, briefly.

The platform runs as in test_platform.py (its own session, data folder and service ports;
everything it started is killed at the end). The benchmarks are run as a user runs them and
their output is read: every route and every target is there, and the registrations they
say they made are the ones the registration service holds. No timing is asserted: this is
a test of the benchmark, not of the machine.
"""

from __future__ import annotations

import re
import subprocess

import psutil
import pytest

from tests.e2e.test_demo import Reader
from tests.e2e.test_platform import (SERVICES, START_TIMEOUT, Platform, describe, environment,
                                     free_ports, run_cli, survivors)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BENCH_TIMEOUT = 240.0
ROUTES = ("GET /v1/ping", "GET /v1/clients/{id}", "GET /v1/cases/{id}",
          "GET /v1/supervision/{id}", "GET /v1/officers/{id}/worklist", "GET /v1/compliance",
          "POST /v1/clients", "POST /v1/supervision/{id}/visits",
          "POST /v1/cases/{id}/tpp-decisions", "POST /v1/cases/{id}/stage",
          "POST /v1/cases/{id}/programs")
VERDICT = r"\s+(met|below)\s*$"


def accepted(out: str) -> int:
    found = re.search(r"^registrations accepted in this run: ([\d,]+)", out, re.M)
    assert found, out
    return int(found.group(1).replace(",", ""))


def bench(*args: str, env: dict[str, str]) -> str:
    try:
        done = run_cli("bench", *args, env=env, timeout=BENCH_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bapas bench {' '.join(args)} did not finish: {exc.stdout}\n{exc.stderr}")
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    return done.stdout


def test_bench_api_and_wave_report_every_route_target_and_registration(tmp_path):
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    data = tmp_path / "data"
    up = Platform(data, ports)
    try:
        up.start()
        up.read_until(lambda line: line.startswith("token"), START_TIMEOUT)
        up.remember_descendants()
        env = environment({})  # the benchmarks find the system in <data>/run.json

        out = bench("api", "--data", str(data), "--callers", "8", "--registrations", "60",
                    "--seconds", "4", "--peer", env=env)
        up.remember_descendants()
        assert "the driver shares the machine" in out and "sync_interval: always" in out
        day = out.split("an office's day", 1)[1]
        for route in ROUTES:
            assert re.search(rf"^{re.escape(route)}\s+\d", day, re.M), (route, day)
        for target in (r"registrations/s, 8 callers .*≥ 0\.25 × raw",
                       r"GET /v1/clients/\{id\} p50 .*≤ 3\.0 × raw",
                       r"GET /v1/cases/\{id\} p99 .*≤ 5\.0 × raw",
                       r"registrations/s, 8 callers, ours over HTTP .*eventsourcing peer"
                       r".*≥ 1\.5 × raw"):
            assert re.search(target + VERDICT, out, re.M), (target, out)
        made = accepted(out)

        out = bench("wave", "--data", str(data), "--callers", "8", "--clients", "200", env=env)
        up.remember_descendants()
        assert re.search(r"^all projections caught up, after the last registration .*"
                         r"≤ 120 s" + VERDICT, out, re.M), out
        assert re.search(r"^all projections caught up \(stretch\) .*≤ 60 s" + VERDICT, out,
                         re.M), out
        assert accepted(out) == 200
        made += 200

        # the wave waited for every projection: the clients list holds all of them
        clients = Reader(data, {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
                         ).clients()
        assert len(clients) == made, (len(clients), made)
    finally:
        up.kill()
    left = survivors(up.seen)
    assert not left, describe(left)


def test_with_no_system_running_the_bench_starts_one_and_leaves_nothing(tmp_path):
    env = environment(dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)))
    done = run_cli("bench", "wave", "--data", str(tmp_path / "nothing-here"), "--callers", "4",
                   "--clients", "20", env=env, timeout=BENCH_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started by the bench in" in done.stdout, done.stdout
    assert accepted(done.stdout) == 20
    folder = re.search(r"started by the bench in (\S+),", done.stdout).group(1)
    left = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or ())
        if folder in cmd:
            left.append(p)
    left = survivors(left, timeout=15)
    assert not left, describe(left)
