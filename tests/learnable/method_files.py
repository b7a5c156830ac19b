"""Method files in the new shape (configs/methods/<name>.yaml: one ``method:`` section) for
the tests of issue 18's methods, assembled into a model the way ``resolve_method`` will
(issue 16): classifier options + the recipe's backbone/head + the method's mixer and loss.
Until that lands on main, the digits runs use the old shape (model.type, model.mixer)."""
from __future__ import annotations

import yaml

from mbtest import REPO
from tests.learnable.helpers import train_on_digits

METHODS = REPO / "configs/methods"


def load_method(name: str) -> dict:
    """The ``method:`` section of configs/methods/<name>.yaml (it must hold nothing else)."""
    cfg = yaml.safe_load((METHODS / f"{name}.yaml").read_text())
    assert set(cfg) == {"method"}, f"{name}.yaml must hold only a method: section, has {sorted(cfg)}"
    return cfg["method"]


def model_from_method(method: dict, backbone: dict, head: dict, loss: dict | None = None) -> dict:
    """The old-shape model config of ``method`` on a recipe (backbone, head, loss)."""
    classifier = dict(method.get("classifier", {"type": "MixupClassifier"}))
    loss = dict(loss or {"type": "MixedCrossEntropy"})
    extra = method.get("loss")
    if extra:   # the type rule: another type replaces the recipe's loss whole
        loss = dict(extra) if extra.get("type", loss["type"]) != loss["type"] else {**loss, **extra}
    return {**classifier, "backbone": backbone, "head": head, "loss": loss,
            "mixer": method.get("mixer", {"type": "Vanilla"})}


def train_method_on_digits(tmp_path, method_file: str, backbone: dict, backbone_name: str,
                           method: dict | None = None, **kwargs) -> dict:
    """2 epochs of configs/methods/``method_file``.yaml (or the ``method`` section given) on 128 digits with
    ``backbone``, through tools/train.py (see :func:`train_on_digits`); returns result.json."""
    method = method or load_method(method_file)
    model = model_from_method(method, backbone, {"type": "LinearHead"})
    overrides = {"model": model, "meta": {"method": method["name"], "backbone": backbone_name},
                 "default_hooks": {"checkpoint": {"max_keep_ckpts": 3}}}
    return train_on_digits(tmp_path, "vanilla", overrides, **kwargs)
