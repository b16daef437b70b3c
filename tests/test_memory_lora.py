"""The memory estimate from configs alone, its refusal, and LoRA / gradient checkpointing on a private student.

The estimate's parameter counts must equal the loaded models' (they come from meta-device instances of the
same configs); LoRA must train adapters only and leave the shared student bit-identical, down to its
`Parameter` objects and their `requires_grad`.
"""

from __future__ import annotations

import copy

import pytest
import torch
from family_pairs import family_pairs_fixture  # noqa: F401 - the session fixture `family_pairs`

from vlod_core.lora import check_lora_rank, enable_gradient_checkpointing, lora_student, target_layers
from vlod_core.memory import GIB, check_fits, check_pair_memory, estimate_training_memory
from vlod_core.pair import PairError, probe_image

pytestmark = pytest.mark.slow  # builds tiny real-family pairs

LENGTHS = (64, 16)


def _encoded(pair) -> dict:
    processor = pair.processor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what color is it ?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return dict(processor(text=[text], images=[[probe_image()]], return_tensors="pt"))


def _next_token_loss(model, encoded: dict) -> torch.Tensor:
    logits = model(**encoded, use_cache=False).logits[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, encoded["input_ids"][0, 1:])


# --- memory -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ("llava", "qwen2_5_vl", "smolvlm", "gemma3"))
def test_estimate_counts_every_parameter_of_the_loaded_models(family_pairs, family):
    pair = family_pairs.pair(family)
    estimate = estimate_training_memory(pair.teacher.config, pair.student.config, torch.float32, 2, LENGTHS)
    teacher_params = sum(p.numel() for p in pair.teacher.parameters())
    student_params = sum(p.numel() for p in pair.student.parameters())
    assert estimate.teacher_weights == 4 * teacher_params
    assert estimate.student_weights == estimate.student_copy == 4 * student_params
    assert estimate.trainable_parameters == student_params
    assert estimate.gradients == 4 * student_params and estimate.optimizer == 8 * student_params
    assert estimate.activations > 0


def test_estimate_shrinks_with_each_way_out(family_pairs):
    pair = family_pairs.pair("qwen2_5_vl")
    t, s = pair.teacher.config, pair.student.config
    full = estimate_training_memory(t, s, torch.float32, 4, LENGTHS)
    bf16 = estimate_training_memory(t, s, torch.bfloat16, 4, LENGTHS)
    lora = estimate_training_memory(t, s, torch.float32, 4, LENGTHS, lora_rank=2)
    assert bf16.teacher_weights * 2 == full.teacher_weights and bf16.total < full.total
    assert lora.total < full.total
    # Checkpointing keeps each layer's input and one layer's activations: less only from two layers on.
    deep = estimate_training_memory(t, t, torch.float32, 4, LENGTHS)
    checkpointed = estimate_training_memory(t, t, torch.float32, 4, LENGTHS, gradient_checkpointing=True)
    assert t.get_text_config().num_hidden_layers == 2 and checkpointed.activations < deep.activations
    # The LoRA estimate counts exactly the adapters peft makes.
    adapters = sum(p.numel() for p in lora_student(pair.student, 2).parameters() if p.requires_grad)
    assert lora.trainable_parameters == adapters and lora.gradients == 4 * adapters


def test_not_enough_memory_is_refused_with_the_numbers_and_the_ways_out(family_pairs):
    spec = family_pairs.spec("qwen2_5_vl")
    estimate = check_pair_memory(spec, batch=4, lengths=LENGTHS, free=64 * GIB)  # fits: the estimate comes back
    with pytest.raises(PairError) as caught:
        check_pair_memory(spec, batch=4, lengths=LENGTHS, free=estimate.total - 1)
    message = str(caught.value)
    assert f"{estimate.total / GIB:.1f} GiB" in message and "free on cpu" in message
    for way in ("--lora", "--gradient-checkpointing", "--dtype bfloat16"):
        assert way in message
    with pytest.raises(PairError) as caught:
        check_fits(estimate, torch.device("cpu"), free=0, lora=True)
    assert "--lora" not in str(caught.value)  # already training adapters: not offered again


def test_memory_check_reads_configs_without_loading_weights(family_pairs, tmp_path):
    import shutil

    teacher, student = family_pairs.folders("llava")
    for source in (teacher, student):  # configs only: no weights, no processor
        (tmp_path / source.name).mkdir()
        shutil.copy(source / "config.json", tmp_path / source.name / "config.json")
        (tmp_path / source.name / "model.safetensors").write_bytes(b"")
    spec = family_pairs.spec("llava")
    spec = type(spec)(teacher=str(tmp_path / "teacher"), student=str(tmp_path / "student"), device="cpu")
    assert check_pair_memory(spec, batch=1, lengths=LENGTHS, free=64 * GIB).total > 0


# --- LoRA ---------------------------------------------------------------------------------------------------------


def test_lora_trains_adapters_only_and_the_shared_student_stays_bit_identical(family_pairs):
    pair = family_pairs.pair("qwen2_5_vl")
    shared = pair.student
    parameters = dict(shared.named_parameters())
    before = {n: (p, p.requires_grad, p.detach().clone()) for n, p in parameters.items()}
    student = lora_student(shared, rank=4)
    trainable = {n: p for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = {n: p for n, p in student.named_parameters() if not p.requires_grad}
    # The copy's frozen weights are the shared storage, not a second copy of the model.
    shared_pointers = {p.data_ptr() for p in parameters.values()}
    assert {p.data_ptr() for p in base.values()} <= shared_pointers
    adapters_before = {n: p.detach().clone() for n, p in trainable.items()}
    optimiser = torch.optim.AdamW(trainable.values(), lr=1e-2)
    encoded = _encoded(pair)
    student.train()
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        loss = _next_token_loss(student, encoded)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]  # the adapters learn
    assert any(not torch.equal(adapters_before[n], p) for n, p in trainable.items())
    for name, parameter in shared.named_parameters():
        original, requires_grad, values = before[name]
        assert parameter is original and parameter.requires_grad == requires_grad and parameter.grad is None
        assert torch.equal(parameter, values), name


def test_lora_rank_zero_and_too_large_are_refused(family_pairs):
    student = family_pairs.pair("llava").student
    with pytest.raises(ValueError, match="lora rank must be a whole number >= 1, got 0"):
        lora_student(student, 0)
    smallest = min(min(m.in_features, m.out_features) for _, m in target_layers(student))
    with pytest.raises(ValueError, match=f"larger than the smallest targeted layer .*at most {smallest}$"):
        check_lora_rank(student, smallest + 1)
    check_lora_rank(student, smallest)  # the largest usable rank is accepted


def test_gradient_checkpointing_gives_the_same_gradients(family_pairs):
    pair = family_pairs.pair("llava")
    encoded = _encoded(pair)
    gradients = []
    for checkpointing in (False, True):
        private = copy.deepcopy(pair.student).train()
        if checkpointing:
            enable_gradient_checkpointing(private)
            assert private.is_activation_checkpointing
        _next_token_loss(private, encoded).backward()
        gradients.append(torch.cat([p.grad.flatten() for p in private.parameters() if p.grad is not None]))
    torch.testing.assert_close(gradients[0], gradients[1], atol=1e-6, rtol=1e-5)
    assert not pair.student.is_activation_checkpointing  # only the private copies changed
