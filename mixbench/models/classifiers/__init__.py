from .mixup_classifier import MixupClassifier

__all__ = ["MixupClassifier"]

# issue 18 (methods-b)
from .sumix import SUMixClassifier  # noqa: E402
from .tlalign import TLAlignClassifier  # noqa: E402

__all__ += ["SUMixClassifier", "TLAlignClassifier"]

# issue 18 (methods-d)
from .mergemix import MergeMixClassifier  # noqa: E402
from .mixpro import MixProClassifier  # noqa: E402

__all__ += ["MixProClassifier", "MergeMixClassifier"]

# issue 18 (methods-e)
from .tokenmix import TokenMixClassifier  # noqa: E402

__all__ += ["TokenMixClassifier"]

# issue 18 (adamixup)
from .adamixup import AdaMixUpClassifier  # noqa: E402

__all__ += ["AdaMixUpClassifier"]
