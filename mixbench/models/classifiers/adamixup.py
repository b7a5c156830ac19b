"""AdaMixUp (Guo, Mao & Zhang, "MixUp as Locally Linear Out-of-Manifold Regularization",
AAAI 2019, arXiv:1809.02499; official code github.com/SITE5039/AdaMixUp,
``GitHub.AdaMixup.AAAI.MNIST.Cifar.py``, tensorpack).

Mixup's label ``lam y_i + (1 - lam) y_j`` conflicts with a real example's label when the
mixed image ``lam x_i + (1 - lam) x_j`` lands on the data manifold ("manifold intrusion");
a fixed Beta(alpha, alpha) cannot avoid it. AdaMixUp learns the mixing policy per pair and
penalises intrusion with a discriminator.

The paper's definition for mixing fold k = 2 (pairs; the paper also defines policies for
k > 2 images, which the official code does not implement and neither does this class)::

    (alpha, delta, _) = softmax(PRG(x_i, x_j))       the Policy Region Generator: 3 outputs,
                                                     the third discarded, so alpha + delta <= 1
    lam ~ U(alpha, alpha + delta)                    per pair: lam = alpha + u delta, u ~ U(0, 1)
                                                     (a reparameterisation: gradients reach the PRG)
    x~ = lam x_i + (1 - lam) x_j,   y~ = lam y_i + (1 - lam) y_j
    L = L_D(H) + L_D~(H, PRG) + L_intr(PRG, phi)     all three networks trained jointly
    L_intr = E_{x in D} -log phi(x) + E_{x~} -log(1 - phi(x~))

``H`` is the classifier, ``L_D`` its cross-entropy on original samples and ``L_D~`` on mixed
ones; ``phi`` (the intrusion discriminator) is a binary classifier that shares the
classifier's trunk and tells original samples (positive, class 1) from mixed ones
(negative, class 0). Minimising ``L_intr`` through the PRG moves the policy region away
from lambdas whose mixed images look like real data; the classifier's mixed loss, also
reaching the PRG, pulls the other way (towards lambdas that are easy to classify), so the
region settles where mixing regularises without intruding.

What the official code does (the CIFAR branch, ``isResNet = True``), which this class
follows:

* Batch split: a batch of B (128) is paired with a uniform permutation of the whole batch;
  the first B/2 samples ``x_i`` are mixed with their partners ``x_j``; the other B/2 are
  held out ("unseen"): positives of the discriminator only.
* PRG input: ``(m1 * x_i + m2 * x_j) / 2`` with ``m1``, ``m2`` elementwise standard normal
  noise truncated at 2 standard deviations (``tf.truncated_normal``), fed to a second
  network of the classifier's architecture with its own weights (PreActResNet-18 trunk,
  global average pooling), then ``Linear(C, 100)`` and ``Linear(100, 3)`` with no
  non-linearity between them, then the softmax.
* Classifier loss: one soft-label cross-entropy averaged over the B/2 mixed and the B/2
  original ``x_i`` (the labels as above), in one forward pass of those B images.
* Discriminator: a second forward pass through the shared trunk of the B originals
  (held-out and ``x_i``, label 1) and the B/2 mixed images (label 0); its head is
  ``Linear(C, num_classes)`` then ``Linear(num_classes, 2)`` (again linear), softmax
  cross-entropy averaged over the 3B/2 images.
* ``loss = CE_classifier + CE_discriminator`` (+ weight decay), one optimiser step on every
  network; no gradient is stopped: both losses reach the PRG through ``x~`` (and the
  classifier's also through ``y~``, which depends on ``lam``). Being means over the
  concatenated samples, these weigh the paper's terms as ``(L_D + L_D~) / 2`` and
  ``(2 E_D[-log phi] + E_D~[-log(1 - phi)]) / 3`` (B originals, B/2 mixed); this class
  computes the same means.
* Initialisation of the linear layers (the classifier's, the PRG's and the
  discriminator's): N(0, 1e-3), zero bias.
* Published setting (CIFAR-10; the paper also reports CIFAR-100 with the same network):
  PreActResNet-18 without a BN-ReLU before the pooling, batch 128, SGD momentum 0.9,
  lr 0.1, 0.01 from epoch 100, 0.001 from epoch 150, weight decay 1e-4 on every variable,
  1400 epochs of 390 steps (the baseline script: 400), pad-4 random crop and flip.

Where this class differs (each also in docs/learnable.md and docs/protocol.md):

* The PRG's input is made from the batch after mixbench's data preprocessor, i.e. from
  normalised images; the official CIFAR code feeds the PRG the raw 0..255 pixels (it
  normalises inside the classifier only) and its MNIST code pixels scaled to [-1, 1].
* ``one_forward: true`` (not the default) runs the classifier's and the discriminator's
  images in one forward pass of the 3B/2 images ``[x~, x_i, held-out]``: the
  classifier's B images are a subset of the discriminator's, so this gives the same
  losses up to BatchNorm, whose batch statistics then cover 3B/2 images instead of B and
  3B/2; it costs 2B image passes per step instead of 3B. Default ``false``: the official
  two passes. In both cases BatchNorm updates its running statistics at every training
  forward pass.
* An odd batch mixes its first ``ceil(B/2)`` samples (the official code needs an even
  batch).
* Randomness (the permutation, ``u``, the PRG's noise) is drawn on the CPU from
  ``generator`` (or the global generator) and moved to the device, mixbench's convention:
  the step is the same on CPU and CUDA.

Degenerate regions: ``delta`` is a softmax output, positive but possibly 0 in floating
point; then ``lam = alpha`` exactly (the region is a point). ``alpha + delta <= 1`` always,
so ``lam`` stays in [0, 1] without clipping; ``alpha = delta = 0`` gives ``lam = 0``, the
partner image itself, which the discriminator is told is mixed (the official code does
the same; the intrusion loss is what pushes the PRG away from it).

Backbone: the PRG and the discriminator read the pooled feature vector that every
classifier reads (the neck's output), and the PRG's trunk is a second backbone built from
the same config, so AdaMixUp asks a backbone for nothing more (no capability to check):
it runs on CNNs and ViTs alike.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.mixers.base import MixOutput
from mixbench.mixers.checks import check_flag, check_number, is_int_at_least
from mixbench.mixers.sampling import pairing_index
from mixbench.registry import MODELS

from .mixup_classifier import MixupClassifier, build_module


def linear_layers(sizes, init_std: float) -> nn.Sequential:
    """``Linear(sizes[0], sizes[1])``, ``Linear(sizes[1], sizes[2])``, ... with no
    non-linearity between them (the official PRG and discriminator heads), weights
    N(0, init_std^2), zero biases."""
    layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    for layer in layers:
        nn.init.normal_(layer.weight, std=init_std)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def truncated_normal(shape, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal values truncated to [-2, 2] (TensorFlow's ``truncated_normal``), CPU."""
    return nn.init.trunc_normal_(torch.empty(shape), 0.0, 1.0, -2.0, 2.0, generator=generator)


