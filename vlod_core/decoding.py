"""A compact decode loop: `model.generate`'s tokens without its per-call set-up.

`generate` spends more time deciding how to generate (copying and validating its config, inspecting
signatures, building criteria, checking stops) than a toy model spends generating, and at every new token it
runs its stopping criteria and bookkeeping. This loop does only what decoding needs and hands everything
model-specific to the model's own generation hooks, the ones `generate` calls: position ids
(`_prepare_position_ids_for_generation`: Qwen's 3-D ids), the per-step inputs (`prepare_inputs_for_generation`:
pixels only in the prefill, sliced ids), the growing masks (`_update_model_kwargs_for_generation`), the image
features encoded before the prefill, and the logits processors built from the model's `generation_config`
(`_get_logits_processor`: suppressed tokens, a checkpoint's `min_new_tokens`, ...). The KV cache is the one
the model creates on the prefill. So for the same inputs the logits, and hence the tokens, are `generate`'s
(`tests/test_decoding.py` checks it on the toy pair and five model families).

For a small model the forward's own bookkeeping (the mask builder alone is ~90 tensor ops per token) costs
more than its arithmetic. So when the language model is a plain Llama (the toy pair; SmolVLM's text model)
the tokens after the prefill take `LlamaStep`: the same tensor operations on the same weights, in the same
order, without the bookkeeping, and bit-for-bit the same logits (the tests compare tokens with `generate`).
"""

from __future__ import annotations

import functools
import inspect

import torch

# What `generate` treats as raw multimodal input (its `_prepare_multimodal_encoder_kwargs_for_generation`).
PIXEL_KEYS = ("pixel_values", "pixel_values_images", "pixel_values_videos", "image_patches")
PROCESSORS_ATTRIBUTE = "_vlod_logits_processors"  # each model's own cache: {settings: processors}


def _accepts(model, name: str) -> bool:
    return _forward_accepts(type(model), name)


@functools.lru_cache(maxsize=256)
def _forward_accepts(model_class: type, name: str) -> bool:
    """Whether a model class's forward takes `name` (a fact of the class: cached once per process)."""
    return name in inspect.signature(model_class.forward).parameters


def image_feature_kwargs(model, model_kwargs: dict) -> dict:
    """The inputs of `model`'s `get_image_features` present in `model_kwargs` (empty when it has no images)."""
    encoder = getattr(model.base_model, "get_image_features", None)
    if encoder is None or not _accepts(model, "mm_encoder_outputs"):
        return {}
    names = [n for n in inspect.signature(encoder).parameters if n != "kwargs"]
    found = {n: model_kwargs[n] for n in names if n in model_kwargs}
    return found if any(k in found for k in PIXEL_KEYS) else {}


def encode_images(model, model_kwargs: dict):
    """`model`'s image features for these inputs, as `generate` computes them before the prefill (None: no image).

    The result goes to the model's forward as `mm_encoder_outputs={"image": ...}` in place of the pixels.
    """
    found = image_feature_kwargs(model, model_kwargs)
    if not found:
        return None
    return model.base_model.get_image_features(**found, return_dict=True)


def detached(output):
    """A copy of a model output (or tensor, tuple, list) with every tensor detached from its graph."""
    if torch.is_tensor(output):
        return output.detach()
    if isinstance(output, (list, tuple)) and not hasattr(output, "keys"):
        return type(output)(detached(v) for v in output)
    if hasattr(output, "keys"):  # a ModelOutput (an ordered dict whose fields are also attributes)
        return type(output)(**{k: detached(v) for k, v in output.items()})
    return output


