"""Five VLM families in their stock Hub layout, and a pair whose processors differ (vlod_core/testing/families.py).

Each pair is built at test time from configs and a small local tokenizer, saved as the Hub ships it, and loaded
through `load_pair`, the function a user's command calls. Without torchvision (not installed here) the stock
Qwen2.5-VL, Qwen3-VL and SmolVLM2 processors cannot be built by `AutoProcessor`; vlod builds the same classes
for images only, and these tests hold that to the stock class's output. Then: the per-token inputs each
family's processor makes reach the model and matter, bad pairs get specific messages, and the core's
`inspect`, `distill` and geometry run on every family.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from family_pairs import ALL_PAIRS, MIXED, VIDEO_PROCESSOR_FAMILIES
from family_pairs import family_pairs_fixture  # noqa: F401 - the session fixture `family_pairs`
from transformers import AutoProcessor

from vlod_core.pair import PairError, PairSpec, load_pair, probe_image
from vlod_core.processors import VideoSettings, image_only_class, is_image_only, load_processor
from vlod_core.toy import world

pytestmark = pytest.mark.slow  # builds six tiny real-family pairs

MODEL_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "smolvlm": "Idefics3ForConditionalGeneration",
    "smolvlm2": "SmolVLMForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
    MIXED: "Idefics3ForConditionalGeneration",
}
PROCESSOR_CLASSES = {
    "llava": "LlavaProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "smolvlm": "Idefics3Processor",
    "smolvlm2": "SmolVLMProcessor",
    "gemma3": "Gemma3Processor",
    MIXED: "Idefics3Processor",
}
QUESTION = "what color is the circle ?"


def _messages(with_image: bool, question: str = QUESTION) -> list[dict]:
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def _encode(processor, images, questions=(QUESTION,)) -> dict:
    """The processor's own encoding of chat-formatted prompts, one image per prompt (a list per prompt)."""
    texts = [
        processor.apply_chat_template(_messages(True, q), add_generation_prompt=True, tokenize=False) for q in questions
    ]
    encoded = processor(
        text=texts, images=[[im] for im in images], return_tensors="pt", padding=True, padding_side="right"
    )
    return dict(encoded)


# --- the folders and loading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ALL_PAIRS)
def test_folders_are_laid_out_as_the_hub_ships_them(family_pairs, family):
    for folder in family_pairs.folders(family):
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "generation_config.json", "model.safetensors"} <= names
        assert {"tokenizer.json", "tokenizer_config.json"} <= names
        assert names & {"chat_template.jinja", "chat_template.json"}
        assert names & {"processor_config.json", "preprocessor_config.json"}
        assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))]
        if family in ("qwen3_vl", "smolvlm2"):
            video = json.loads((folder / "video_preprocessor_config.json").read_text())
            assert video["processor_class"] == PROCESSOR_CLASSES[family]


@pytest.mark.parametrize("family", ALL_PAIRS)
def test_pair_loads_with_its_own_family_classes(family_pairs, family):
    pair = family_pairs.pair(family)
    assert type(pair.teacher).__name__ == type(pair.student).__name__ == MODEL_CLASSES[family]
    assert type(pair.processor).__name__ == PROCESSOR_CLASSES[family]
    assert pair.tokenizer.get_vocab() == pair.teacher_inputs_processor.tokenizer.get_vocab()
    t_hidden = pair.teacher.config.get_text_config().hidden_size
    assert t_hidden > pair.student.config.get_text_config().hidden_size  # a real teacher/student pair
    assert not any(p.requires_grad for p in pair.teacher.parameters())
    assert (pair.teacher_processor is not None) == (family == MIXED)
    image_only = [note for note in pair.notes if "built for images only" in note]
    assert len(image_only) == (2 if family in VIDEO_PROCESSOR_FAMILIES else 0)


def test_qwen_pair_with_different_embedding_sizes_compares_the_shared_tokens(family_pairs):
    pair = family_pairs.pair("qwen2_5_vl")
    t_rows = pair.teacher.get_output_embeddings().weight.shape[0]
    s_rows = pair.student.get_output_embeddings().weight.shape[0]
    assert t_rows > s_rows == len(pair.tokenizer) == pair.vocab_size  # padded rows, like Qwen2.5-VL-7B vs 3B
    assert any("output layers differ in size" in note for note in pair.notes)


