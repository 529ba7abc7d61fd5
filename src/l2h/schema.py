"""Option schemas: one JSON Schema per kind of option of each config group, and the one validator.

Every option of a config group (``conf/<group>/<option>.yaml``) is described by the schema of its kind,
``l2h/schemas/<group>/<kind>.yaml``: the kind is the option's ``kind`` (groups without kinds have a single
schema, ``<group>/<group>.yaml``), and the schema's ``target`` names the implementation that builds it
(:func:`implementation`: the one registry of datasets, backbones, clusterers and baselines). A schema
gives each key its type, range or choices, and marks runtime knobs (``runtime: true``: keys that change
how a job runs but never its results); the rerun trigger of a pipeline job is exactly the other keys
(:func:`result_keys`). The schema's top-level ``gpu`` says whether a job using the option needs a GPU
(:func:`needs_gpu`).

Components of your own package need not live in this one: the environment variable ``L2H_SCHEMA_PATH``
(folders separated by ``os.pathsep``, each laid out as ``<group>/<kind>.yaml``) adds their schemas, whose
``target`` names your implementation (docs/extending.md). A kind may be defined once only.

Validation is strict where Hydra/OmegaConf are lenient: a boolean must be ``true``/``false`` (not ``yes``
or ``2``), an integer must not be a float or a boolean, and unknown keys are errors. Errors are one line:

>>> validate("l2h", {"name": "default", "aggregation": "sum_all", "strategy": "lowest_score",
...                  "input": "logits", "block_rows": -1})
Traceback (most recent call last):
    ...
l2h.errors.InputError: l2h.block_rows = -1: must be >= 1
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from l2h.errors import InputError

#: Groups whose options name their kind: the schema and the implementation (the schema's ``target``).
COMPONENTS = ("dataset", "backbone", "clusterer", "baseline")
#: The key of an option that names its kind.
KIND = "kind"
#: Groups with a single schema ``<group>/<group>.yaml``.
SINGLE = ("l2h", "paths", "experiment")
_BASE_URI = "https://l2h.invalid/schemas/"  # ids only (the registry holds every schema; nothing is fetched)
#: Environment variable naming extra schema folders (``os.pathsep``-separated), for components of other packages.
SCHEMA_PATH = "L2H_SCHEMA_PATH"


def _registry():
    """Every schema file, as a ``referencing`` registry (so schemas may ``$ref`` shared pieces)."""
    return _load(os.environ.get(SCHEMA_PATH, ""))


@cache
def _load(extra: str):
    import yaml
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    roots = [resources.files("l2h") / "schemas"]
    for folder in filter(None, extra.split(os.pathsep)):
        if not os.path.isdir(folder):
            raise InputError(f"{SCHEMA_PATH}: {folder} is not a folder (expected <group>/<kind>.yaml files in it)")
        roots.append(Path(folder))
    docs, origin = {}, {}
    for root in roots:
        for group in sorted(root.iterdir(), key=lambda p: p.name):
            if not group.is_dir():
                continue
            for path in sorted(group.iterdir(), key=lambda p: p.name):
                if path.name.endswith(".yaml"):
                    uri = f"{_BASE_URI}{group.name}/{path.name}"
                    if uri in docs:
                        raise InputError(
                            f"{SCHEMA_PATH}: {path} defines {group.name} kind {path.name[:-5]!r}, "
                            f"which {origin[uri]} already defines: give yours another name"
                        )
                    origin[uri] = path
                    docs[uri] = Resource(yaml.safe_load(path.read_text(encoding="utf-8")), specification=DRAFT202012)
    return Registry().with_resources(docs.items()), {uri: res.contents for uri, res in docs.items()}


def kinds(group: str) -> list[str]:
    """The kinds of ``group`` that have a schema."""
    prefix = f"{_BASE_URI}{group}/"
    return sorted(
        uri[len(prefix) : -5]
        for uri in _registry()[1]
        if uri.startswith(prefix) and not uri[len(prefix) :].startswith("_")
    )


def kind_of(group: str, node: Mapping[str, Any]) -> str:
    """The kind of an option node: its dispatch key's value (the group name for single-schema groups)."""
    if group in SINGLE:
        return group
    if group not in COMPONENTS:
        raise InputError(f"{group}: not a config group with options (groups: {', '.join([*COMPONENTS, *SINGLE])})")
    kind = node.get(KIND) if isinstance(node, Mapping) else None
    if kind not in kinds(group):
        raise InputError(
            f"{group}.{KIND} = {kind!r}: must be one of {', '.join(kinds(group))} (the {group} kinds "
            f"that have a schema in l2h/schemas/{group}/ or under {SCHEMA_PATH})"
        )
    return str(kind)


def implementation(group: str, kind: str) -> Any:
    """What builds a component of ``kind``: the schema's ``target`` (``module`` or ``module:attribute``),
    imported on first use (so that listing or validating options imports no heavy package).

    >>> implementation("clusterer", "kmeans").__name__
    'KMeansClusterer'
    """
    import importlib

    target = schema(group, kind).get("target")
    if not target:
        raise InputError(f"{group}: the schema of kind {kind!r} names no target (l2h/schemas/{group}/{kind}.yaml)")
    module, _, attribute = str(target).partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attribute) if attribute else obj


def schema(group: str, kind: str) -> dict[str, Any]:
    """The schema of ``kind`` in ``group`` (a dict; do not modify)."""
    docs = _registry()[1]
    uri = f"{_BASE_URI}{group}/{kind}.yaml"
    if uri not in docs:
        raise InputError(f"{group}: no schema for kind {kind!r} (l2h/schemas/{group}/{kind}.yaml)")
    return docs[uri]


