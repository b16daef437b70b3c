"""Shared fixtures: everything seeded, and one small toy pair built once per test session.

The pair is the real toy build (same classes, processor and code path as `vlod toy build`) with far fewer
training steps, written under a temporary VLOD_HOME so the app and CLI find it as the embedded default.
Session fixtures are read-only: a test that trains takes a copy.
"""

from __future__ import annotations

import os

# One intra-op thread per process: the suite starts subprocesses (CLI, accelerate, the Streamlit server) on a
# 2-core machine, and two processes that each spin two OpenMP threads slow each other down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import numpy as np
import pytest
import torch

# A short build on clean drawings (the scene tests need a teacher that reads colours);
# `tests/test_toy_drawings.py` builds the default, varied pair for its own checks.
SMALL_BUILD = dict(
    tower_steps=100,
    teacher_steps=300,
    student_text_steps=40,
    student_image_steps=20,
    eval_examples=64,
    varied_fraction=0.0,
)


@pytest.fixture(autouse=True)
def seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def vlod_home(tmp_path_factory):
    from vlod_core.toy.build import ToyBuildConfig, build_toy_pair

    home = tmp_path_factory.mktemp("vlod_home")
    os.environ["VLOD_HOME"] = str(home)
    build_toy_pair(home / "toy", ToyBuildConfig(**SMALL_BUILD))
    return home


# The reasoning world's pair, as short a build as still writes well-formed chains in both styles (its teacher does
# not read the image well yet: the app tests need chains and their parsing, not the world's accuracy targets,
# which `tests/test_toy_reasoning_build.py` asserts on the full build). About a minute and a half on 2 busy cores.
SMALL_REASONING_BUILD = dict(
    tower_steps=100,
    teacher_steps=300,
    student_text_steps=150,
    student_image_steps=40,
    eval_examples=16,
    geometry_batch=8,
)


@pytest.fixture(scope="session")
def reasoning_home(vlod_home):
    """The small reasoning pair where the app and CLI look for it (`$VLOD_HOME/toy-reasoning`), once a session."""
    from vlod_core.toy.reasoning_build import ReasoningBuildConfig, build_reasoning_pair

    build_reasoning_pair(vlod_home / "toy-reasoning", ReasoningBuildConfig(**SMALL_REASONING_BUILD))
    return vlod_home


@pytest.fixture(scope="session")
def toy_pair(vlod_home):
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    return load_pair(PairSpec(), toy.folders(PairSpec()))


@pytest.fixture(scope="session")
def examples():
    from vlod_core.toy import world

    return world.sample_examples(6, seed=7)


@pytest.fixture
def experiments_home(vlod_home, tmp_path):
    """$VLOD_HOME/experiments, empty for the test (whatever was there is put back afterwards)."""
    home = vlod_home / "experiments"
    kept = tmp_path / "kept"
    if home.exists():
        shutil.move(home, kept)
    yield home
    shutil.rmtree(home, ignore_errors=True)
    if kept.exists():
        shutil.move(kept, home)


@pytest.fixture
def jobs():
    """The server's job registry; every job still going when the test ends is stopped and waited for."""
    from vlod_app.server import job_registry

    registry = job_registry()
    yield registry
    for job_id in list(registry._jobs):
        job = registry.get(job_id)
        if job is not None and not job.done:
            job.stop()
            deadline = time.monotonic() + 120
            while not job.done and time.monotonic() < deadline:
                time.sleep(0.5)
