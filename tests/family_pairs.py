"""Tiny random pairs of five VLM families (vlod_core/testing/families.py), built and loaded once per test session.

Import the fixture into a test module (`from family_pairs import family_pairs_fixture`) and ask it for a family:
`family_pairs.pair("qwen2_5_vl")` is a loaded, checked `ModelPair` (built on first use, then shared: read
only, as every session fixture); `family_pairs.folders(name)` are its teacher and student folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vlod_core.pair import ModelPair, PairSpec, load_pair
from vlod_core.testing.families import build_family_pair

FAMILIES = ("llava", "qwen2_5_vl", "qwen3_vl", "smolvlm", "smolvlm2", "gemma3")
MIXED = "mixed"  # teacher and student processors encode images differently
ALL_PAIRS = FAMILIES + (MIXED,)
# Stock processors that need a video processor, hence torchvision: these load for images only here.
VIDEO_PROCESSOR_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "smolvlm2")


class FamilyPairs:
    """Builds each family's folders and loads its pair on first use."""

    def __init__(self, root: Path):
        self.root = root
        self._folders: dict[str, tuple[Path, Path]] = {}
        self._pairs: dict[str, ModelPair] = {}

    def folders(self, family: str) -> tuple[Path, Path]:
        if family not in self._folders:
            self._folders[family] = build_family_pair(family, self.root / family, seed=0)
        return self._folders[family]

    def spec(self, family: str) -> PairSpec:
        teacher, student = self.folders(family)
        return PairSpec(teacher=str(teacher), student=str(student), device="cpu", dtype="float32")

    def pair(self, family: str) -> ModelPair:
        if family not in self._pairs:
            self._pairs[family] = load_pair(self.spec(family))
        return self._pairs[family]


@pytest.fixture(scope="session", name="family_pairs")
def family_pairs_fixture(tmp_path_factory) -> FamilyPairs:
    return FamilyPairs(tmp_path_factory.mktemp("families"))
