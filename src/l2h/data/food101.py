"""Food-101 from the official archive: images/<class>/<id>.jpg with meta/classes.txt and split lists."""

from __future__ import annotations

import os
from pathlib import Path

from l2h.data.imageset import ImageSet
from l2h.data.source import ArchiveSource
from l2h.errors import InputError


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: not found; run prepare (download) first")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Food101Source(ArchiveSource):
    """Class index = line of ``meta/classes.txt``; split ``s`` = the ``class/id`` lines of ``meta/<s>.txt``."""

    def marker(self) -> str:
        return "meta/classes.txt"

    def index_files(self, folder: Path, name: str) -> list[Path]:
        return [folder / "meta" / "classes.txt", folder / "meta" / f"{name}.txt"]

    def load(self, root: str | os.PathLike, split: str, *, progress: bool = True) -> ImageSet:
        name = self.split_name(split)
        folder = self.data_dir(root, self.split_key(name))
        classes = _lines(folder / "meta" / "classes.txt")
        index = {c: i for i, c in enumerate(classes)}
        split_file = folder / "meta" / f"{name}.txt"
        suffix = self.cfg["image_suffix"]
        paths, labels = [], []
        for lineno, entry in enumerate(_lines(split_file), start=1):
            cls = entry.split("/", 1)[0]
            if cls not in index or "/" not in entry:
                raise InputError(f"{split_file}:{lineno}: {entry!r} is not '<class>/<id>' of a class in classes.txt")
            paths.append(folder / "images" / f"{entry}{suffix}")
            labels.append(index[cls])
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputError(
                f"dataset {self.name}: {len(missing)} images listed in {split_file} are missing, e.g. {missing[0]}"
            )
        images = ImageSet(labels=labels, class_names=classes, paths=[str(p) for p in paths])
        return self.finish(images, split, root)
