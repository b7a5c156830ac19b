"""Train a method file (configs/methods/<name>.yaml, a ``method:`` section only) on digits
through tools/train.py, and resume it.

Until ``mixbench.method.resolve_method`` (issue 16) is on main, the method section is
turned here into the old shape it stands for: ``model.type`` and the classifier's options
from ``method.classifier``, ``model.mixer`` from ``method.mixer``, ``model.loss`` from
``method.loss``, ``meta.method`` from ``method.name``. The method file itself is what is
read, so its published settings are what trains.
"""
from __future__ import annotations

import yaml

from mbtest import REPO
from mixbench.config import load_config
from tests.learnable.helpers import train_config

BASES = ("datasets/digits.yaml", "models/resnet8_w16_gray.yaml",
         "schedules/sgd_cosine_short.yaml", "runtime.yaml")


def method_section(name: str) -> dict:
    """The ``method:`` section of configs/methods/<name>.yaml (the file holds nothing else)."""
    cfg = yaml.safe_load((REPO / "configs/methods" / f"{name}.yaml").read_text())
    assert set(cfg) == {"method"}, f"configs/methods/{name}.yaml must hold only `method:`, got {sorted(cfg)}"
    return cfg["method"]


def old_shape(method: dict, base_model: dict) -> dict:
    """The config overrides the method section stands for in the current (old) shape, on
    top of the recipe's ``base_model``. A classifier type other than the base's replaces the
    model dict whole (the merge's type rule), so the model is written out complete."""
    unknown = set(method) - {"name", "classifier", "mixer", "loss"}
    assert not unknown, f"this bridge does not translate {sorted(unknown)}"
    model = {**base_model, "type": "MixupClassifier", "mixer": {"type": "Vanilla"}}
    model.update(method.get("classifier") or {})
    model["mixer"] = dict(method.get("mixer") or {"type": "Vanilla"})
    if "loss" in method:
        model["loss"] = dict(method["loss"])
    return {"meta": {"method": method["name"]}, "model": model}


def train_method_on_digits(tmp_path, name: str, epochs: int = 2, work: str = "work",
                           extra_args=(), overrides=None) -> dict:
    """Train configs/methods/<name>.yaml with a width-16 ResNet-8 on 128 digits images (2
    iterations per epoch) for ``epochs`` epochs; check that it finished with finite losses
    and return its result.json."""
    bases = [str(REPO / "configs/_base_" / b) for b in BASES]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"_base_": bases}))
    cfg = {"_base_": bases, "train_dataloader": {"dataset": {"max_samples": 128}},
           "train_cfg": {"max_epochs": epochs}}
    cfg.update(old_shape(method_section(name), load_config(recipe)["model"]))
    for key, value in (overrides or {}).items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    config = tmp_path / f"digits_{name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return train_config(config, tmp_path / work, epochs, extra_args)


def train_and_resume(tmp_path, name: str, overrides=None) -> tuple:
    """Train 2 epochs, then again resumed from the epoch-1 checkpoint into a fresh work dir;
    both must end with the same validation record and the same weights. Returns the two
    result.json dicts."""
    import torch

    keep = {"default_hooks": {"checkpoint": {"max_keep_ckpts": 2}}}   # epoch_1.pth stays
    overrides = {**keep, **(overrides or {})}
    result = train_method_on_digits(tmp_path, name, overrides=overrides)
    resumed = train_method_on_digits(tmp_path, name, work="resumed", overrides=overrides,
                                     extra_args=("--resume", tmp_path / "work" / "epoch_1.pth"))
    assert resumed["history"][-1] | {"wall_s": 0} == result["history"][-1] | {"wall_s": 0}
    a = torch.load(tmp_path / "work" / "epoch_2.pth", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "epoch_2.pth", map_location="cpu", weights_only=False)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"resumed run differs in {key}"
    return result, resumed


def check_model_untouched(mixer, clf) -> None:
    """A mixer's extra pass through ``clf`` (in train mode) leaves no gradient, no changed
    weight or BatchNorm statistic, and every train/eval flag as it was."""
    import torch

    from tests.mixers.helpers import make_batch

    clf.train()
    stats = {k: v.clone() for k, v in clf.state_dict().items()}
    x, y = make_batch()
    mixer(x, y, model=clf)
    assert clf.training and all(m.training for m in clf.modules())
    assert all(p.grad is None for p in clf.parameters())
    assert all(torch.equal(v, clf.state_dict()[k]) for k, v in stats.items())
