"""Replays of timm's and torchvision's AugMix for tests/learnable/test_augmix_libraries.py:
each runs the library's AugMix once on one image and records what it drew (per chain the
op names and levels, on the official scale, by our op names), each chain's output and the
mixing weights, so that our ``run_chains`` / ``mix_chains`` can be run on the same draws."""

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import AugMixAugment, augmix_ops
from torchvision.transforms.v2 import AugMix


@dataclass
class Replay:
    chains: list  # per chain: [(our op name, signed level), ...]
    outputs: list  # per chain: its output, (C, H, W) float
    weights: torch.Tensor  # (width,)
    m: torch.Tensor  # ()
    result: torch.Tensor  # the library's AugMix image, (C, H, W) float

    def draws(self, ops):
        """``op_index``, ``depths``, ``levels`` for ``run_chains`` over ``ops``."""
        steps = max(len(c) for c in self.chains)
        pad = [[(ops[0], 0.0)] * (steps - len(c)) for c in self.chains]
        op_index = torch.tensor([[ops.index(n) for n, _ in c + p] for c, p in zip(self.chains, pad)])
        levels = torch.tensor(
            [[lv for _, lv in c + p] for c, p in zip(self.chains, pad)], dtype=torch.float64
        )
        return op_index, torch.tensor([len(c) for c in self.chains]), levels


def chw(img) -> torch.Tensor:
    """A PIL image or (H, W, C) uint8 array as a (C, H, W) float tensor."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float()


def timm_replay(arr: np.ndarray, names: dict, hparams: dict, severity: int = 3, width: int = 3) -> Replay:
    """timm's ``AugMixAugment`` over ``augmix_ops(severity, hparams, list(names))`` on the RGB
    array ``arr``; ``names`` maps each timm op name to ours (its magnitude M is then our
    level, negated where timm negated the op's argument). Draws from numpy's and ``random``'s
    global states, as timm."""
    img = Image.fromarray(arr)
    chains: list = []
    outputs: list = []

    def wrap(op):
        level_fn, drawn = op.level_fn, {"level": 0.0}

        def record_level(magnitude, hp):
            args = level_fn(magnitude, hp)
            drawn["level"] = math.copysign(magnitude, args[0]) if op.name.startswith("Shear") else magnitude
            return args

        if level_fn is not None:
            op.level_fn = record_level

        def call(image):
            if image is img:  # timm starts every chain from the image itself
                chains.append([])
                outputs.append(None)
            out = op(image)
            chains[-1].append((names[op.name], drawn["level"]))
            outputs[-1] = chw(out)
            return out

        return call

    ops = [wrap(op) for op in augmix_ops(magnitude=severity, hparams=hparams, transforms=list(names))]
    augment = AugMixAugment(ops, alpha=1.0, width=width, depth=-1)
    weights = {}
    basic = augment._apply_basic

    def apply_basic(image, mixing_weights, m):
        weights.update(w=mixing_weights, m=m)
        return basic(image, mixing_weights, m)

    augment._apply_basic = apply_basic
    result = chw(augment(img))
    return Replay(chains, outputs, torch.from_numpy(weights["w"]), torch.tensor(weights["m"]), result)


def torchvision_replay(x8: torch.Tensor, levels: dict, severity: int = 10) -> Replay:
    """torchvision's ``AugMix(severity)`` restricted to the ops of ``levels`` on the uint8
    image ``x8`` (C, H, W); ``levels`` maps each of its op names to (our name, a function
    of its magnitude giving our level). Draws from torch's global generator, as torchvision."""
    augment = AugMix(severity=severity, all_ops=False)
    augment._PARTIAL_AUGMENTATION_SPACE = {
        k: v for k, v in AugMix._PARTIAL_AUGMENTATION_SPACE.items() if k in levels
    }
    chains: list = []
    outputs: list = []
    dirichlet: list = []
    apply = augment._apply_image_or_video_transform

    def record(image, transform_id, magnitude, **kw):
        if image.data_ptr() == x8.data_ptr():  # every chain starts from (a view of) the image
            chains.append([])
            outputs.append(None)
        out = apply(image, transform_id, magnitude, **kw)
        name, level_of = levels[transform_id]
        chains[-1].append((name, level_of(magnitude)))
        outputs[-1] = out.reshape(x8.shape).float()
        return out

    def sample(params):
        dirichlet.append(torch._sample_dirichlet(params))
        return dirichlet[-1]

    augment._apply_image_or_video_transform = record
    augment._sample_dirichlet = sample
    result = augment(x8).float()
    # Beta(a, a) as a Dirichlet of two: m is the chains' share; then the width weights
    return Replay(chains, outputs, dirichlet[1][0], dirichlet[0][0, 1], result)
