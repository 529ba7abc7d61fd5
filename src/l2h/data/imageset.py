"""ImageSet: the one in-memory view of a dataset split that every stage after preparation reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class ImageSet:
    """A split of a labelled image dataset; ``images[i]`` is a PIL RGB image.

    Images come either from a uint8 array (N, H, W) or (N, H, W, C) held in memory (``pixels``) or from
    image files read lazily (``paths``); exactly one of the two is given.
    """

    labels: np.ndarray
    class_names: list[str]
    pixels: np.ndarray | None = None
    paths: Sequence[str | Path] | None = None
    coarse_labels: np.ndarray | None = None
    coarse_names: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.pixels is None) == (self.paths is None):
            raise ValueError("ImageSet needs exactly one of `pixels` or `paths`")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.pixels) if self.pixels is not None else len(self.paths)
        if len(self.labels) != n:
            raise ValueError(f"ImageSet: {n} images but {len(self.labels)} labels")
        if self.coarse_labels is not None:
            self.coarse_labels = np.asarray(self.coarse_labels, dtype=np.int64)
            if len(self.coarse_labels) != n:
                raise ValueError(f"ImageSet: {n} images but {len(self.coarse_labels)} coarse labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Image.Image:
        if self.pixels is not None:
            return Image.fromarray(np.ascontiguousarray(self.pixels[index])).convert("RGB")
        with Image.open(self.paths[index]) as img:
            return img.convert("RGB")

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        """A new ImageSet holding the given rows, in the given order."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            labels=self.labels[idx],
            class_names=self.class_names,
            pixels=None if self.pixels is None else self.pixels[idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            coarse_labels=None if self.coarse_labels is None else self.coarse_labels[idx],
            coarse_names=self.coarse_names,
            info=dict(self.info),
        )
