"""MixupClassifier: backbone + neck + head + loss, with a mixer applied inside ``loss()``."""

from __future__ import annotations

import torch
from mmengine.model import BaseModel
from torch import Tensor

from mixbench.mixers.base import MixOutput
from mixbench.models.backbones.base import check_capabilities
from mixbench.registry import MODELS, build_mixer, check_type


def build_module(cfg: dict, where: str, **defaults):
    cfg = dict(cfg)
    check_type(MODELS, cfg.get("type"), f"{where}.type")
    for k, v in defaults.items():
        cfg.setdefault(k, v)
    return MODELS.build(cfg)


@MODELS.register_module()
class MixupClassifier(BaseModel):
    """Image classifier trained with a mixup policy.

    A training step, as data::

        out = mixer(inputs, labels, model=self)           # MixOutput
        logits = self.logits(out.inputs, out.stage_hook)  # backbone -> neck -> head
        loss = loss_module(logits, out)                   # mixed / soft-target CE
        losses = {"loss": loss, **out.extra_losses}       # e.g. Co-Mixup's clean_loss

    Args:
        backbone: config of a backbone following the stage-hook contract.
        head: head config; ``in_channels`` defaults to the backbone's last stage width.
        neck: pooling (default ``GlobalAveragePool``).
        loss: default ``MixedCrossEntropy``.
        mixer: mixer config (default ``Vanilla``), built from the MIXERS registry.
        data_preprocessor: default ``ClassifierDataPreprocessor``.
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        neck: dict | None = None,
        loss: dict | None = None,
        mixer: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ):
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault("type", "ClassifierDataPreprocessor")
        check_type(MODELS, data_preprocessor["type"], "model.data_preprocessor.type")
        super().__init__(data_preprocessor=MODELS.build(data_preprocessor), init_cfg=init_cfg)
        self.backbone = build_module(backbone, "model.backbone")
        self.neck = build_module(neck or {"type": "GlobalAveragePool"}, "model.neck")
        self.head = build_module(head, "model.head", in_channels=self.backbone.out_channels[-1])
        self.loss_module = build_module(loss or {"type": "MixedCrossEntropy"}, "model.loss")
        self.mixer = build_mixer(mixer)
        self.check_backbone(type(self.mixer).__name__, *self.mixer.requires)

    def check_backbone(self, who: str, *needs: str) -> None:
        """Fail before training unless the backbone offers what ``who`` needs (capability names
        of :data:`mixbench.models.backbones.base.CAPABILITY_HELP`)."""
        check_capabilities(who, needs, self.backbone)

    def require_vanilla_mixer(self, who: str, why: str) -> None:
        """Fail unless the mixer is Vanilla: for methods that make their own views or mixed
        samples (``why`` says so in the message)."""
        if type(self.mixer).__name__ != "Vanilla":
            raise ValueError(
                f"{who} {why}; method.mixer must be Vanilla (or left out), got {type(self.mixer).__name__}"
            )

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def logits(self, inputs: Tensor, stage_hook=None) -> Tensor:
        return self.head(self.neck(self.backbone(inputs, stage_hook=stage_hook)))

    def forward(self, inputs: Tensor, data_samples: Tensor | None = None, mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.logits(inputs)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        out = self.mixer(inputs, labels, model=self)
        logits = self.logits(out.inputs, stage_hook=out.stage_hook)
        return self.mixed_losses(self.loss_module(logits, out), out)

    def mixed_losses(self, loss: Tensor, out: MixOutput) -> dict:
        """``{"loss": loss}`` plus the mix's ``extra_losses`` (the MixOutput contract: named
        terms, each name containing ``loss``, which mmengine sums into the training loss)."""
        for name in out.extra_losses:
            if name == "loss" or "loss" not in name:
                raise ValueError(
                    f"{type(self.mixer).__name__} returned an extra loss named {name!r}; "
                    "extra_losses names must contain 'loss' (mmengine sums only those "
                    "into the training loss) and differ from 'loss' itself"
                )
        return {"loss": loss, **out.extra_losses}

    @torch.no_grad()
    def predict(self, inputs: Tensor, labels: Tensor | None = None) -> list:
        logits = self.logits(inputs)
        return [{"logits": logits.float(), "labels": labels}]
