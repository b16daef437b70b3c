"""The core is handed its data: the modules that sample, score, decompose, steer, train, evaluate and measure
geometry never import the toy world (only the entry points that pick it by default may)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CORE = (
    "data", "sources", "archive", "inputs", "sampling", "scoring", "engine", "losses", "decomposition", "steering",
    "distill", "evaluation", "geometry", "geometry_batch", "inspection", "occlusion", "topk", "results", "images",
    "grounding", "decoding", "eta_sample", "answers", "settings", "run_summary", "verdict", "stats", "modes", "child",
    "home",
)  # fmt: skip


def test_core_modules_do_not_import_the_toy_world():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module('vlod_core.' + name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('vlod_core.toy')))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_public_api_resolves_every_name_it_states():
    import vlod_core

    for name in vlod_core.__all__:
        assert getattr(vlod_core, name) is not None, name
    assert vlod_core.build_config is vlod_core.settings.build