def logits_processors(model, input_ids: torch.Tensor, max_new_tokens: int, suppress: list[int], pad: int, eos: int):
    """The processors `generate(do_sample=False, suppress_tokens=..., ...)` would apply, in its order.

    Built once per model, settings and prompt shape (building them costs a few ms), and again whenever the
    model's `generation_config` changes.
    """
    key = (
        str(vars(model.generation_config)),
        tuple(input_ids.shape),
        str(input_ids.device),
        max_new_tokens,
        tuple(suppress),
        pad,
        eos,
    )
    built = model.__dict__.setdefault(PROCESSORS_ATTRIBUTE, {})  # on the model: no state shared across models
    processors = built.get(key)  # one read: another session may clear the cache meanwhile
    if processors is None:
        processors = _build_processors(model, input_ids, max_new_tokens, suppress, pad, eos)
        if len(built) > 32:
            built.clear()
        built[key] = processors
    return processors


def _build_processors(model, input_ids, max_new_tokens, suppress, pad, eos):
    config, _ = model._prepare_generation_config(
        None,
        max_new_tokens=max_new_tokens,
        suppress_tokens=suppress,
        pad_token_id=pad,
        eos_token_id=eos,
        do_sample=False,
    )
    model._prepare_special_tokens(config, True, device=input_ids.device, batch_size=input_ids.shape[0])
    config = model._prepare_generated_length(
        generation_config=config,
        has_default_max_length=model.generation_config.max_length is None,  # as `generate` decides
        has_default_min_length=model.generation_config.min_length is None,
        model_input_name="input_ids",
        inputs_tensor=input_ids,
        input_ids_length=input_ids.shape[1],
    )
    return model._get_logits_processor(
        generation_config=config,
        input_ids_seq_length=input_ids.shape[1],
        encoder_input_ids=input_ids,
        prefix_allowed_tokens_fn=None,
        logits_processor=None,
        device=input_ids.device,
        model_kwargs={},
    )