def test_mixed_pair_keeps_the_teachers_processor(family_pairs):
    pair = family_pairs.pair(MIXED)
    teacher, student = (_encode(p, [probe_image()]) for p in (pair.teacher_processor, pair.processor))
    assert teacher["pixel_values"].shape[-1] == 48 and student["pixel_values"].shape[-1] == 32
    image_id = pair.tokenizer.convert_tokens_to_ids("<image>")
    assert (teacher["input_ids"] == image_id).sum() == 5 * 9 and (student["input_ids"] == image_id).sum() == 5 * 4
    assert any("encode images differently" in note and "pixel_values" in note for note in pair.notes)


# --- stock processors without torchvision ---------------------------------------------------------------------


def test_torchvision_is_really_absent():
    """The fallback tests below mean something only where torchvision cannot be imported."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or present but broken (the CUDA wheels on a CPU torch)
        return
    pytest.skip("torchvision imports here; the image-only fallback is not exercised")


@pytest.mark.parametrize("family", VIDEO_PROCESSOR_FAMILIES)
def test_stock_processor_needs_torchvision_and_loads_for_images_only(family_pairs, family, caplog):
    _, student = family_pairs.folders(family)
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ImportError, match="Torchvision"):
            AutoProcessor.from_pretrained(student)
    with caplog.at_level(logging.WARNING, logger="vlod_core.processors"):
        processor = load_processor(str(student))
    assert type(processor).__name__ == PROCESSOR_CLASSES[family] and is_image_only(processor)
    assert isinstance(processor, type(processor).__mro__[1])  # the stock class, with all its code paths
    lines = [r.getMessage() for r in caplog.records if r.name == "vlod_core.processors"]
    assert len(lines) == 1 and "built for images only" in lines[0] and "torchvision" in lines[0]


@pytest.fixture
def stock_with_stand_in_video(monkeypatch):
    """`AutoProcessor` building the stock class for real, with only its video processor stood in for.

    The class's own loading, `__init__`, chat template and `__call__` all run; nothing of the image-only
    fallback is used. (The stand-in carries the two settings SmolVLM reads while rendering a chat.)
    """
    from transformers.models.auto.video_processing_auto import AutoVideoProcessor
    from transformers.processing_utils import ProcessorMixin

    stand_in = VideoSettings(num_frames=64, fps=1)
    check = ProcessorMixin.check_argument_for_proper_class
    monkeypatch.setattr(AutoVideoProcessor, "from_pretrained", classmethod(lambda cls, *a, **k: stand_in))
    monkeypatch.setattr(
        ProcessorMixin,
        "check_argument_for_proper_class",
        lambda self, name, arg: None if arg is stand_in else check(self, name, arg),
    )

    def load(path):
        processor = AutoProcessor.from_pretrained(path)
        assert processor.video_processor is stand_in and not is_image_only(processor)
        return processor

    return load


@pytest.mark.parametrize("family", VIDEO_PROCESSOR_FAMILIES)
def test_image_only_processor_encodes_exactly_as_the_stock_one(family_pairs, family, stock_with_stand_in_video):
    _, student = family_pairs.folders(family)
    image_only = load_processor(str(student))
    stock = stock_with_stand_in_video(student)
    images = [probe_image(), probe_image().resize((40, 64))]  # two sizes: different token counts, padding
    questions = (QUESTION, "how many shapes ?")
    for with_image in (True, False):
        rendered = [
            p.apply_chat_template(_messages(with_image), add_generation_prompt=True, tokenize=False)
            for p in (stock, image_only)
        ]
        assert rendered[0] == rendered[1]
    expected, got = _encode(stock, images, questions), _encode(image_only, images, questions)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert len(set(expected["attention_mask"].sum(-1).tolist())) == 2  # the rows really differ in length


def test_image_token_counts_are_the_families_documented_ones(family_pairs):
    """Qwen: one token per 2x2 merged 14- (2.5-VL) or 16-pixel (3-VL) patches; SmolVLM: image_seq_len per crop."""
    for family, side, patch in (("qwen2_5_vl", 112, 14), ("qwen3_vl", 128, 16)):
        processor = family_pairs.pair(family).processor
        encoded = _encode(processor, [probe_image().resize((side, side))])
        grid = encoded["image_grid_thw"][0].tolist()
        assert grid == [1, side // patch, side // patch]
        image_tokens = int((encoded["input_ids"] == processor.image_token_id).sum())
        assert image_tokens == (side // patch) ** 2 // 4
        assert torch.equal(encoded["mm_token_type_ids"].bool(), encoded["input_ids"] == processor.image_token_id)
    processor = family_pairs.pair("smolvlm2").processor
    encoded = _encode(processor, [probe_image().resize((64, 64))])  # 2x2 crops of 32 pixels plus the whole image
    assert tuple(encoded["pixel_values"].shape) == (1, 5, 3, 32, 32)
    assert int((encoded["input_ids"] == processor.image_token_id).sum()) == 5 * processor.image_seq_len
    tokens = processor.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert {"<row_1_col_1>", "<row_2_col_2>", "<global-img>"} <= set(tokens)


@pytest.mark.parametrize("family", ("qwen2_5_vl", "smolvlm2"))
def test_image_only_processor_saves_as_the_stock_one_and_loads_back(family_pairs, family, tmp_path):
    pair = family_pairs.pair(family)
    processor = pair.processor
    pair.student.config.save_pretrained(tmp_path)  # as in a saved student: the model's config beside it
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == PROCESSOR_CLASSES[family]
    if family == "smolvlm2":  # its video settings travel with it, so the stock class can load the copy
        video = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
        assert video["video_processor_type"] == "SmolVLMVideoProcessor"
    again = load_processor(str(tmp_path))
    expected, got = _encode(processor, [probe_image()]), _encode(again, [probe_image()])
    assert all(torch.equal(expected[k], got[k]) for k in expected) and expected.keys() == got.keys()


def test_image_only_class_drops_only_the_video_slot():
    from transformers import Qwen2VLProcessor

    image_only = image_only_class(Qwen2VLProcessor)
    assert image_only.__name__ == "Qwen2VLProcessor" and issubclass(image_only, Qwen2VLProcessor)
    assert image_only.get_attributes() == ["image_processor", "tokenizer"]
    assert Qwen2VLProcessor.get_attributes() == ["image_processor", "tokenizer", "video_processor"]  # untouched


# --- per-token processor outputs reach the model and matter ---------------------------------------------------


def _logits(model, encoded: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**encoded, use_cache=False).logits


def _dropping_changes_or_fails(model, encoded: dict, key: str) -> bool:
    """True when the forward without `key` fails or moves some real position's logits by more than 1e-3."""
    full = _logits(model, encoded)
    try:
        without = _logits(model, {k: v for k, v in encoded.items() if k != key})
    except Exception:  # noqa: BLE001 - refusing the input is as good as noticing it
        return True
    real = encoded["attention_mask"].bool()
    return float((full - without).abs()[real].max()) > 1e-3


