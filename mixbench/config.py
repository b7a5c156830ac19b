"""YAML configs with ``_base_`` inheritance, loaded safely (a config never runs code).

Only the standard library and PyYAML: the sweep and the leaderboard use this without torch.

Merge rules (explicit, the whole list):
- ``_base_`` is a path or a list of paths relative to the file; bases are merged in order,
  then the file itself on top.
- dicts merge key by key, recursively; any other value (list, scalar) replaces.
- a dict whose ``type`` differs from the base dict's ``type`` replaces it whole (switching
  ``mixer: {type: CutMix}`` over ``{type: Mixup, alpha: 1}`` does not inherit ``alpha``).
- ``_delete_: true`` inside a dict replaces the base dict whole.
- the top-level ``method:`` section (:mod:`mixbench.method`) replaces its base's whole: a
  file, a sweep axis or ``--cfg-options method={...}`` swaps the method, never blends two;
  dotted overrides (``method.mixer.alpha=0.2``) patch it.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
#: top-level sections that a later file or override replaces whole instead of merging into
WHOLE_KEYS = ("method",)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and the file."""


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that run code) reading numbers as YAML 1.2 does.

    YAML 1.1, which PyYAML implements, wants a dot in a float and a sign on its exponent,
    so ``5e-4``, ``1e-3`` and ``1e1`` would be read as strings; here they are floats, as
    every learning rate in every config means. ``.inf``/``.nan`` stay floats as before."""


ConfigLoader.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text safely with :class:`ConfigLoader` (``1e-3`` is a float)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at top level, got {type(data).__name__}")
    return data


def merge(base: Any, override: Any) -> Any:
    """Merge ``override`` onto ``base`` by the rules in the module docstring (no mutation)."""
    if not isinstance(override, Mapping):
        return copy.deepcopy(override)
    override = dict(override)
    delete = bool(override.pop(DELETE_KEY, False))
    if (
        delete
        or not isinstance(base, Mapping)
        or ("type" in override and "type" in base and override["type"] != base["type"])
    ):
        return {k: merge(None, v) for k, v in override.items()}
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        out[key] = merge(out[key], value) if key in out else merge(None, value)
    return out


def merge_config(base: Mapping, override: Mapping) -> dict:
    """:func:`merge` of two whole configs: as ``merge``, except that the sections in
    :data:`WHOLE_KEYS` of ``override`` replace the base's whole."""
    kept = {k: v for k, v in base.items() if not (k in WHOLE_KEYS and k in override)}
    return merge(kept, override)


def _load_tree(path: Path, stack: tuple) -> dict:
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"circular _base_ inheritance: {chain}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: dict = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ file {base!r} not found (looked at {base_path})")
        merged = merge_config(merged, _load_tree(base_path, stack + (path,)))
    return merge_config(merged, data)


def parse_value(text: str, key: str = "") -> Any:
    """Parse a ``--cfg-options`` value: YAML scalars/lists/dicts (``0.1``, ``1e-3``, ``true``,
    ``[1, 2]``, ``{type: CutMix}``), falling back to the raw string. A value that opens a
    mapping or a list (``{``, ``[``) and does not parse is an error, never a string."""
    try:
        return yaml_load(text)
    except yaml.YAMLError as e:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if text.lstrip()[:1] in ("{", "["):
                problem = str(getattr(e, "problem", None) or e).strip()
                raise ConfigError(
                    f"--cfg-options {key or 'value'}={text!r}: not a valid YAML "
                    f"{'mapping' if text.lstrip()[0] == '{' else 'list'} ({problem}); check the "
                    "brackets and commas and quote the whole option, e.g. "
                    '"model.mixer={type: Mixup, alpha: 1.0}"'
                ) from None
            return text


def options_to_dict(options: Iterable[str] | Mapping[str, Any] | None) -> dict:
    """Turn ``["model.mixer.alpha=0.2", ...]`` (or ``{"model.mixer.alpha": 0.2}``) into a
    nested override dict."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        items = list(options.items())
    else:
        items = []
        for opt in options:
            if "=" not in opt:
                raise ConfigError(f"--cfg-options entries look like key.sub=value, got {opt!r}")
            key, value = opt.split("=", 1)
            items.append((key.strip(), parse_value(value, key.strip())))
    out: dict = {}
    for key, value in items:
        node = out
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"bad config key {key!r}")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--cfg-options: {key!r} sets a key under a non-mapping value")
        node[parts[-1]] = value
    return out


def set_by_path(cfg: dict, options: Iterable[str] | Mapping[str, Any]) -> dict:
    """Apply dotted overrides; an overriding value replaces (no ``type`` rule) except for dicts,
    and an undotted ``method=...`` replaces the method section whole (:data:`WHOLE_KEYS`)."""
    options = options if isinstance(options, Mapping) else list(options)
    keys = options if isinstance(options, Mapping) else [o.split("=", 1)[0] for o in options]
    whole = {str(k).strip() for k in keys} & set(WHOLE_KEYS)
    cfg = {k: v for k, v in cfg.items() if k not in whole}
    return merge(cfg, options_to_dict(options))


def load_config(path: str | Path, overrides: Iterable[str] | Mapping[str, Any] | None = None) -> dict:
    """Load a YAML config with its ``_base_`` chain and apply ``--cfg-options`` overrides.

    The returned dict carries ``_source_`` = the config file's path (for error messages).
    """
    path = Path(path)
    cfg = _load_tree(path, ())
    if overrides:
        cfg = set_by_path(cfg, overrides)
    cfg["_source_"] = str(path)
    return cfg


def dump_config(cfg: Mapping, path: str | Path | None = None) -> str:
    """The resolved config as YAML (``_source_`` dropped); written to ``path`` if given."""
    clean = {k: v for k, v in cfg.items() if k != "_source_"}
    text = yaml.safe_dump(_plain(clean), sort_keys=False, default_flow_style=None)
    if path is not None:
        from mixbench.results import atomic_write_text

        atomic_write_text(path, text)
    return text


def config_hash(cfg: Mapping) -> str:
    """sha256 of the resolved config's canonical JSON, minus run-local keys (work_dir)."""
    clean = {k: v for k, v in cfg.items() if k not in ("_source_", "work_dir", "launcher")}
    blob = json.dumps(_plain(clean), sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def get_path(cfg: Mapping, dotted: str, default: Any | None = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def closest(name: str, names, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The names closest to ``name`` (difflib), case-insensitively as a fallback: the one
    suggestion every "unknown key/option/type" message of mixbench makes."""
    names = list(names)
    close = difflib.get_close_matches(name, names, n=n, cutoff=cutoff)
    if not close:
        lower = {x.lower(): x for x in names}
        close = [lower[x] for x in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=cutoff)]
    return close


def did_you_mean(name: str, names) -> str:
    close = closest(name, names)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
