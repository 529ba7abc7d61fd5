"""The command line's Hydra overrides (``--config overrides="..."``), parsed with Hydra's own parser.

A sweep (``a=1,2``, ``range()``, ``choice()``, ``glob()``) or a list value on a *grid key* sets that grid
dimension; every other override is passed to the jobs that read its config group.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from l2h.errors import InputError

#: Groups a user may override on the command line.
GROUPS = ("dataset", "backbone", "clusterer", "l2h", "baseline", "paths")
#: Grid dimensions, and the override keys that set them.
GRID_KEYS = ("dataset", "backbone", "clusterer", "k", "aggregation", "strategy", "seed", "baseline")
GRID_OVERRIDES = {
    "dataset": "dataset",
    "backbone": "backbone",
    "clusterer": "clusterer",
    "baseline": "baseline",
    "clusterer.k": "k",
    "k": "k",
    "clusterer.seed": "seed",
    "seed": "seed",
    "l2h.aggregation": "aggregation",
    "l2h.strategy": "strategy",
}


def hydra_value(value: Any) -> str:
    """``value`` written in Hydra's override grammar (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "${" in value:
            raise InputError(f"cannot pass {value!r} to a stage: '${{' would be read as an interpolation")
        # Hydra's quoted strings: escape the quote, and double the backslashes that precede a quote or the end
        escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, Mapping):
        for key in value:
            if not re.fullmatch(r"[A-Za-z_]\w*", str(key)):
                raise InputError(f"cannot pass key {key!r} to a stage")
        return "{" + ",".join(f"{key}:{hydra_value(val)}" for key, val in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise InputError(f"cannot pass a {type(value).__name__} to a stage")


def split_overrides(text: str | Iterable[str] | None) -> list[str]:
    """The override strings of ``text`` (split like a shell command line) or of a list."""
    if text is None or text == "":
        return []
    if not isinstance(text, str):
        return [str(t) for t in text]
    try:
        return shlex.split(text)
    except ValueError as exc:  # e.g. an unbalanced quote
        raise InputError(
            f"overrides {text!r}: cannot split into overrides ({exc}); quote each value once, "
            f'e.g. overrides="clusterer.k=5 l2h.aggregation=sum_all"'
        ) from None


@dataclass
class Overrides:
    """User overrides split into grid values (``dataset=a,b``, ``clusterer.k=5,10`` ...) and plain Hydra
    overrides passed through to the stages that read the group they touch.

    ``keys`` maps the text of each pass-through override to the key it sets within its group (``n_init`` for
    ``clusterer.n_init=3``, also for ``+``/``++``; ``None`` for a group selection or a deletion): the plan applies
    it to the options of the group that have the key (k-means, not TURTLE); ``+``/``++`` reach every option and
    a key that no option of the plan has is refused."""

    grid: dict[str, list] = field(default_factory=dict)
    passthrough: list[tuple[str, str]] = field(default_factory=list)  # (group, override text)
    keys: dict[str, str | None] = field(default_factory=dict)  # override text -> key within its group
    adds: set[str] = field(default_factory=set)  # texts of '+'/'++' overrides

    @classmethod
    def parse(
        cls, text: str | Iterable[str] | None, *, options: Mapping[str, list[str]], source: str = "overrides"
    ) -> "Overrides":
        """Parse overrides with Hydra's own parser; ``text`` is a string (split like a shell command line)
        or a list of override strings. A sweep or a list value on a grid key sets that grid dimension;
        sweeps over other keys are refused."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType, ValueType
        from hydra.errors import HydraException, OverrideParseException

        items = split_overrides(text)
        out = cls()
        if not items:
            return out
        parser = OverridesParser.create()
        for item in items:
            try:
                ov = parser.parse_overrides([item])[0]
            except (OverrideParseException, HydraException) as exc:
                raise InputError(f"{source}: cannot parse {item!r}: {' '.join(str(exc).split())}") from None
            key = ov.key_or_group
            if key in GRID_OVERRIDES and ov.type == OverrideType.CHANGE:
                dim = GRID_OVERRIDES[key]
                if ov.value_type == ValueType.GLOB_CHOICE_SWEEP:
                    if dim not in options:
                        raise InputError(f"{source}: {item!r}: glob() only selects config files, not values of {key}")
                    values = list(ov.value().filter(options[dim]))
                elif ov.is_sweep_override():
                    values = list(ov.sweep_string_iterator())
                else:
                    value = ov.value()
                    values = list(value) if isinstance(value, list) else [value]
                if dim in out.grid:
                    raise InputError(f"{source}: {key} given twice")
                out.grid[dim] = values
                continue
            group = key.split(".")[0].split("@")[0]
            if group in ("experiment", "stage", "hydra"):
                hint = " (choose the experiment with --config experiment=NAME)" if group == "experiment" else ""
                raise InputError(f"{source}: {item!r} is not allowed: the pipeline sets {group}{hint}")
            if group not in GROUPS:
                raise InputError(f"{source}: {item!r} does not name a config group; groups: {', '.join(GROUPS)}")
            if ov.is_sweep_override():
                raise InputError(
                    f"{source}: {item!r} sweeps a value that is not part of the result paths; "
                    f"sweeps are supported over {', '.join(sorted(GRID_OVERRIDES))}"
                )
            if "@" in key:
                raise InputError(f"{source}: {item!r}: package overrides ('@') are not supported")
            out.passthrough.append((group, ov.input_line))
            out.keys[ov.input_line] = key.split(".", 1)[1] if "." in key and ov.type != OverrideType.DEL else None
            if ov.type in (OverrideType.ADD, OverrideType.FORCE_ADD):
                out.adds.add(ov.input_line)
        return out
