"""A JSON call to a service running as a process, as an outside client makes it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(method: str, url: str, payload: dict | None = None, *,
         token: str) -> tuple[int, Any]:
    """(status, decoded JSON body); an error status is returned, not raised."""
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(payload).encode() if payload else None,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
