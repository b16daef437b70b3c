"""The toy world's data, tokenizer and processor: deterministic, a real prior, and a faithful fast path."""

from __future__ import annotations

import json

import torch

from vlod_core.toy import world
from vlod_core.toy.models import build_processor, pixel_values
from vlod_core.toy.train import PromptCache, make_batch


def test_examples_are_deterministic_and_seed_dependent():
    assert world.sample_examples(20, seed=3) == world.sample_examples(20, seed=3)
    assert world.sample_examples(20, seed=3) != world.sample_examples(20, seed=4)


def test_question_alone_gets_about_half_right():
    prior = world.language_prior_accuracy(world.sample_examples(2000, 1), world.sample_examples(8000, 2))
    assert 0.4 <= prior <= 0.6


def test_leftmost_is_unique_and_answers_match_the_scene():
    for ex in world.sample_examples(300, seed=5):
        cols = sorted(o.col for o in ex.objects)
        assert len(cols) == 1 or cols[0] < cols[1]
        if ex.question_type == "count":
            assert ex.answer.split()[0] == world.COUNT_WORDS[len(ex.objects) - 1]
        if ex.question_type == "colour":
            shape = ex.question.split()[-2]
            assert ex.answer == f"it is {next(o.colour for o in ex.objects if o.shape == shape)}"


def test_fast_pixel_path_equals_the_processor():
    processor = build_processor()
    images = [ex.image() for ex in world.sample_examples(4, seed=0)]
    expected = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixel_values(images), expected)


def test_training_batches_use_the_same_prompt_ids_as_the_processor():
    processor = build_processor()
    ex = world.sample_examples(1, seed=0)[0]
    batch = make_batch(PromptCache(processor), [ex], [True])
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ex.question}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = processor(text=[text], images=[ex.image()], return_tensors="pt")["input_ids"][0].tolist()
    assert batch["input_ids"][0, : len(ids)].tolist() == ids


def test_card_records_accuracies_and_versions(vlod_home):
    card = json.loads((vlod_home / "toy" / "card.json").read_text())
    assert {"seed", "build_seconds", "build_cpu_seconds", "versions", "teacher", "student", "student_blind"} <= card.keys()
    for name in ("teacher", "student", "student_blind"):
        assert 0.0 <= card[name]["accuracy_image"] <= 1.0
        assert 0.0 <= card[name]["accuracy_no_image"] <= 1.0
    assert card["versions"]["torch"] == torch.__version__
    assert torch.get_num_threads() == 1  # the build's fixed thread count was put back (conftest sets one)


def test_student_starts_from_the_teachers_vision_tower(vlod_home):
    """The build's student borrows the teacher's trained tower and keeps it (frozen) through its training."""
    from transformers import AutoModelForImageTextToText

    toy = vlod_home / "toy"
    teacher = AutoModelForImageTextToText.from_pretrained(toy / "teacher").model.vision_tower.state_dict()
    student = AutoModelForImageTextToText.from_pretrained(toy / "student").model.vision_tower.state_dict()
    assert teacher.keys() == student.keys()
    for key in teacher:
        torch.testing.assert_close(student[key], teacher[key])


def test_frozen_tower_is_not_trained_and_gradients_come_back(toy_pair):
    import copy

    from vlod_core.toy.train import TrainConfig, train

    student = copy.deepcopy(toy_pair.student)
    before = {k: v.clone() for k, v in student.model.vision_tower.state_dict().items()}
    train(student, toy_pair.processor, TrainConfig(steps=2, warmup=1, train_vision=False))
    for key, value in student.model.vision_tower.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert all(p.requires_grad for p in student.parameters())
