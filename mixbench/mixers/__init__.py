"""mixbench.mixers: sample-mixing methods as a pure-PyTorch library.

Usable in any training loop::

    from mixbench.mixers import Mixup
    out = Mixup(alpha=1.0)(images, labels)      # MixOutput
    loss = out.lam * ce(logits, out.y_a) + (1 - out.lam) * ce(logits, out.y_b)

Every name in ``__all__`` that is a mixer class is registered in mixbench's MIXERS registry
by ``mixbench.registry`` (this package itself never imports mmengine).
"""

from .alignmix import AlignMix
from .attentivemix import AttentiveMix, AttentiveMixPlus
from .base import BaseMixer, MixOutput
from .comixup import CoMixup
from .cutmix import CutMix
from .fmix import FMix
from .gridmix import GridMix

# issue 18 (methods-a)
from .guidedmixup import GuidedMixup
from .manifoldmix import ManifoldMix
from .mixup import Mixup
from .puzzlemix import PuzzleMix
from .random_choice import DeiTMixer, RandomChoiceMixer
from .resizemix import ResizeMix
from .saliencymix import SaliencyMix
from .smoothmix import SmoothMix
from .snapmix import SnapMix
from .vanilla import Vanilla

__all__ = [
    "BaseMixer",
    "MixOutput",
    "Vanilla",
    "Mixup",
    "ManifoldMix",
    "AlignMix",
    "AttentiveMix",
    "AttentiveMixPlus",
    "CutMix",
    "RandomChoiceMixer",
    "DeiTMixer",
    "SmoothMix",
    "SaliencyMix",
    "FMix",
    "GridMix",
    "ResizeMix",
    "PuzzleMix",
    "CoMixup",
    # issue 18 (methods-a)
    "GuidedMixup",
    "SnapMix",
]
