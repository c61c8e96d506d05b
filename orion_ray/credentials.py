"""``~/.orion/credentials``: the local API URL and admin key (JSON, mode 0600)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from .config import orion_home


def credentials_path() -> Path:
    return orion_home() / "credentials"


def read_credentials() -> dict:
    """The stored ``{"url", "api_key"}``, or ``{}`` when there is no file."""
    try:
        return json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return {}


def write_credentials(url: str, api_key: str) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "api_key": api_key}, f)
    os.chmod(path, 0o600)
    return path


def resolve(url: Optional[str] = None, api_key: Optional[str] = None) -> tuple[str, Optional[str]]:
    """Explicit values, else ``ORION_URL``/``ORION_API_KEY``, else the credentials file."""
    creds = read_credentials()
    url = url or os.environ.get("ORION_URL") or creds.get("url") or "http://127.0.0.1:8000"
    api_key = api_key or os.environ.get("ORION_API_KEY") or creds.get("api_key")
    return url.rstrip("/"), api_key
