"""A method as one unit of a config: the ``method:`` section, and how it becomes a model.

Everything that distinguishes a method from Vanilla lives in one top-level section that never
names a backbone and replaces whole when a later file, a sweep axis or ``--cfg-options
method=...`` swaps it (dotted overrides such as ``method.mixer.alpha=0.2`` patch it)::

    method:
      name: AutoMix                       # what meta.method, result.json and the leaderboard say
      classifier: {type: AutoMixClassifier, alpha: 2.0, mask_stage: 3, ...}
                                          # default {type: MixupClassifier}
      mixer: {type: Mixup, alpha: 1.0}    # default: the classifier's own (Vanilla for MixupClassifier)
      loss: {type: DecoupledMixupLoss, eta: 0.1}   # optional: merged onto the recipe's model.loss
      paramwise_cfg: {custom_keys: {mix_block: {lr_mult: 1.0}}}   # optional: into optim_wrapper
      hooks: [{type: ..., ...}]           # optional: appended to custom_hooks

The ``model:`` section is the training recipe of a backbone: ``backbone``, ``neck``, ``head``,
``loss`` (e.g. label smoothing 0.1 for DeiT), ``data_preprocessor``. :func:`resolve_method`
assembles the model the Runner builds::

    model = {type: classifier.type, **classifier options,
             backbone, neck, head, data_preprocessor (from model),
             mixer: method.mixer, loss: merge(model.loss, method.loss)}

(``merge``'s rule: a loss of another ``type`` replaces the recipe's whole, so DecoupleMix on
DeiT drops the recipe's label smoothing unless its own loss sets it.) What a method needs from
the backbone (a feature map at a stage, class-token attention) is declared by its classifier
and mixer classes and checked against what the backbone offers before training
(:func:`mixbench.models.backbones.base.check_capabilities`).

Only the standard library: the sweep and the leaderboard read methods without torch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from mixbench.config import ConfigError, did_you_mean, merge

METHOD_KEY = "method"
#: keys of a ``method:`` section
METHOD_KEYS = ("name", "classifier", "mixer", "loss", "paramwise_cfg", "hooks")
DEFAULT_CLASSIFIER = "MixupClassifier"
#: keys of ``model:`` that belong to the method (refused there, with the fix)
METHOD_OWNED_MODEL_KEYS = {"type": "method.classifier.type", "mixer": "method.mixer"}
#: the keys of ``model:``: the backbone's training recipe
RECIPE_KEYS = ("backbone", "neck", "head", "loss", "data_preprocessor", "init_cfg")


def _where(cfg: Mapping) -> str:
    return str(cfg.get("_source_", "<config>"))


def method_section(cfg: Mapping) -> dict:
    """The config's ``method:`` section, checked and completed with its defaults:
    ``{name, classifier, mixer, loss, paramwise_cfg, hooks}`` (``mixer`` None when the method
    leaves it to its classifier: Vanilla for MixupClassifier, none for AutoMix, whose Mix Block
    mixes; ``loss`` None when the method keeps the recipe's loss). A config without the
    section is Vanilla."""
    src = _where(cfg)
    raw = cfg.get(METHOD_KEY)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{src}: `method` must be a mapping such as "
            f"`method: {{name: Mixup, mixer: {{type: Mixup, alpha: 1.0}}}}`, got {raw!r}"
        )
    unknown = [k for k in raw if k not in METHOD_KEYS]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{src}: unknown key method.{key}{did_you_mean(key, METHOD_KEYS)} "
            f"A method section has {', '.join(METHOD_KEYS)}."
        )
    classifier = raw.get("classifier") or {"type": DEFAULT_CLASSIFIER}
    mixer = raw.get("mixer")
    for key, value in (("classifier", classifier), ("mixer", mixer), ("loss", raw.get("loss"))):
        if value is not None and (not isinstance(value, Mapping) or "type" not in value):
            raise ConfigError(
                f"{src}: method.{key} must be a mapping with a `type`, "
                f"e.g. {{type: {_EXAMPLES[key]}}}, got {value!r}"
            )
    hooks = raw.get("hooks") or []
    if not isinstance(hooks, list) or not all(isinstance(h, Mapping) and "type" in h for h in hooks):
        raise ConfigError(f"{src}: method.hooks must be a list of mappings with a `type`, got {hooks!r}")
    paramwise = raw.get("paramwise_cfg") or {}
    if not isinstance(paramwise, Mapping):
        raise ConfigError(
            f"{src}: method.paramwise_cfg must be a mapping (mmengine's "
            f"paramwise_cfg, e.g. {{custom_keys: {{mix_block: {{lr_mult: 1.0}}}}}}), "
            f"got {paramwise!r}"
        )
    name = raw.get("name") or _default_name(classifier, mixer)
    if not isinstance(name, str):
        raise ConfigError(f"{src}: method.name must be a string, got {name!r}")
    return copy.deepcopy(
        {
            "name": name,
            "classifier": dict(classifier),
            "mixer": dict(mixer) if mixer is not None else None,
            "loss": dict(raw["loss"]) if raw.get("loss") else None,
            "paramwise_cfg": dict(paramwise),
            "hooks": list(hooks),
        }
    )


_EXAMPLES = {
    "classifier": DEFAULT_CLASSIFIER,
    "mixer": "Mixup, alpha: 1.0",
    "loss": "DecoupledMixupLoss, eta: 0.1",
}


def _default_name(classifier: Mapping, mixer: Mapping | None) -> str:
    if classifier.get("type", DEFAULT_CLASSIFIER) != DEFAULT_CLASSIFIER:
        return str(classifier["type"]).removesuffix("Classifier")
    return str((mixer or {}).get("type", "Vanilla"))


def method_name(cfg: Mapping) -> str:
    return method_section(cfg)["name"]


def check_model_section(cfg: Mapping) -> None:
    """``model:`` holds the backbone's recipe (:data:`RECIPE_KEYS`); the method's keys there
    are refused with the fix, and any other key with the closest name (a classifier option
    such as ``mask_stage`` belongs to ``method.classifier``)."""
    model = cfg.get("model")
    if not isinstance(model, Mapping):
        return
    for key, fix in METHOD_OWNED_MODEL_KEYS.items():
        if key in model:
            raise ConfigError(
                f"{_where(cfg)}: model.{key} is part of the method; write it as {fix} "
                f"(e.g. `method: {{mixer: {{type: Mixup, alpha: 1.0}}}}`, "
                "`method: {classifier: {type: AutoMixClassifier, ...}}`). The model section "
                "keeps the backbone's recipe: backbone, neck, head, loss, data_preprocessor"
            )
    unknown = [k for k in model if k not in RECIPE_KEYS]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{_where(cfg)}: unknown key model.{key}{did_you_mean(key, RECIPE_KEYS)} The model "
            f"section is the backbone's recipe ({', '.join(RECIPE_KEYS)}); an option of the "
            f"method's classifier goes under method.classifier (method.classifier.{key})"
        )


def resolve_method(cfg: Mapping) -> dict:
    """The runnable config: ``model`` assembled from the recipe and the method section,
    the method's parameter groups merged into ``optim_wrapper.paramwise_cfg`` and its hooks
    appended to ``custom_hooks``. The ``method`` section stays (it is the run's identity)."""
    check_model_section(cfg)
    method = method_section(cfg)
    out = copy.deepcopy(dict(cfg))
    recipe = dict(out.get("model") or {})
    classifier = dict(method["classifier"])
    clash = sorted(set(classifier) & (set(recipe) | {"mixer"}) - {"type"})
    if clash:
        raise ConfigError(
            f"{_where(cfg)}: method.classifier sets {clash}, which the recipe "
            "(model.*) or method.mixer owns; set them there"
        )
    model = {"type": classifier.pop("type"), **recipe, **classifier}
    if method["mixer"] is not None:
        model["mixer"] = method["mixer"]
    if method["loss"] is not None:
        model["loss"] = merge(recipe.get("loss") or {}, method["loss"])
    out["model"] = model
    if method["paramwise_cfg"]:
        wrapper = dict(out.get("optim_wrapper") or {})
        wrapper["paramwise_cfg"] = merge(wrapper.get("paramwise_cfg") or {}, method["paramwise_cfg"])
        out["optim_wrapper"] = wrapper
    if method["hooks"]:
        out["custom_hooks"] = list(out.get("custom_hooks") or []) + method["hooks"]
    out[METHOD_KEY] = method
    return out


def method_from_fragment(fragment: Mapping, where: str) -> dict:
    """The ``method:`` section of a method file (a config holding only ``method:``); a file
    that holds something else (a backbone, a schedule) is refused: a method never names a
    backbone."""
    extra = sorted(k for k in fragment if k not in (METHOD_KEY, "_source_"))
    if METHOD_KEY not in fragment:
        raise ConfigError(
            f"{where}: no `method:` section; a method file looks like "
            "`method: {name: CutMix, mixer: {type: CutMix, alpha: 0.2}}`"
        )
    if extra:
        raise ConfigError(
            f"{where}: a method file holds only a `method:` section (it never names "
            f"a backbone, dataset or schedule), found also {extra}"
        )
    return dict(fragment[METHOD_KEY])
