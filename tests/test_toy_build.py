"""The toy build's stages: the pretrained tower, batches drawn ahead, and the student trained beside the teacher."""

from __future__ import annotations

import os

import pytest
import torch

from vlod_core.toy import world
from vlod_core.toy.models import TEACHER_SIZE, build_model, build_processor
from vlod_core.child import Beside, WorkerDied
from vlod_core.toy.prefetch import prefetched
from vlod_core.toy.tower import TowerConfig, cell_labels, places, pretrain_tower

pytestmark = pytest.mark.slow  # builds toy pairs and starts processes


def test_cell_labels_follow_the_patch_order():
    scene = (world.SceneObject("cross", "blue", 0, 3), world.SceneObject("circle", "red", 2, 1))
    shape, colour = cell_labels([scene])
    assert shape.shape == (1, 16)
    assert shape[0, 3] == 1 + world.SHAPES.index("cross") and colour[0, 3] == 1 + world.COLOURS.index("blue")
    assert shape[0, 9] == 1 + world.SHAPES.index("circle") and colour[0, 9] == 1 + world.COLOURS.index("red")
    assert int((shape > 0).sum()) == 2 and int((colour > 0).sum()) == 2
    assert places()[3].tolist() == [-1.0, 1.0] and places()[9].tolist() == pytest.approx([1 / 3, -1 / 3])


def test_pretrained_tower_reads_every_cell():
    """A short pretraining makes the tower's features name each cell's shape and colour (a probe trained on
    other scenes reads fresh ones); an untrained tower's probe does not."""
    torch.manual_seed(0)
    tower = build_model(TEACHER_SIZE, build_processor()).model.vision_tower
    short = pretrain_tower(tower, TowerConfig(steps=1, lr=1e-9))
    read = pretrain_tower(tower, TowerConfig(steps=150))
    assert read["cells_clean"] >= 0.95 and read["cells_varied"] >= 0.9, read
    assert short["cells_clean"] < 0.8, short


def test_prefetched_keeps_order_and_raises_the_producers_error():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad batch")

    seen = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetched(failing()):
            seen.append(item)  # noqa: PERF402 (the items before the error are the point)
    assert seen == [1]


def test_leaving_a_prefetched_loop_early_stops_the_producer():
    import threading

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    for item in prefetched(endless(), depth=2):
        if item == 3:
            break
    assert not any(t.name == "vlod-prefetch" and t.is_alive() for t in threading.enumerate())
    assert len(made) <= 3 + 1 + 2 + 1  # the items used, the one in hand, the queue, the one waiting to go in


JOBS = "tests.test_toy_build"  # how the worker process imports this file's jobs (the repository root is on its path)


def count_job(payload: dict, channel) -> dict:
    print("a job's own output is not mistaken for a result")
    for i in range(payload["n"]):
        channel.step(i + 1)
    return {"double": payload["n"] * 2, "pid": os.getpid()}


def failing_job(payload: dict, channel) -> None:
    raise ValueError("the student diverged")


def dying_job(payload: dict, channel) -> None:
    import sys

    print("about to stop", file=sys.stderr)
    os._exit(3)


def test_a_job_beside_runs_in_another_process_and_returns_its_value_and_steps(tmp_path):
    job = Beside(f"{JOBS}:count_job", {"n": 5}, tmp_path / "log")
    result = job.result()
    assert result["double"] == 10 and job.steps == 5
    assert result["pid"] != os.getpid()


def test_a_job_beside_that_fails_or_dies_says_so(tmp_path):
    with pytest.raises(RuntimeError, match="the student diverged"):
        Beside(f"{JOBS}:failing_job", {}, tmp_path / "log").result()
    with pytest.raises(WorkerDied, match=r"exit code 3(.|\n)*about to stop"):
        Beside(f"{JOBS}:dying_job", {}, tmp_path / "log2").result()


@pytest.mark.slow
def test_the_student_trained_beside_the_teacher_is_the_student_trained_after_it(vlod_home, tmp_path):
    """The session's small pair was built with the student in a second process; built again in one process
    from the same config, every weight and every figure on the card is the same."""
    import json

    from safetensors.torch import load_file

    from tests.conftest import SMALL_BUILD
    from vlod_core.toy.build import ToyBuildConfig, build_toy_pair

    card = build_toy_pair(tmp_path / "toy", ToyBuildConfig(**SMALL_BUILD, parallel=False))
    parallel = json.loads((vlod_home / "toy" / "card.json").read_text())
    assert parallel["config"]["parallel"] and not card["config"]["parallel"]
    assert sorted(p.name for p in (vlod_home / "toy").iterdir()) == ["card.json", "student", "student_blind", "teacher"]
    for name in ("teacher", "student_blind", "student"):
        assert card[name] == parallel[name], name
        ours = load_file(tmp_path / "toy" / name / "model.safetensors")
        theirs = load_file(vlod_home / "toy" / name / "model.safetensors")
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), (name, key)


def test_when_the_students_process_dies_the_build_trains_it_in_process(tmp_path, monkeypatch, caplog):
    from tests.conftest import SMALL_BUILD
    from vlod_core.toy import build, stages

    class Died:
        steps = 0

        def __init__(self, *args):
            pass

        def result(self, waiting=None):
            raise WorkerDied("the worker process ended without a result (exit code -9)")

        def stop(self):
            pass

    monkeypatch.setattr(stages, "Beside", Died)
    small = dict(SMALL_BUILD, tower_steps=5, teacher_steps=5, eval_examples=8)
    card = build.build_toy_pair(tmp_path / "toy", build.ToyBuildConfig(**small))
    assert {"teacher", "student_blind", "student"} <= card.keys()
    assert (tmp_path / "toy" / "student" / "model.safetensors").is_file()
    assert "training the student here instead" in caplog.text and "exit code -9" in caplog.text


EXITING_DURING_A_BUILD = """
import sys, time
from pathlib import Path
from vlod_app.server import ToyBuilds

build = ToyBuilds().ensure(Path(sys.argv[1]) / "toy")
while build.fraction <= 0.0 and build.running:
    time.sleep(0.05)
print(build.stage, flush=True)
"""


def test_a_server_that_exits_during_a_first_use_build_abandons_it_cleanly(tmp_path):
    """The app's first-use build runs in a daemon thread; a server that exits while it trains used to be cut
    off inside torch (the process aborted, exit code 134). Now the build leaves at its next progress report:
    the process exits 0, no staging folder is left behind and the pair is not marked built."""
    import subprocess
    import sys

    from vlod_core.toy.build import is_built

    done = subprocess.run(
        [sys.executable, "-c", EXITING_DURING_A_BUILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"VLOD_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("training")  # it was abandoned mid-build, not after it
    assert not is_built(tmp_path / "toy")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".toy-build-")]
