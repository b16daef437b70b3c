"""Whether the Hugging Face Hub can be reached at all, answered in seconds instead of minutes of retries."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the Hub endpoint opens (or offline mode is on: the cache answers)."""
    if offline():
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True
