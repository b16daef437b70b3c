"""A model's processor, and the same processor for images only when its video part cannot be built.

transformers 5.x gives the processors of several VLM families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, SmolVLM2's
`SmolVLMProcessor`) a required video processor, and every video processor needs torchvision. On a machine
without torchvision `AutoProcessor.from_pretrained` then fails for a model that vlod only ever shows images.
`load_processor` catches exactly that case and builds the *same* processor class from the same files with
the video slot left out: the image processor and tokenizer come through transformers' own loading code, and
every image and text code path is the stock class's, so ids and pixel values are what the full processor
gives (tests/test_families.py compares the two). It logs one line when it does so.

How transformers 5.23 gets there (read from its source): `AutoProcessor` finds the processor class from
`processor_config.json` / `preprocessor_config.json` / `tokenizer_config.json` (`processor_class`) or the
model type; `ProcessorMixin.from_pretrained` loads one sub-processor per name in `get_attributes()` (the
`__init__` arguments named after a modality); the video one goes through `AutoVideoProcessor`, which without
torchvision resolves to a dummy class that raises "... requires the Torchvision library". The image-only
class below drops `video_processor` from `get_attributes()` and hands `None` to the stock `__init__` in its
slot, which `ProcessorMixin.__init__` then ignores (it pairs positional sub-processors with attributes).
"""

from __future__ import annotations

import json
import logging
import os

logger = logging.getLogger(__name__)

VIDEO_SLOT = "video_processor"
# Files in which AutoProcessor looks for `processor_class`, in its order.
PROCESSOR_CLASS_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer_config.json",
)


def needs_torchvision(error: Exception) -> bool:
    """Whether a loading error is transformers saying that torchvision is missing."""
    text = str(error).lower()
    return (
        "requires the torchvision library" in text
        or "requires `torchvision`" in text
        or ("torchvision backend is not available" in text)
    )


def video_part_missing(error: Exception) -> bool:
    """Whether a processor failed only for its video part: torchvision missing, or no video settings saved."""
    return needs_torchvision(error) or "can't load video processor" in str(error).lower()


def processor_class(name: str):
    """The processor class `AutoProcessor` picks for a folder or Hub id (None if it is not a stock one)."""
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, processor_class_from_name
    from transformers.utils import cached_file

    for filename in PROCESSOR_CLASS_FILES:
        path = cached_file(
            name,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        if path is None:
            continue
        with open(path, encoding="utf-8") as handle:
            class_name = json.load(handle).get("processor_class")
        if class_name:
            return processor_class_from_name(class_name)
    try:
        return PROCESSOR_MAPPING.get(type(AutoConfig.from_pretrained(name)))
    except (ValueError, KeyError, OSError):
        return None


class VideoSettings(dict):
    """Stands in the video slot: the video processor's saved settings, readable as attributes, and no video."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)

    def __call__(self, *args, **kwargs):
        raise ValueError("this processor was built for images only: its video processor needs torchvision")


def video_settings(name: str) -> VideoSettings:
    from transformers.utils import cached_file

    path = cached_file(
        name,
        "video_preprocessor_config.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if path is None:
        return VideoSettings()
    with open(path, encoding="utf-8") as handle:
        return VideoSettings(json.load(handle))


def image_only_class(cls):
    """`cls` without its video slot; named like `cls`, so a saved copy loads as the stock processor."""
    attributes = cls.get_attributes()
    slot = attributes.index(VIDEO_SLOT)

    class ImageOnly(cls):
        @classmethod
        def get_attributes(klass):
            return [a for a in attributes if a != VIDEO_SLOT]

        @classmethod
        def _get_arguments_from_pretrained(klass, *args, **kwargs):
            loaded = super()._get_arguments_from_pretrained(*args, **kwargs)  # image processor and tokenizer
            return loaded[:slot] + [None] + loaded[slot:]  # the stock __init__ takes its video slot positionally

        @classmethod
        def from_pretrained(klass, name, *args, **kwargs):
            processor = super().from_pretrained(name, *args, **kwargs)
            processor.video_processor = video_settings(name)
            return processor

        def save_pretrained(self, save_directory, *args, **kwargs):
            """The stock files, plus the video settings it was loaded with, so the stock class loads it again."""
            saved = super().save_pretrained(save_directory, *args, **kwargs)
            if getattr(self, VIDEO_SLOT, None):
                path = os.path.join(save_directory, "video_preprocessor_config.json")
                with open(path, "w", encoding="utf-8") as handle:
                    json.dump(dict(self.video_processor), handle, indent=2, sort_keys=True)
            return saved

    ImageOnly.__name__ = ImageOnly.__qualname__ = cls.__name__
    ImageOnly.__doc__ = f"`{cls.__name__}` for images only: its video processor needs torchvision."
    ImageOnly.image_only = True
    return ImageOnly


def is_image_only(processor) -> bool:
    return getattr(type(processor), "image_only", False)


def load_processor(name: str, trust_remote_code: bool = False):
    """`AutoProcessor.from_pretrained`, or the same class for images only when its video part needs torchvision.

    Any other failure (and a torchvision failure of a processor without a video slot) is raised as it came.
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as error:  # noqa: BLE001 - re-raised below unless it is the video part
        if not video_part_missing(error):
            raise
        cls = processor_class(name)
        if cls is None or VIDEO_SLOT not in getattr(cls, "get_attributes", list)():
            raise
        processor = image_only_class(cls).from_pretrained(name)
        reason = "torchvision is not installed" if needs_torchvision(error) else "no video settings were saved"
        logger.warning(
            "%s: %s built for images only: its video processor cannot be loaded (%s)", name, cls.__name__, reason
        )
        return processor
