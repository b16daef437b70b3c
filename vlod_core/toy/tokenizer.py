"""A word-level tokenizer for the toy world, built locally with `tokenizers` and wrapped for transformers.

Every word the toy world uses is one token, so a token strip in the app reads as words. Text is
lowercased; anything else becomes `<unk>` (the app says so). The chat template renders the same
`messages` structure that real VLM processors take, so the core never special-cases the toy pair.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from vlod_core.toy import world

PAD, UNK, BOS = "<pad>", "<unk>", "<bos>"
USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
IMAGE = "<image>"

# A little everyday vocabulary beyond the toy world's own, so typed questions are not mostly <unk>.
EXTRA_WORDS = (
    "a an and at by does do has have here in left right is it of on or picture image this that "
    "to what where which who why with yes no color colour colors shapes object objects thing things "
    "there top bottom middle center big small"
).split()


def _world_words() -> list[str]:
    words: list[str] = []
    for ex in world.sample_examples(400, seed=12345):
        words += f"{ex.question} {ex.answer}".split()
    words += list(world.SHAPES) + list(world.COLOURS) + list(world.COUNT_WORDS) + ["shape", "shapes"]
    words += EXTRA_WORDS + ["?", ".", ","]
    return sorted(set(words))


def chat_template(image_placeholder: str = IMAGE) -> str:
    """A jinja chat template rendering `{"type": "image"}` entries as `image_placeholder`."""
    return (
        "{% for message in messages %}"
        f"{{% if message['role'] == 'user' %}}{USER} {{% else %}}{ASSISTANT} {{% endif %}}"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for item in message['content'] %}"
        f"{{% if item['type'] == 'image' %}}{image_placeholder} "
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        f"{{% if message['role'] == 'assistant' %}} {END}{{% endif %}} "
        "{% endfor %}"
        f"{{% if add_generation_prompt %}}{ASSISTANT}{{% endif %}}"
    )


def build_tokenizer(
    extra_special_tokens: tuple[str, ...] = (IMAGE,),
    image_placeholder: str = IMAGE,
    *,
    template: str | None = None,
    named_special_tokens: dict[str, str] | None = None,
    extra_words: tuple[str, ...] = (),
    bos: str = BOS,
    eos: str = END,
    pad: str = PAD,
):
    """The toy tokenizer; the keywords let another model family bring its own tokens and chat template.

    `extra_special_tokens` are added as special tokens (a family's image and turn markers);
    `named_special_tokens` also become attributes a family's processor reads (`tokenizer.boi_token`, ...);
    `template` replaces the toy chat template (a family's own), `extra_words` the words it renders (the
    system prompt, role names); `bos`/`eos`/`pad` name the family's own tokens for those roles.
    """
    named = dict(named_special_tokens or {})
    specials = [PAD, UNK, BOS, USER, ASSISTANT, END]
    for token in (bos, eos, pad, *extra_special_tokens, *named.values()):
        if token not in specials:
            specials.append(token)
    words = sorted(set(_world_words()) | set(extra_words))
    vocab = {token: i for i, token in enumerate(specials + [w for w in words if w not in specials])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    additional = [t for t in specials if t not in (PAD, UNK, bos, eos, pad)]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=pad,
        unk_token=UNK,
        bos_token=bos,
        eos_token=eos,
        extra_special_tokens=additional,
        model_specific_special_tokens=named,
        chat_template=template if template is not None else chat_template(image_placeholder),
        clean_up_tokenization_spaces=False,
    )
    tokenizer.padding_side = "right"
    return tokenizer
