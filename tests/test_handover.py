"""What the paper check hands its worker processes comes back the same: the data (rows, images, the training
source) and every run's configuration, through files and JSON, without pickles."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vlod_core.data import DataSplit, Row, StoredImage, TrainingData
from vlod_core.experiments import FULL, QUICK, handover
from vlod_core.experiments.runner import Task
from vlod_core.toy.source import in_world


def _same_rows(ours: list[Row], theirs: list[Row]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        for name in ("question", "answer", "split", "category", "label", "group"):
            assert getattr(a, name) == getattr(b, name), name
        left, right = a.load_image(), b.load_image()
        assert left.mode == right.mode and np.array_equal(np.asarray(left), np.asarray(right))


@pytest.mark.parametrize("world", ["default", "reasoning"])
def test_a_toy_worlds_data_comes_back_with_the_same_rows_and_the_same_draws(tmp_path, world):
    from vlod_core.toy.source import toy_data

    data = toy_data(12, show_rows=3, world_name=world)
    handover.write_data(data, tmp_path)
    back = handover.read_data(tmp_path)
    _same_rows(data.eval_rows, back.eval_rows)
    _same_rows(data.show_rows, back.show_rows)
    assert back.description == data.description and back.seen_in_training == data.seen_in_training
    for step, seed in ((0, 0), (7, 2)):  # fresh draws: the recipe makes the same source again
        _same_rows(data.train.prompts(step, 4, seed), back.train.prompts(step, 4, seed))


def test_a_users_rows_come_back_with_their_images_and_the_same_order_of_draws(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 30, 40)).save(png, format="PNG")
    on_disk = tmp_path / "photo.png"
    on_disk.write_bytes(png.getvalue())
    drawn = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8))
    rows = [
        Row(drawn, "what is it ?", "noise", split="train", label="drawn", group="g1"),
        Row(StoredImage(png.getvalue(), "upload.png"), "what colour ?", "red", category="colour", label="bytes"),
        Row(StoredImage(on_disk, "photo.png"), "what colour ?", None, label="file"),
        Row(drawn, "again ?", "noise", label="the same image twice"),
    ]
    split = DataSplit(train=rows[:3], eval=rows[2:], seen_in_training=False, how="by hand")
    data = TrainingData.from_split(split, "mine", show=1)
    folder = tmp_path / "handed"
    handover.write_data(data, folder)
    back = handover.read_data(folder)
    _same_rows(data.eval_rows, back.eval_rows)
    _same_rows(data.train.rows, back.train.rows)
    _same_rows(data.train.prompts(5, 2, 1), back.train.prompts(5, 2, 1))
    assert back.description == data.description
    assert len(list((folder / handover.IMAGES).iterdir())) == 2  # one PNG for the drawn image, one file of bytes


def test_a_source_without_a_recipe_is_refused_and_a_recipe_outside_vlod_is_not_followed(tmp_path):
    class Endless:
        def prompts(self, step, count, seed):
            return []

    with pytest.raises(TypeError, match="recipe"):
        handover.write_data(TrainingData(Endless(), []), tmp_path / "a")

    class Foreign(Endless):
        def recipe(self):
            return "os.system", {}

    handover.write_data(TrainingData(Foreign(), []), tmp_path / "b")
    with pytest.raises(ValueError, match="vlod's own"):
        handover.read_data(tmp_path / "b")


@pytest.mark.parametrize("plan", [QUICK, FULL, in_world(QUICK, "reasoning"), in_world(FULL, "reasoning")])
def test_every_run_of_the_plans_comes_back_as_the_same_configuration(plan):
    import json

    for arm in plan.arms():
        task = Task(arm.config(plan, seed=2), arm.geometry_rows(plan), plan.geometry_bins)
        assert handover.task_from_json(json.loads(json.dumps(handover.task_to_json(task)))) == task, arm.name