@pytest.mark.parametrize(
    ("family", "keys"),
    [
        ("qwen2_5_vl", ("mm_token_type_ids", "image_grid_thw")),
        ("qwen3_vl", ("mm_token_type_ids", "image_grid_thw")),
        ("gemma3", ("token_type_ids",)),
    ],
)
def test_per_token_inputs_are_produced_and_matter(family_pairs, family, keys):
    pair = family_pairs.pair(family)
    encoded = _encode(pair.processor, [probe_image(), probe_image().resize((40, 64))], (QUESTION, "what ?"))
    for key in keys:
        assert key in encoded
        # The teacher has two layers: what one token's type changes shows up in the others' logits.
        assert _dropping_changes_or_fails(pair.teacher, encoded, key), key


@pytest.mark.parametrize("family", ("smolvlm", "smolvlm2"))
def test_smolvlm_crops_are_5d_and_the_model_reads_their_pixel_mask(family_pairs, family):
    pair = family_pairs.pair(family)
    encoded = _encode(pair.processor, [probe_image(), probe_image().resize((64, 32))], (QUESTION, "what ?"))
    pixels, mask = encoded["pixel_values"], encoded["pixel_attention_mask"]
    assert pixels.dim() == 5 and mask.shape == pixels.shape[:2] + pixels.shape[3:]  # (B, crops, C, H, W)
    # The second image has fewer crops: its padding crops are all zero, and masked out.
    padded = (pixels.flatten(2) == 0).all(-1)
    assert padded[1].any() and not padded[0].any() and not mask[padded].any()
    # The stock settings make every real crop full-size (the mask is all ones there), so the mask is shown to
    # matter by masking half of one crop: the model reads it.
    half_masked = mask.clone()
    half_masked[0, -1, mask.shape[-2] // 2 :] = 0
    changed = _logits(pair.teacher, {**encoded, "pixel_attention_mask": half_masked}) - _logits(pair.teacher, encoded)
    assert float(changed.abs().max()) > 1e-3


# --- pairs that cannot be distilled --------------------------------------------------------------------------


def _copy(family_pairs, family, tmp_path):
    teacher, student = family_pairs.folders(family)
    copies = tmp_path / "teacher", tmp_path / "student"
    for source, target in zip((teacher, student), copies):
        shutil.copytree(source, target)
    return copies


def _edit_json(path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_tokenizers_differing_in_one_special_token_are_refused_by_name(family_pairs, tmp_path):
    teacher, student = _copy(family_pairs, "qwen2_5_vl", tmp_path)
    _edit_json(student / "tokenizer_config.json", lambda d: d.update(eos_token="<|endoftext|>"))
    with pytest.raises(PairError, match="different tokenizers: eos_token is '<\\|im_end\\|>' in the teacher") as caught:
        load_pair(PairSpec(teacher=str(teacher), student=str(student), device="cpu"))
    assert "'<|endoftext|>' in the student" in str(caught.value)


def test_tokenizers_with_one_special_token_renamed_are_refused_by_id(family_pairs, tmp_path):
    teacher, student = _copy(family_pairs, "qwen2_5_vl", tmp_path)
    tokenizer_json = student / "tokenizer.json"
    tokenizer_json.write_text(tokenizer_json.read_text().replace("<|vision_end|>", "<|vision_stop|>"))
    with pytest.raises(PairError, match="different tokenizers") as caught:
        load_pair(PairSpec(teacher=str(teacher), student=str(student), device="cpu"))
    message = str(caught.value)
    assert "is '<|vision_end|>' in the teacher and '<|vision_stop|>' in the student" in message
    assert "cross-tokenizer distillation is not supported" in message


def test_chat_templates_that_differ_are_refused_with_where(family_pairs, tmp_path):
    teacher, student = _copy(family_pairs, "smolvlm", tmp_path)
    template = student / "chat_template.jinja"
    template.write_text(template.read_text().replace("Assistant:", "Bot:"))
    with pytest.raises(PairError, match="chat templates render the same prompt differently") as caught:
        load_pair(PairSpec(teacher=str(teacher), student=str(student), device="cpu"))
    assert "Bot:" in str(caught.value) and "Assistant:" in str(caught.value)


def test_chat_template_without_an_image_slot_is_refused(family_pairs, tmp_path):
    teacher, student = _copy(family_pairs, "llava", tmp_path)
    no_image = "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
    for folder in (teacher, student):
        (folder / "chat_template.jinja").write_text(no_image)
    with pytest.raises(PairError, match="teacher's chat template has no image slot"):
        load_pair(PairSpec(teacher=str(teacher), student=str(student), device="cpu"))


def test_model_without_a_chat_template_is_refused(family_pairs, tmp_path):
    teacher, student = _copy(family_pairs, "llava", tmp_path)
    for folder in (teacher, student):
        (folder / "chat_template.jinja").unlink()
    with pytest.raises(PairError, match="the teacher has no chat template"):
        load_pair(PairSpec(teacher=str(teacher), student=str(student), device="cpu"))


def test_text_only_family_checkpoint_is_not_a_vlm(family_pairs, tmp_path):
    """A Qwen2 language model with a Qwen2.5-VL student's tokenizer files: refused as not a VLM."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _, student = family_pairs.folders("qwen2_5_vl")
    folder = tmp_path / "text-only"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.json"):
        shutil.copy(student / name, folder / name)
    config = Qwen2Config(vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(folder)
    with pytest.raises(PairError, match="not a vision-language model"):
        load_pair(PairSpec(teacher=str(folder), student=str(student), device="cpu"))


# --- the core on every family ---------------------------------------------------------------------------------

FOUR = (("student", True), ("student", False), ("teacher", True), ("teacher", False))


def _reference_logprobs(pair, role: str, with_image: bool, image, response: list[int]) -> np.ndarray:
    """(T, V) float64 log-probs of the response under one model and context, from its own processor's encoding."""
    model = getattr(pair, role)
    processor = pair.teacher_inputs_processor if role == "teacher" else pair.processor
    text = processor.apply_chat_template(_messages(with_image), add_generation_prompt=True, tokenize=False)
    kwargs = {"text": [text], "return_tensors": "pt"} | ({"images": [[image]]} if with_image else {})
    encoded = dict(processor(**kwargs))
    prompt = encoded["input_ids"].shape[1]
    tail = torch.tensor([response])
    for key, value in list(encoded.items()):  # per-token tensors grow by the response: ids, mask 1, types 0
        if torch.is_tensor(value) and value.shape == (1, prompt):
            extra = tail if key == "input_ids" else torch.full_like(tail, int(key == "attention_mask"))
            encoded[key] = torch.cat([value, extra.to(value.dtype)], dim=1)
    logits = _logits(model, encoded)[0, prompt - 1 : prompt - 1 + len(response), : pair.vocab_size]
    return torch.log_softmax(logits.double(), dim=-1).numpy()


@pytest.mark.parametrize("family", ALL_PAIRS)
def test_inspect_equals_a_float64_reference(family_pairs, family):
    from vlod_core.inspection import inspect

    pair = family_pairs.pair(family)
    image = world.sample_examples(1, seed=3)[0].image()
    result = inspect(pair, image, QUESTION, response="it is red")
    values, mask = result.decomposition.values, result.decomposition.mask[0]
    response = result.decomposition.ids[0][mask].tolist()
    s_i, s_x, t_i, t_x = (_reference_logprobs(pair, role, has, image, response) for role, has in FOUR)
    target = s_x + t_i - t_x
    target = target - np.log(np.exp(target).sum(-1, keepdims=True))  # log q*: a log-softmax over the vocabulary
    expected = {
        "std_kl": (np.exp(s_i) * (s_i - t_i)).sum(-1),
        "lang_kl": (np.exp(s_x) * (s_x - t_x)).sum(-1),
        "vis_kl": (np.exp(s_i) * (s_i - target)).sum(-1),
        "vds": (np.exp(t_i) * (t_i - t_x)).sum(-1),
    }
    for key, reference in expected.items():
        np.testing.assert_allclose(values[key][0][mask].double().numpy(), reference, atol=2e-4, rtol=1e-4, err_msg=key)
    assert expected["vds"].max() > 1e-2  # the image matters to the teacher: the contexts really differ


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("rule", ("standard", "vgs"))
@pytest.mark.parametrize("family", ALL_PAIRS)
def test_two_distillation_steps_run_and_leave_the_pair_untouched(family_pairs, family, rule):
    from vlod_core.distill import DistillConfig, distill
    from vlod_core.steering import SteeringConfig

    pair = family_pairs.pair(family)
    before = _state(pair.student), _state(pair.teacher)
    examples = world.sample_examples(4, seed=5)
    tokenizer = pair.tokenizer
    responses = [
        tokenizer(ex.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for ex in examples
    ]
    batch = ([ex.image() for ex in examples], [ex.question for ex in examples], responses)
    config = DistillConfig(
        steps=2, batch=4, lr=1e-3, eval_examples=4, answer_examples=0, steering=SteeringConfig(rule=rule)
    )
    result = distill(pair, config, rollouts=lambda step: batch, evaluate_model=False)
    records = result.card.records
    assert len(records) == 2
    assert all(np.isfinite([r["loss"], r["std"], r["grad_norm"]]).all() for r in records)
    assert np.isfinite([records[0]["vis"], records[0]["lang"]]).all()  # step 1 scores both contexts, whatever the rule
    trained = _state(result.student)
    assert any(not torch.equal(trained[k], before[0][k]) for k in trained)  # the copy learned
    for model, state in zip((pair.student, pair.teacher), before):  # the shared pair did not
        now = _state(model)
        assert all(torch.equal(now[k], state[k]) for k in state)


@pytest.mark.parametrize("family", ALL_PAIRS)
def test_geometry_runs(family_pairs, family):
    from vlod_core.geometry_batch import batch_geometry

    pair = family_pairs.pair(family)
    examples = world.sample_examples(3, seed=9)
    geometry = batch_geometry(pair, [ex.image() for ex in examples], [ex.question for ex in examples], bins=2)
    angles = geometry.to_dict()
    assert angles and json.dumps(angles)  # a result, serialisable
    assert all(p.grad is None for p in pair.student.parameters())  # the shared student was only read


def test_the_mixed_pairs_teacher_scores_its_own_encoding_of_the_same_tokens(family_pairs):
    """Each model's prompt comes from its own processor; the response ids appended to both are the same."""
    from helpers import scoring_batch

    pair = family_pairs.pair(MIXED)
    assert pair.teacher_processor is not None
    examples = world.sample_examples(2, seed=4)
    responses = [
        [pair.tokenizer.eos_token_id],
        pair.tokenizer("it is red")["input_ids"] + [pair.tokenizer.eos_token_id],
    ]
    batch = scoring_batch(pair, [ex.image() for ex in examples], [ex.question for ex in examples], responses)
    student, teacher = batch.context("student", "image"), batch.context("teacher", "image")
    assert student.model_kwargs["pixel_values"].shape != teacher.model_kwargs["pixel_values"].shape
    assert student.prompt_lengths != teacher.prompt_lengths  # another image-token count
    for ctx in (student, teacher):
        ids = ctx.model_kwargs["input_ids"]
        for row, start in enumerate(ctx.prompt_lengths):
            n = len(responses[row])
            assert ids[row, start : start + n].tolist() == responses[row]