def validate(group: str, node: Mapping[str, Any], *, complete: bool = True) -> None:
    """Check an option node against its schema; raise :class:`InputError` (one line) on the first problem.

    Parameters
    ----------
    group : str
        The config group (``dataset``, ``backbone``, ``clusterer``, ``baseline``, ``l2h``, ``paths``,
        ``experiment``).
    node : mapping
        The option's resolved values (plain data, as ``OmegaConf.to_container(..., resolve=True)`` gives).
    complete : bool
        Whether every key the schema requires must be present (a config file: yes; keyword arguments
        given to a library function, whose defaults fill the rest: no).
    """
    if not isinstance(node, Mapping):
        raise InputError(f"{group}: expected a mapping of options, got {type(node).__name__}")
    kind = kind_of(group, node)
    check(node, schema(group, kind), label=group, kind=kind, uri=f"{_BASE_URI}{group}/{kind}.yaml", complete=complete)


def check(
    node: Any, root: Mapping[str, Any], *, label: str, kind: str = "", uri: str = "", complete: bool = True
) -> None:
    """Check ``node`` against the JSON Schema ``root``; raise :class:`InputError` with one line naming
    ``label.<key>``, the value and what is allowed (the first problem, deepest first)."""
    from jsonschema import Draft202012Validator

    registry, _ = _registry()
    validator = Draft202012Validator({**root, "$id": uri or f"{_BASE_URI}{label}.yaml"}, registry=registry)
    errors = [e for e in validator.iter_errors(node) if complete or e.validator != "required"]
    if errors:
        raise InputError(_message(label, kind or label, root, min(errors, key=_error_rank)))


def result_keys(group: str, node: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a (valid) option node that can change results: every key not marked ``runtime``."""
    props = schema(group, kind_of(group, node)).get("properties", {})
    return {key: value for key, value in node.items() if not props.get(key, {}).get("runtime", False)}


def runtime_keys(group: str, kind: str) -> tuple[str, ...]:
    """The keys of ``kind`` marked ``runtime: true`` (they never change results)."""
    props = schema(group, kind).get("properties", {})
    return tuple(key for key, spec in props.items() if spec.get("runtime", False))


def needs_gpu(group: str, node: Mapping[str, Any]) -> bool:
    """Whether a job using this option asks for a GPU (the schema's ``gpu``: true, false or ``device``)."""
    gpu = schema(group, kind_of(group, node)).get("gpu", False)
    if gpu == "device":
        return node.get("device") not in ("cpu",)
    return bool(gpu)


def _error_rank(error) -> tuple:
    # deepest first (the most specific), then a stable order
    return (-len(error.absolute_path), str(list(error.absolute_path)), error.validator)


def _message(group: str, kind: str, root: Mapping[str, Any], error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    key = f"{group}.{path}" if path else group
    allowed = sorted(root.get("properties", {})) if not path else None
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        names = sorted(error.schema.get("properties", {})) or allowed or []
        unknown = extra[0] if extra else "?"
        close = difflib.get_close_matches(unknown, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        where = f"{key}.{unknown}" if key else unknown
        listing = f"; {kind} has: {', '.join(names)}" if names else ""
        return f"{where}: unknown key{hint}{listing}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{key}.{missing}: missing (every {group} option of kind {kind} must set it)"
    value = json.dumps(error.instance) if not isinstance(error.instance, str) else repr(error.instance)
    return f"{key} = {value}: {_rule(error)}"


def _rule(error) -> str:
    """What the schema allows, in words."""
    spec, v = error.schema, error.validator
    if isinstance(spec, Mapping) and spec.get("message"):
        return str(spec["message"])
    words = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    if v in words:
        return f"must be {words[v]} {error.validator_value}"
    if v == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        names = {
            "integer": "an integer",
            "number": "a number",
            "boolean": "true or false",
            "string": "a string",
            "array": "a list",
            "object": "a mapping",
            "null": "null",
        }
        return "must be " + " or ".join(names.get(t, t) for t in types)
    if v == "enum":
        return "must be one of " + ", ".join("null" if c is None else str(c) for c in error.validator_value)
    if v == "const":
        return f"must be {error.validator_value!r}"
    if v == "pattern":
        return f"must match {error.validator_value}"
    if v == "minLength":
        return (
            "must not be empty"
            if error.validator_value == 1
            else f"must have at least {error.validator_value} characters"
        )
    if v in ("minItems", "maxItems"):
        return f"must have {'at least' if v == 'minItems' else 'at most'} {error.validator_value} items"
    if spec.get("description"):
        return f"must be {spec['description']}"
    return error.message


def options(group: str, cfg: Any) -> dict[str, Any]:
    """A component's options as a plain dict (from an OmegaConf node or any mapping), checked against its
    schema: unknown keys and bad values are errors; keys left out keep the component's defaults.

    The one way every builder (:func:`l2h.data.get_dataset`, :func:`l2h.features.build_backbone`,
    :func:`l2h.clusterers.build_clusterer`, :func:`l2h.baselines.run_baseline`) reads its config.
    """
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - plain mappings need no omegaconf
        DictConfig = ()
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise InputError(f"{group} config: expected a mapping, got {type(cfg).__name__}")
    node = dict(cfg)
    validate(group, node, complete=False)
    return node
