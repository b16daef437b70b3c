"""vlod: decomposed on-policy distillation of vision-language models, as a library.

What a user imports, in one place (each name is loaded from its module on first use, so `import vlod_core` and
the command line start without torch):

    from vlod_core import PairSpec, load_pair               # a teacher/student pair: folders or Hub ids
    # the embedded toy pair: load_pair(spec, vlod_core.toy.folders(spec)), located by the entry point
    from vlod_core import DistillConfig, SteeringConfig      # a run and its update rule (`RULES`, `REGISTRY`)
    from vlod_core.distill import distill                    # the on-policy loop -> DistillResult(student, card)
    from vlod_core import load_data, TrainingData            # your rows: image folders, JSONL, Parquet, Hub ids
    from vlod_core import inspect, batch_geometry, evaluate  # one answer's decomposition; the angles; metrics
    from vlod_core import summarise, build_config            # a run card in a few numbers; settings -> a config

`vlod_core.settings` says how every setting is declared; METHOD.md (beside the project) holds the formulas.
"""

from __future__ import annotations

import importlib

_API = (
    ("PairSpec", "pair"),
    ("ModelPair", "pair"),
    ("load_pair", "pair"),
    ("DistillConfig", "distill"),
    ("DistillResult", "distill"),
    ("SteeringConfig", "steering"),
    ("RULES", "steering"),
    ("REGISTRY", "steering"),
    ("SamplingConfig", "sampling"),
    ("GeometryConfig", "geometry_batch"),
    ("batch_geometry", "geometry_batch"),
    ("inspect", "inspection"),
    ("EvalSet", "evaluation"),
    ("evaluate", "evaluation"),
    ("load_data", "sources"),
    ("TrainingData", "data"),
    ("Row", "data"),
    ("RunCard", "results"),
    ("RunSummary", "run_summary"),
    ("summarise", "run_summary"),
    ("final_answer", "answers"),
    ("build_config", "settings"),
)
__all__ = tuple(name for name, _ in _API)


def __getattr__(name: str):
    module = next((module for exported, module in _API if exported == name), None)
    if module is None:
        raise AttributeError(f"module 'vlod_core' has no attribute {name!r}")
    attribute = "build" if name == "build_config" else name
    return getattr(importlib.import_module(f"vlod_core.{module}"), attribute)
