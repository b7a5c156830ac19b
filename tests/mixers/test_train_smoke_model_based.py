"""Training smoke for the mixers that use the network (ManifoldMix, AlignMix, AttentiveMix,
AttentiveMix+): each trains a width-16 ResNet-8 on digits for 2 epochs through
tools/train.py, with the method's own config fragment from configs/methods/."""

import pytest
from mbtest.training import train_on_digits

METHODS = {
    "manifoldmix": "ManifoldMix",
    "alignmix": "AlignMix",
    "attentivemix": "AttentiveMix",
    "attentivemix_plus": "AttentiveMix+",
}


@pytest.mark.parametrize("fragment", sorted(METHODS))
def test_two_epochs_on_digits(tmp_path, fragment):
    result = train_on_digits(tmp_path, fragment)
    assert result["run"]["method"] == METHODS[fragment]