class LlamaStep:
    """One new token through a plain Llama language model with a KV cache: `LlamaModel.forward` without its
    bookkeeping, for models where that is exactly the same arithmetic (see `of`); else `of` returns None."""

    def __init__(self, model, language_model):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        self.lm, self.head = language_model, model.get_output_embeddings()
        self.attention = ALL_ATTENTION_FUNCTIONS.get_interface(language_model.config._attn_implementation, None)

    @classmethod
    def of(cls, model) -> "LlamaStep | None":
        inner = getattr(model, "model", None)
        lm = getattr(inner, "language_model", None) or getattr(inner, "text_model", None)
        head = model.get_output_embeddings()
        if (
            lm is None
            or type(lm).__name__ != "LlamaModel"
            or type(head) is not torch.nn.Linear
            or head.bias is not None
        ):
            return None
        config = lm.config
        plain = (
            config._attn_implementation == "sdpa"
            and config.rope_parameters.get("rope_type", "default") == "default"
            and not lm.training
            and len(lm.layers) == config.num_hidden_layers
        )
        linears = [
            m
            for layer in lm.layers
            for m in (
                layer.self_attn.q_proj,
                layer.self_attn.k_proj,
                layer.self_attn.v_proj,
                layer.self_attn.o_proj,
                layer.mlp.gate_proj,
                layer.mlp.up_proj,
                layer.mlp.down_proj,
            )
        ]
        if not plain or any(type(m) is not torch.nn.Linear or m.bias is not None for m in linears):
            return None  # LoRA adapters, biases, other attention or rope kinds: the model's own forward
        return cls(model, lm)

    @staticmethod
    def _norm(norm, x):  # LlamaRMSNorm in float32 (the only dtype this path takes)
        return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))

    def __call__(self, tokens: torch.Tensor, attention_mask, position_ids: torch.Tensor, cache) -> torch.Tensor:
        """(B, V) logits of the next token after `tokens` (B,) at `position_ids` (B, 1)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        linear = torch.nn.functional.linear
        lm = self.lm
        h = torch.nn.functional.embedding(tokens, lm.embed_tokens.weight)  # (B, D)
        # The one query sees every real cached token: the causal mask is the padding mask (none without padding).
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]
        cos, sin = lm.rotary_emb(h, position_ids=position_ids)
        batch = h.shape[0]
        for index, layer in enumerate(lm.layers):
            attn, mlp = layer.self_attn, layer.mlp
            x = self._norm(layer.input_layernorm, h)
            shape = (batch, 1, -1, attn.head_dim)
            q = linear(x, attn.q_proj.weight).view(shape).transpose(1, 2)
            k = linear(x, attn.k_proj.weight).view(shape).transpose(1, 2)
            v = linear(x, attn.v_proj.weight).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k, v = cache.update(k, v, index)
            out, _ = self.attention(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling)
            h = h + linear(out.reshape(batch, -1), attn.o_proj.weight)
            x = self._norm(layer.post_attention_layernorm, h)
            h = h + linear(
                mlp.act_fn(linear(x, mlp.gate_proj.weight)) * linear(x, mlp.up_proj.weight), mlp.down_proj.weight
            )
        return linear(self._norm(lm.norm, h), self.head.weight)


@torch.no_grad()
def decode(
    model,
    encoded: dict,
    max_new_tokens: int,
    suppress: list[int],
    pad: int,
    eos: int,
    choose=None,
    image_features=None,
) -> torch.Tensor:
    """(B, n ≤ max_new_tokens) new token ids of left-aligned prompts `encoded`; rows that stopped hold `pad`.

    `choose(scores) -> (B,) ids` picks each token from the processed float32 scores (default: argmax, i.e.
    greedy). `image_features`: the output of `encode_images` for these inputs, if already computed.
    Stops when every row has produced `eos` or after `max_new_tokens` tokens, as `generate` does.
    """
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: the adapted model
    kwargs = dict(encoded)
    input_ids = kwargs.pop("input_ids")
    batch, prompt_length = input_ids.shape
    if kwargs.get("position_ids") is None and _accepts(model, "position_ids"):
        kwargs["position_ids"] = model._prepare_position_ids_for_generation(
            input_ids, {"input_ids": input_ids, **kwargs}
        )
    if kwargs.get("attention_mask") is not None and bool((kwargs["attention_mask"] == 1).all()):
        kwargs["attention_mask"] = None  # as `generate` does: no padding, no mask
    found = image_feature_kwargs(model, kwargs)
    if found:  # encoded once before the prefill, as `generate` does; the raw inputs are dropped
        features = image_features if image_features is not None else encode_images(model, kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in found}
        kwargs["mm_encoder_outputs"] = {"image": features}
    if model._supports_logits_to_keep():
        kwargs["logits_to_keep"] = 1
    kwargs["use_cache"] = True
    processors = logits_processors(model, input_ids, max_new_tokens, suppress, pad, eos)
    choose = choose or (lambda scores: scores.argmax(-1))
    unfinished = torch.ones(batch, dtype=torch.bool, device=input_ids.device)
    device = input_ids.device
    exact = next(model.parameters()).dtype == torch.float32 and not torch.is_autocast_enabled(device.type)
    fast = LlamaStep.of(model) if exact else None
    for step in range(max_new_tokens):
        first = step == 0
        if fast is not None and not first and kwargs.get("position_ids") is not None:
            logits = fast(
                input_ids[:, -1],
                kwargs.get("attention_mask"),
                kwargs["position_ids"][:, -1:],
                kwargs["past_key_values"],
            )
            kwargs = model._update_model_kwargs_for_generation({}, kwargs)
        else:
            inputs = model.prepare_inputs_for_generation(
                input_ids, next_sequence_length=None if first else 1, is_first_iteration=first, **kwargs
            )
            outputs = model(**inputs, return_dict=True)
            kwargs = model._update_model_kwargs_for_generation(outputs, kwargs)
            logits = outputs.logits[:, -1]
            del outputs
        scores = logits.to(copy=True, dtype=torch.float32)
        for warp in processors:  # what `LogitsProcessorList` does, without inspecting each one every token
            scores = warp(input_ids, scores)
        tokens = torch.where(unfinished, choose(scores), pad)
        input_ids = torch.cat([input_ids, tokens[:, None]], dim=-1)
        unfinished &= tokens != eos
        if not bool(unfinished.any()):
            break
    return input_ids[:, prompt_length:]
