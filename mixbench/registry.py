"""All of mixbench's registries, in one module.

Each is a child of mmengine's root registry of the same kind, so mmengine's Runner builds
our classes from config dicts (``default_scope='mixbench'``). Classes register themselves
in the file that defines them, with one exception: the mixers (which must not import
mmengine) are registered here in bulk from ``mixbench.mixers.__all__``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

from mixbench.config import ConfigError, closest, did_you_mean

if TYPE_CHECKING:  # the mixers import no mmengine; this module imports them lazily
    from mixbench.mixers.base import BaseMixer

SCOPE = "mixbench"

MODELS = Registry("model", parent=MMENGINE_MODELS, scope=SCOPE, locations=["mixbench.models"])
MIXERS = Registry("mixer", scope=SCOPE, locations=["mixbench.mixers"])
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope=SCOPE, locations=["mixbench.data"])
# per-sample transforms of a dataset's ``pipeline`` (run in the loader, on one uint8 image)
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope=SCOPE, locations=["mixbench.data"])
# batched augments of ``model.data_preprocessor.batch_augments`` / ``normalized_batch_augments``
# (run on the device, on a whole (B, C, H, W) batch); kept apart from TRANSFORMS so that a
# config cannot list one where the other belongs (mmpretrain's BATCH_AUGMENTS does the same)
BATCH_AUGMENTS = Registry("batch augment", scope=SCOPE, locations=["mixbench.data"])
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope=SCOPE, locations=["mixbench.engine"])
EVALUATOR = Registry("evaluator", parent=MMENGINE_EVALUATOR, scope=SCOPE)
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope=SCOPE, locations=["mixbench.engine"])
OPTIM_WRAPPERS = Registry(
    "optim_wrapper", parent=MMENGINE_OPTIM_WRAPPERS, scope=SCOPE, locations=["mixbench.engine"]
)
OPTIMIZERS = Registry("optimizer", parent=MMENGINE_OPTIMIZERS, scope=SCOPE)
PARAM_SCHEDULERS = Registry("parameter scheduler", parent=MMENGINE_PARAM_SCHEDULERS, scope=SCOPE)
DATA_SAMPLERS = Registry("data sampler", parent=MMENGINE_DATA_SAMPLERS, scope=SCOPE)
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, scope=SCOPE)
MODEL_WRAPPERS = Registry(
    "model_wrapper", parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE, locations=["mixbench.engine"]
)
RUNNERS = Registry("runner", parent=MMENGINE_RUNNERS, scope=SCOPE)
VISBACKENDS = Registry("vis_backend", parent=MMENGINE_VISBACKENDS, scope=SCOPE)
VISUALIZERS = Registry("visualizer", parent=MMENGINE_VISUALIZERS, scope=SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor", parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope=SCOPE
)
# collate functions (``batch_collate``); mixbench's runner resolves a dataloader's
# ``collate_fn`` type here (mixbench/engine/compat.py: mmengine's own lookup would not)
FUNCTIONS = Registry("function", parent=MMENGINE_FUNCTIONS, scope=SCOPE, locations=["mixbench.data"])
LOG_PROCESSORS = Registry("log_processor", parent=MMENGINE_LOG_PROCESSORS, scope=SCOPE)
WEIGHT_INITIALIZERS = Registry("weight initializer", parent=MMENGINE_WEIGHT_INITIALIZERS, scope=SCOPE)


def _register_mixers() -> None:
    from mixbench import mixers
    from mixbench.mixers.base import BaseMixer

    for name in mixers.__all__:
        obj = getattr(mixers, name)
        is_mixer = inspect.isclass(obj) and issubclass(obj, BaseMixer) and not inspect.isabstract(obj)
        is_factory = callable(obj) and getattr(obj, "is_mixer_factory", False)
        if (is_mixer or is_factory) and MIXERS.get(name) is None:
            MIXERS.register_module(name=name, module=obj)


_register_mixers()


def registered_names(registry: Registry) -> list[str]:
    """All names visible from ``registry``: its own, and its parents' (mmengine's)."""
    names = set(registry.module_dict)
    parent = registry.parent
    while parent is not None:
        names.update(parent.module_dict)
        parent = parent.parent
    return sorted(names)


class UnknownTypeError(KeyError):
    """A config asked for a ``type`` that its registry does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MisplacedTypeError(UnknownTypeError):
    """A config lists a per-sample transform among the batch augments or the other way
    round: the type is registered, but in the other registry."""


#: The two places a config lists augmentations: (registry, what its members are, where
#: they go, how the other place is called). A type asked for in one and registered in the
#: other is misplaced: the message says where it belongs.
AUGMENT_PLACES = (
    (
        TRANSFORMS,
        "a per-sample transform",
        "in the dataset pipeline (train_dataloader.dataset.pipeline)",
        "in the dataset pipeline",
    ),
    (
        BATCH_AUGMENTS,
        "a batch augment",
        "under model.data_preprocessor.batch_augments (normalized_batch_augments if it acts on "
        "normalised images)",
        "among the batch augments",
    ),
)


def misplaced_message(registry: Registry, name: str, where: str = "") -> str | None:
    """The message for ``name`` asked for in ``registry`` (one of :data:`AUGMENT_PLACES`)
    while the other one holds it, e.g. "RandomCropPad is a batch augment: put it under
    model.data_preprocessor.batch_augments (...), not in the dataset pipeline (at
    train_dataloader.dataset.pipeline[0])"; None when that is not the case."""
    here = [place for reg, _, _, place in AUGMENT_PLACES if reg is registry]
    if not here:
        return None
    for other, kind, belongs, _ in AUGMENT_PLACES:
        if other is not registry and other.get(name) is not None:
            loc = f" (at {where})" if where else ""
            return f"{name} is {kind}: put it {belongs}, not {here[0]}{loc}"
    return None


