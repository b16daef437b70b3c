"""Where vlod keeps what it builds and measures: `$VLOD_HOME`, else `~/.cache/vlod` (the toy pairs, the paper
check's reports). One place, so the toy build and the experiments agree on it without importing each other."""

from __future__ import annotations

import os
from pathlib import Path


def vlod_home() -> Path:
    return Path(os.environ.get("VLOD_HOME", "~/.cache/vlod")).expanduser()
