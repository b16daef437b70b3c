"""Pairs that cannot be loaded or distilled: each is one `PairError` that says what is wrong and what to do.

Broken checkpoints are made from copies of the session's toy folders, so the session pair is never touched.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch

from vlod_core.pair import PairError, PairSpec, load_model, load_pair

CPU = dict(dtype=torch.float32, device=torch.device("cpu"))


@pytest.fixture
def toy_dir(vlod_home) -> Path:
    return vlod_home / "toy"


def copy_of(toy_dir: Path, tmp_path: Path, name: str = "student") -> Path:
    target = tmp_path / f"{name}-copy"
    shutil.copytree(toy_dir / name, target)
    return target


# --- where the model should be -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/no/such/folder/model", "./no-such-model", "~/no-such-vlod-model", "justaname"])
def test_path_that_does_not_exist(name):
    with pytest.raises(PairError, match="no such folder"):
        load_model(name, **CPU)


def test_missing_teacher_in_a_spec_names_it():
    with pytest.raises(PairError, match="/no/such/teacher"):
        load_pair(PairSpec(teacher="/no/such/teacher", student="/no/such/student"))


def test_the_toy_name_is_located_by_the_caller_not_by_load_pair():
    with pytest.raises(PairError, match=r"vlod_core\.toy\.folders"):
        load_pair(PairSpec())


def test_folder_without_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(PairError, match="no config.json"):
        load_model(str(tmp_path), **CPU)


def test_a_file_is_not_a_model_folder(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(PairError, match="is a file, not a model folder"):
        load_model(str(path), **CPU)


def test_folder_with_config_but_no_weights(toy_dir, tmp_path):
    folder = copy_of(toy_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(PairError, match="could not load the model.*safetensors"):
        load_model(str(folder), **CPU)


def test_unreadable_config(toy_dir, tmp_path):
    folder = copy_of(toy_dir, tmp_path)
    (folder / "config.json").write_text("{ this is not json")
    with pytest.raises(PairError, match="config.json"):
        load_model(str(folder), **CPU)


# --- pairs that cannot be distilled -------------------------------------------------------------------------


def test_different_tokenizers_are_refused(toy_dir, tmp_path):
    from vlod_core.toy.tokenizer import build_tokenizer

    student = copy_of(toy_dir, tmp_path)
    build_tokenizer(extra_special_tokens=("<image>", "<extra>")).save_pretrained(student)
    with pytest.raises(PairError, match="different tokenizers.*cross-tokenizer distillation is not supported"):
        load_pair(PairSpec(teacher=str(toy_dir / "teacher"), student=str(student)))


def test_different_chat_templates_are_refused(toy_dir, tmp_path):
    student = copy_of(toy_dir, tmp_path)
    template = student / "chat_template.jinja"
    assert template.is_file()
    template.write_text("<bos> " + template.read_text())
    with pytest.raises(PairError, match="chat templates render the same prompt differently"):
        load_pair(PairSpec(teacher=str(toy_dir / "teacher"), student=str(student)))


def test_text_only_checkpoint_is_not_a_vlm(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from vlod_core.toy.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(PairError, match="not a vision-language model"):
        load_model(str(tmp_path), **CPU)


def test_vlm_processor_with_a_text_only_model_is_not_a_vlm(toy_dir, tmp_path):
    from transformers import LlamaConfig

    folder = copy_of(toy_dir, tmp_path)
    text_only = LlamaConfig(
        vocab_size=80,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    text_only.save_pretrained(folder)
    with pytest.raises(PairError, match="not a vision-language model"):
        load_model(str(folder), **CPU)


def test_bad_spec_values_are_refused():
    with pytest.raises(PairError, match="dtype"):
        PairSpec(dtype="float8")
    with pytest.raises(PairError, match="student_variant"):
        PairSpec(student_variant="student_genius")


# --- the Hub, offline ------------------------------------------------------------------------------------


def test_hub_id_while_offline_says_how_to_use_a_local_folder(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import; the constant is what its calls consult.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(PairError) as caught:
        load_model("vlod-tests/no-such-model-4711", **CPU)
    message = str(caught.value)
    assert "Hub is unreachable" in message and "local folder" in message
    assert message.startswith("vlod-tests/no-such-model-4711")
    assert time.perf_counter() - started < 30  # offline mode answers at once, without network retries


# --- code and pickles are never run ------------------------------------------------------------------------


def _custom_code_folder(folder: Path, sentinel: Path, with_processor_map: bool) -> None:
    folder.mkdir()
    auto_map = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForImageTextToText": "modeling_custom.CustomVLM",
        "AutoProcessor": "processing_custom.CustomProcessor",
    }
    config = {"model_type": "vlod_custom_vlm", "architectures": ["CustomVLM"], "auto_map": auto_map}
    (folder / "config.json").write_text(json.dumps(config))
    if with_processor_map:
        processor = {"processor_class": "CustomProcessor", "auto_map": {"AutoProcessor": auto_map["AutoProcessor"]}}
        (folder / "processor_config.json").write_text(json.dumps(processor))
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    for module in ("configuration_custom", "modeling_custom", "processing_custom"):
        (folder / f"{module}.py").write_text(f"open({str(sentinel)!r}, 'w').write('custom code ran')\n")


@pytest.mark.parametrize("with_processor_map", [False, True], ids=["config-only", "config-and-processor"])
def test_custom_code_needs_trust_remote_code_and_never_runs(tmp_path, with_processor_map):
    folder, sentinel = tmp_path / "custom", tmp_path / "custom-code-ran"
    _custom_code_folder(folder, sentinel, with_processor_map)
    with pytest.raises(PairError, match="trust remote code") as caught:
        load_model(str(folder), **CPU)
    assert "--trust-remote-code" in str(caught.value)
    with pytest.raises(PairError, match="trust remote code"):
        load_pair(PairSpec(teacher=str(folder), student=str(folder)))
    assert not sentinel.exists()


class _Payload:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_pickle_only_weights_are_refused_not_unpickled(toy_dir, tmp_path, monkeypatch):
    folder, sentinel = copy_of(toy_dir, tmp_path), tmp_path / "pickle-ran"
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(sentinel)))

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(PairError, match="pickle") as caught:
        load_model(str(folder), **CPU)
    assert "pytorch_model.bin" in str(caught.value) and "safetensors" in str(caught.value)
    assert not sentinel.exists()


def test_pickle_next_to_safetensors_is_ignored(toy_dir, tmp_path):
    folder, sentinel = copy_of(toy_dir, tmp_path), tmp_path / "pickle-ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(sentinel)))
    model, processor = load_model(str(folder), **CPU)
    assert not sentinel.exists()
    assert hasattr(processor, "image_processor") and model.config.model_type == "llava"