class AdaMix(NamedTuple):
    """One AdaMixUp step's samples, for a batch of B and ``n = ceil(B/2)`` mixed pairs.

    Attributes:
        target: the classifier's batch: ``inputs`` the n mixed images then their n first
            images ``x_i``; ``y_a``, ``y_b``, ``lam`` their labels (``lam = 1`` for the
            originals); ``index`` the partners' places in the input batch.
        images: the discriminator's batch, ``[mixed (n), x_i (n), held-out (B - n)]``:
            the first n are its negatives, the rest its positives.
        alpha, delta: (n,) the PRG's region of each pair, ``lam in [alpha, alpha + delta]``.
    """

    target: MixOutput
    images: Tensor
    alpha: Tensor
    delta: Tensor


@MODELS.register_module()
class AdaMixUpClassifier(MixupClassifier):
    """AdaMixUp: a Policy Region Generator draws each pair's mixing ratio from a learnt
    interval ``(alpha, alpha + delta)``; the classifier trains on mixed and original samples
    and an intrusion discriminator on its trunk tells originals from mixed images (module
    docstring: the formulas, the official code, the differences).

    Args:
        backbone, head, neck, loss, data_preprocessor: see :class:`MixupClassifier`. ``loss``
            is the classifier's (mixed and original samples); the PRG's trunk is a second
            backbone built from ``backbone`` with its own weights, followed by a copy of
            the neck.
        mixer: must be Vanilla (AdaMixUp makes its own mixed samples).
        policy_hidden: width of the PRG's first linear layer (100, official).
        init_std: standard deviation of the initial weights of the PRG's and the
            discriminator's linear layers (0.001, official; biases start at 0).
        one_forward: classifier and discriminator images in one forward pass (False: the
            official two passes; see the module docstring).

    Losses: ``loss`` (the classifier's cross-entropy on the mixed and original samples) and
    ``intrusion_loss`` (the discriminator's). ``generator`` (attribute, default None: the
    global CPU generator) makes a step reproducible, as a mixer's.
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        policy_hidden: int = 100,
        init_std: float = 1e-3,
        one_forward: bool = False,
        **kwargs,
    ):
        super().__init__(backbone=backbone, head=head, **kwargs)
        self.require_vanilla_mixer("AdaMixUp", "makes its own mixed samples")
        if not is_int_at_least(policy_hidden, 1):
            raise ValueError(
                f"AdaMixUpClassifier.policy_hidden must be an integer >= 1, got {policy_hidden!r}"
            )
        init_std = check_number(init_std, "AdaMixUpClassifier.init_std")
        self.one_forward = check_flag(one_forward, "AdaMixUpClassifier.one_forward")
        channels = self.backbone.out_channels[-1]
        self.policy_backbone = build_module(backbone, "model.backbone")
        self.policy_neck = copy.deepcopy(self.neck)
        self.policy_head = linear_layers((channels, policy_hidden, 3), init_std)
        self.intrusion_head = linear_layers((channels, self.num_classes, 2), init_std)
        self.generator: torch.Generator | None = None

    def policy_region(self, x_i: Tensor, x_j: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha, delta)``, each (n,) float32: the PRG on ``(m1 x_i + m2 x_j) / 2`` with
        ``noise = (m1, m2)`` (2, n, C, H, W)."""
        gate = (noise[0] * x_i + noise[1] * x_j) / 2
        logits = self.policy_head(self.policy_neck(self.policy_backbone(gate.to(x_i.dtype))))
        region = logits.float().softmax(1)
        return region[:, 0], region[:, 1]

    def mix(self, inputs: Tensor, labels: Tensor) -> AdaMix:
        """One step's samples: the first ``n = ceil(B/2)`` images mixed with partners drawn
        by a uniform permutation of the batch, lambdas from the PRG's regions."""
        b, n = inputs.shape[0], (inputs.shape[0] + 1) // 2
        device = inputs.device
        index = pairing_index(b, "random", self.generator)[:n].to(device)
        u = torch.rand(n, generator=self.generator).to(device)
        noise = truncated_normal((2, n, *inputs.shape[1:]), self.generator).to(device, inputs.dtype)
        x_i, y_i, x_j, y_j = inputs[:n], labels[:n], inputs[index], labels[index]
        alpha, delta = self.policy_region(x_i, x_j, noise)
        lam = alpha + u * delta
        w = lam.view(-1, *(1,) * (inputs.dim() - 1))
        mixed = (w * x_i + (1 - w) * x_j).to(inputs.dtype)
        images = torch.cat([mixed, x_i, inputs[n:]])
        target = MixOutput(
            inputs=images[: 2 * n],
            y_a=torch.cat([y_i, y_i]),
            y_b=torch.cat([y_j, y_i]),
            lam=torch.cat([lam, torch.ones_like(lam)]),
            index=torch.cat([index, torch.arange(n, device=device)]),  # partners' places in `inputs`
        )
        return AdaMix(target, images, alpha, delta)

    def loss(self, inputs: Tensor, labels: Tensor) -> dict:
        mix = self.mix(inputs, labels)
        n = mix.alpha.shape[0]
        if self.one_forward:
            feats = self.neck(self.backbone(mix.images))
            logits = self.head(feats[: 2 * n])
        else:
            logits = self.logits(mix.target.inputs)
            feats = self.neck(self.backbone(mix.images))
        original = torch.ones(mix.images.shape[0], dtype=torch.long, device=inputs.device)
        original[:n] = 0  # the mixed images
        intrusion = F.cross_entropy(self.intrusion_head(feats).float(), original)
        return {"loss": self.loss_module(logits, mix.target), "intrusion_loss": intrusion}
