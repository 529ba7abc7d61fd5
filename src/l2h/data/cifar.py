"""CIFAR-10 and CIFAR-100 from the official python-format archives (pickled batches + a meta file)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from l2h.data.imageset import ImageSet
from l2h.data.source import ArchiveSource, check_label_range, group_mapping
from l2h.data.taxonomy import ClassTree
from l2h.errors import InputError


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a local copy's files may come from anywhere, and a pickle
    that names any other global (which could run code) is refused."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR file never holds")
        return super().find_class(module, name)


def unpickle(path: Path) -> dict:
    """A CIFAR batch or meta file as a dict with str keys (the originals were pickled by Python 2).

    Only plain data and numpy arrays are unpickled (see ``_CifarUnpickler``).
    """
    if not path.is_file():
        raise InputError(f"{path}: CIFAR file not found; run prepare (download) first")
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: not a CIFAR pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}


class CifarSource(ArchiveSource):
    """Pixels (N, 32, 32, 3) uint8 from ``cfg.batches[split]``; class names from ``cfg.meta_file``.

    Coarse labels come from the batches' ``cfg.coarse_label_key`` (CIFAR-100's 20 superclasses) or from
    ``cfg.coarse_groups`` (a name -> class-names mapping, CIFAR-10's vehicles/animals).
    """

    def marker(self) -> str:
        return str(self.cfg["meta_file"])

    def index_files(self, folder: Path, name: str) -> list[Path]:
        return [folder / b for b in (self.cfg.get("batches") or {}).get(name) or ()] + [folder / self.marker()]

    def _folder(self, root: str | os.PathLike) -> Path:
        return self.data_dir(root, self.split_key(""))

    def _field(self, obj: dict, key: str, path: Path):
        if key not in obj:
            raise InputError(f"{path}: no field {key!r} (has {sorted(obj)})")
        return obj[key]

    def _names(self, meta: dict, key: str, path: Path) -> list[str]:
        return [_text(n) for n in self._field(meta, key, path)]

    def _read_split(self, root, name: str):
        folder = self._folder(root)
        batches = (self.cfg.get("batches") or {}).get(name)
        if not batches:
            raise InputError(f"dataset {self.name}: no batch files configured for split {name!r}")
        coarse_key = self.cfg.get("coarse_label_key")
        shape = tuple(int(s) for s in self.cfg["image_shape"])
        data, labels, coarse, filenames = [], [], [], []
        for batch in batches:
            path = folder / batch
            obj = unpickle(path)
            rows = np.asarray(self._field(obj, "data", path), dtype=np.uint8)
            if rows.ndim != 2 or rows.shape[1] != int(np.prod(shape)):
                raise InputError(f"{path}: data has shape {rows.shape}, expected (N, {int(np.prod(shape))})")
            data.append(rows.reshape((-1, *shape)))
            labels.append(np.asarray(self._field(obj, self.cfg["label_key"], path), dtype=np.int64))
            if coarse_key:
                coarse.append(np.asarray(self._field(obj, coarse_key, path), dtype=np.int64))
            filenames.extend(_text(f) for f in obj.get("filenames", []))
            if len(labels[-1]) != len(rows) or (coarse_key and len(coarse[-1]) != len(rows)):
                raise InputError(f"{path}: {len(rows)} images but a different number of labels")
        pixels = np.ascontiguousarray(np.concatenate(data).transpose(0, 2, 3, 1))  # channels last
        return pixels, np.concatenate(labels), (np.concatenate(coarse) if coarse_key else None), filenames

    def _meta(self, root) -> tuple[dict, Path]:
        path = self._folder(root) / self.cfg["meta_file"]
        return unpickle(path), path

    def _coarse_map(
        self, meta: dict, meta_path: Path, class_names: list[str], labels: np.ndarray, coarse: np.ndarray | None
    ) -> tuple[np.ndarray, list[str]] | None:
        """``(fine_to_coarse (K,) int64 with -1 for classes without images, coarse names)`` or None."""
        groups = self.cfg.get("coarse_groups")
        if coarse is not None:
            names = self._names(meta, self.cfg["coarse_names_key"], meta_path)
            mapping = np.full(len(class_names), -1, dtype=np.int64)
            for fine, c in set(zip(labels.tolist(), coarse.tolist())):
                if not 0 <= c < len(names):
                    raise InputError(f"dataset {self.name}: coarse label {c} outside 0..{len(names) - 1}")
                if mapping[fine] not in (-1, c):
                    raise InputError(
                        f"dataset {self.name}: class {class_names[fine]!r} has images in two "
                        f"superclasses ({names[mapping[fine]]!r}, {names[c]!r})"
                    )
                mapping[fine] = c
            return mapping, names
        if groups:
            return group_mapping(groups, class_names, self.name), list(groups)
        return None

    def load(self, root: str | os.PathLike, split: str, *, progress: bool = True) -> ImageSet:
        name = self.split_name(split)
        pixels, labels, coarse, filenames = self._read_split(root, name)
        meta, meta_path = self._meta(root)
        class_names = self._names(meta, self.cfg["names_key"], meta_path)
        info = {"filenames": filenames} if filenames else {}
        coarse_labels = coarse_names = None
        check_label_range(labels, len(class_names), f"dataset {self.name}, split {name!r}")
        mapped = self._coarse_map(meta, meta_path, class_names, labels, coarse)
        if mapped is not None:
            mapping, coarse_names = mapped
            coarse_labels = coarse if coarse is not None else mapping[labels]
            info["fine_to_coarse"] = mapping.tolist()
        images = ImageSet(
            labels=labels,
            class_names=class_names,
            pixels=pixels,
            coarse_labels=coarse_labels,
            coarse_names=coarse_names,
            info=info,
        )
        return self.finish(images, split, root)

    def hierarchy(self, root: str | os.PathLike) -> ClassTree | None:
        """Root -> coarse classes -> classes (leaf i = class i); None without coarse labels. With per-image
        superclasses the class -> superclass map is read from all configured batches."""
        meta, meta_path = self._meta(root)
        class_names = self._names(meta, self.cfg["names_key"], meta_path)
        labels, coarse = [], []
        if self.cfg.get("coarse_label_key"):
            for name in self.cfg.get("batches") or {}:
                _, fine, c, _ = self._read_split(root, name)
                labels.append(fine)
                coarse.append(c)
        mapped = self._coarse_map(
            meta,
            meta_path,
            class_names,
            np.concatenate(labels) if labels else np.zeros(0, np.int64),
            np.concatenate(coarse) if coarse else None,
        )
        if mapped is None:
            return None
        mapping, coarse_names = mapped
        if (mapping < 0).any():
            missing = [class_names[i] for i in np.flatnonzero(mapping < 0)]
            raise InputError(f"dataset {self.name}: classes {missing[:5]} have no image, so no superclass")
        return ClassTree.from_paths([(coarse_names[m], c) for m, c in zip(mapping, class_names)], root=self.name)