def unknown_type_message(registry: Registry, name: str, where: str = "") -> str:
    names = registered_names(registry)
    close = closest(name, names, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
    ours = sorted(registry.module_dict)
    listed = ", ".join(ours) if ours else ", ".join(names[:40])
    loc = f" (at {where})" if where else ""
    return f"Unknown {registry.name} {name!r}{loc}{hint} Registered in mixbench: {listed}"


def check_type(registry: Registry, name, where: str = "") -> None:
    """Raise :class:`UnknownTypeError` naming the closest registered names, or
    :class:`MisplacedTypeError` saying where an augmentation belongs when the other
    augmentation registry holds it."""
    if not isinstance(name, str):
        return  # a class object given directly
    if registry.get(name) is None:
        misplaced = misplaced_message(registry, name, where)
        if misplaced is not None:
            raise MisplacedTypeError(misplaced)
        raise UnknownTypeError(unknown_type_message(registry, name, where))


def build_mixer(cfg: Mapping[str, Any] | BaseMixer | None) -> BaseMixer:
    """Build a mixer from a config dict (``{type: CutMix, alpha: 1.0}``) or return an instance."""
    from mixbench.mixers.base import BaseMixer

    if cfg is None:
        cfg = {"type": "Vanilla"}
    if isinstance(cfg, BaseMixer):
        return cfg
    cfg = dict(cfg)
    mixer_type = cfg.pop("type", None)
    if mixer_type is None:
        raise ValueError("a mixer config needs a 'type' key, e.g. {type: Mixup, alpha: 1.0}")
    check_type(MIXERS, mixer_type, "method.mixer.type")
    cls = MIXERS.get(mixer_type)
    if "mixers" in cfg:  # RandomChoice-style composites take mixer configs
        cfg["mixers"] = [build_mixer(m) for m in cfg["mixers"]]
    return cls(**cfg)


class UnknownOptionError(ConfigError):
    """A component's config has an option its constructor does not take, or lacks one it
    needs; the message names the component, the key, the closest names and the fix."""


#: Keys of a component's config that are not constructor arguments: ``type`` always; the
#: optimizer-wrapper keys that mmengine's optimizer constructor consumes itself.
NOT_ARGUMENTS = frozenset({"type", "_scope_"})


def _signature_options(obj) -> tuple[dict, bool] | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = {
        n: p
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"
    }
    return params, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def constructor_options(obj) -> tuple[dict, bool] | None:
    """``({name: inspect.Parameter}, takes any keyword)`` of a class's constructor (or a
    factory function), without ``self`` and ``*args``; None where Python cannot tell.

    A mixbench class whose ``__init__`` takes ``**kwargs`` hands them to (or refuses them
    for) its base classes, so the ``__init__`` parameters of its mixbench bases up the MRO
    count too, until one that takes no ``**kwargs`` (then the options are closed) or a class
    outside mixbench (``nn.Module``, timm, mmengine: then any keyword may be meant for it)."""
    if not inspect.isclass(obj) or not obj.__module__.startswith("mixbench"):
        return _signature_options(obj)
    params: dict = {}
    for cls in obj.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        if not cls.__module__.startswith("mixbench"):
            return params, True
        found = _signature_options(init)
        if found is None:
            return None
        for name, param in found[0].items():
            params.setdefault(name, param)
        if not found[1]:
            return params, False
    return params, True


def check_options(
    registry: Registry,
    cfg: Mapping,
    where: str = "",
    source: str = "",
    provided: Iterable[str] = (),
    default_type=None,
    extra: Iterable[str] = (),
) -> None:
    """Check a component's config against the constructor it will be built with.

    ``cfg`` is the component's dict (``{type: ResNetCIFAR, depth: 8, widht: 8}``); its
    ``type`` (or ``default_type`` when it has none: what the builder uses then) is looked
    up in ``registry`` (an unknown type raises :class:`UnknownTypeError`). Every other key
    must be a parameter of the constructor (any key passes when it takes ``**kwargs``),
    else :class:`UnknownOptionError` names the key, the closest parameter names (difflib)
    and all of them. A parameter without a default must be given, unless the builder
    fills it (``provided``, e.g. ``params`` of an optimizer). ``extra`` are keys the
    builder consumes itself (e.g. ``paramwise_cfg`` of an optimizer wrapper). ``where``
    says where the dict is (``"model.backbone"``) and ``source`` in which file, for the
    messages.
    """
    type_name = cfg.get("type", default_type)
    if type_name is None:
        return
    src = f" in {source}" if source else ""
    check_type(registry, type_name, (f"{where}.type" if where and "type" in cfg else where) + src)
    obj = registry.get(type_name) if isinstance(type_name, str) else type_name
    found = constructor_options(obj)
    if found is None:
        return
    params, takes_kwargs = found
    name = getattr(obj, "__name__", str(type_name))
    loc = f"{where}{src}: " if where or src else ""
    allowed = set(params) | set(extra) | NOT_ARGUMENTS
    if not takes_kwargs:
        for key in cfg:
            if key not in allowed:
                listed = ", ".join(sorted(p for p in params if p not in set(provided)))
                raise UnknownOptionError(
                    f"{loc}{name} has no option {key!r}{did_you_mean(str(key), params)} "
                    f"{name} takes: {listed or '(no options)'}. Correct or remove the key."
                )
    missing = [
        p
        for p, spec in params.items()
        if spec.default is inspect.Parameter.empty and p not in cfg and p not in set(provided)
    ]
    if missing:
        raise UnknownOptionError(
            f"{loc}{name} needs {', '.join(repr(m) for m in missing)}, which the config does "
            f"not give; add {missing[0]}: <value> there"
        )
