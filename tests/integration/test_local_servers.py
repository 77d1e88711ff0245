"""The embedded servers of the local platform, restarted the way its supervisor restarts them."""
from __future__ import annotations

import os
import signal

from shared.local.servers import PostgresServer, _wait


def test_a_killed_postgres_starts_again_after_its_parent_folders_were_locked(tmp_path):
    """As root, PostgreSQL runs as its own system user, which must traverse every folder above
    its data. Something else may take that away while it runs (a second pytest session chmods
    pytest-of-root back to 0700); a restart after a crash must give it back."""
    pg = PostgresServer(tmp_path / "deep" / "pg").start()
    try:
        os.kill(pg.proc.pid, signal.SIGKILL)
        pg.proc.wait(timeout=10)
        (tmp_path / "deep").chmod(0o700)
        tmp_path.chmod(0o700)
        pg.spawn()
        _wait(pg.healthy, 60, "postgres", pg.proc, pg.log)  # raises with the log's tail
    finally:
        pg.stop()
