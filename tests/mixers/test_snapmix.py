"""SnapMix (Huang et al., AAAI 2021) against its definition: CAMs, resized boxes and the
semantic label weights, on hand-computed inputs."""

import pytest
import torch
import torch.nn.functional as F
from mbtest.mixers import (
    TinyClassifier,
    check_batch_size_one,
    check_cpu_cuda_equal,
    check_dtypes_and_formats,
    check_model_untouched,
    check_output,
    check_reproducible,
    make_batch,
    requires_cuda,
    seeded,
)
from mbtest.repo import method_of
from mbtest.training import train_and_resume
from torch import nn

from mixbench.mixers import SnapMix
from mixbench.mixers.snapmix import class_activation_maps, resized_boxes
from mixbench.models import MixedCrossEntropy


def model():
    torch.manual_seed(0)
    return TinyClassifier()


class FixedFeatures(nn.Module):
    """A 'classifier' whose backbone returns a given feature map: CAMs by hand."""

    def __init__(self, feat, weight, bias, neck=None, head=None):
        super().__init__()
        self.feat = feat
        self.backbone = lambda x, stage_hook=None: self.feat[: x.shape[0]]
        self.neck = neck or (lambda f: f.mean((2, 3)))
        self.head = head or nn.Linear(weight.shape[1], weight.shape[0])
        if head is None:
            with torch.no_grad():
                self.head.weight.copy_(weight)
                self.head.bias.copy_(bias)
        self.num_classes = weight.shape[0]


def test_class_activation_maps_by_hand():
    # two channels on a 2x2 map; class 0 reads channel 0 - channel 1 + 1, class 1 channel 1
    feat = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [3.0, -5.0]]]])
    clf = FixedFeatures(feat, torch.tensor([[1.0, -1.0], [0.0, 1.0]]), torch.tensor([1.0, 0.0]))
    x = torch.zeros(1, 1, 2, 2)  # 2x2 image: the upsampling is the identity
    # class 0 on relu(f): 2-0+1, 0-1+1, 0-3+1, 1-0+1 = 3, 0, -2, 2 -> minus min: 5, 2, 0, 4
    cams, k = class_activation_maps(clf, x, torch.tensor([0]))
    torch.testing.assert_close(cams[0], torch.tensor([[5.0, 2.0], [0.0, 4.0]]) / 11)
    assert k == 2
    # class 1: relu(channel 1) = 0, 1, 3, 0 -> sums to 4
    cams, _ = class_activation_maps(clf, x, torch.tensor([1]))
    torch.testing.assert_close(cams[0], torch.tensor([[0.0, 1.0], [3.0, 0.0]]) / 4)
    # upsampled bilinearly (align_corners=False) before the min is taken
    cams, _ = class_activation_maps(clf, torch.zeros(1, 1, 4, 4), torch.tensor([1]))
    up = F.interpolate(
        torch.tensor([[[[0.0, 1.0], [3.0, 0.0]]]]), size=(4, 4), mode="bilinear", align_corners=False
    )[0, 0]
    torch.testing.assert_close(cams[0], (up - up.min()) / (up - up.min()).sum())
    # a constant map is all zeros (the mixer then falls back to pixel shares)
    clf = FixedFeatures(torch.ones(1, 2, 2, 2), torch.eye(2), torch.zeros(2))
    assert torch.equal(class_activation_maps(clf, x, torch.tensor([0]))[0], torch.zeros(1, 2, 2))


def test_cams_refuse_a_non_linear_head_or_another_neck():
    feat = torch.rand(2, 3, 2, 2, generator=seeded(0)) + 0.5
    x, y = torch.zeros(2, 1, 2, 2), torch.tensor([0, 1])
    head = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="affine"):
        class_activation_maps(FixedFeatures(feat, torch.eye(2, 3), torch.zeros(2), head=head), x, y)
    clf = FixedFeatures(feat, torch.eye(2, 3), torch.zeros(2), neck=lambda f: f.amax((2, 3)))
    with pytest.raises(ValueError, match="global-average-pool"):
        class_activation_maps(clf, x, y)


def test_resized_boxes_equal_interpolate():
    x = torch.randn(3, 2, 12, 10, generator=seeded(1))
    index = torch.tensor([2, 0, 1])
    src = (
        torch.tensor([1, 0, 5]),
        torch.tensor([7, 1, 12]),
        torch.tensor([2, 3, 0]),
        torch.tensor([9, 5, 4]),
    )
    dst = (
        torch.tensor([0, 4, 3]),
        torch.tensor([3, 12, 4]),
        torch.tensor([1, 0, 2]),
        torch.tensor([10, 4, 3]),
    )
    out = resized_boxes(x, index, src, dst)
    for i in range(3):
        crop = x[index[i] : index[i] + 1, :, src[0][i] : src[1][i], src[2][i] : src[3][i]]
        size = (int(dst[1][i] - dst[0][i]), int(dst[3][i] - dst[2][i]))
        expected = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)[0]
        torch.testing.assert_close(
            out[i, :, dst[0][i] : dst[1][i], dst[2][i] : dst[3][i]], expected, rtol=1e-5, atol=1e-6
        )


class FixedBoxes(SnapMix):
    """SnapMix with given boxes (the draws are tested elsewhere)."""

    def __init__(self, box_a, box_b, **kw):
        super().__init__(pairing="reverse", **kw)
        self.boxes = tuple(tuple(torch.tensor(v) for v in box) for box in (box_a, box_b))

    def sample_boxes(self, index, h, w):
        return self.boxes


def test_label_weights_and_image_hand_computed():
    # 4x4 images, B = 2 reversed (partners 1 and 0). CAM 0: all mass at pixel (0, 0);
    # CAM 1: uniform 1/16. box_a = rows/cols 0..1 (both samples), box_b = rows/cols 2..3.
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    cams = torch.zeros(2, 4, 4)
    cams[0, 0, 0] = 1.0
    cams[1] = 1 / 16
    mixer = FixedBoxes(([0, 0], [2, 2], [0, 0], [2, 2]), ([2, 2], [4, 4], [2, 2], [4, 4]))
    out = mixer.mix_with_cams(x, torch.tensor([0, 1]), cams, num_classes=3)
    # rho_a(0) = 1 - 1 = 0, rho_b(0) = CAM 1 in box_b = 4/16; rho_a(1) = 1 - 4/16, rho_b(1) = 0
    torch.testing.assert_close(out.soft_targets, torch.tensor([[0.0, 0.25, 0.0], [0.0, 0.75, 0.0]]))
    torch.testing.assert_close(out.lam, torch.tensor([0.0, 1.0]))
    assert torch.equal(out.inputs[0, 0, :2, :2], x[1, 0, 2:, 2:])  # same size: a copy
    assert torch.equal(out.inputs[1, 0, :2, :2], x[0, 0, 2:, 2:])
    outside = out.mask[:, 0] == 1
    assert torch.equal(out.inputs[:, 0][outside], x[:, 0][outside]) and int((~outside).sum()) == 8
    # a same-class pair: (rho_a + rho_b) on that class (the paper's formula)
    out = mixer.mix_with_cams(x, torch.tensor([1, 1]), cams, num_classes=3)
    torch.testing.assert_close(out.soft_targets, torch.tensor([[0.0, 0.25, 0.0], [0.0, 0.75, 0.0]]))
    # the loss is rho_a CE(y_a) + rho_b CE(y_b), weights not normalised
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    out = mixer.mix_with_cams(x, torch.tensor([0, 2]), cams, num_classes=3)
    ce = lambda z, c: -torch.log_softmax(z, 0)[c]  # noqa: E731
    expected = (0 * ce(logits[0], 0) + 0.25 * ce(logits[0], 2) + 0.75 * ce(logits[1], 2)) / 2
    torch.testing.assert_close(MixedCrossEntropy()(logits, out), expected)
    # constant CAMs: pixel shares, rho_a = 1 - 4/16, rho_b = 4/16
    out = mixer.mix_with_cams(x, torch.tensor([0, 1]), torch.zeros(2, 4, 4), num_classes=2)
    torch.testing.assert_close(out.soft_targets, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    # normalize_labels: divided by rho_a + rho_b
    norm = FixedBoxes(
        ([0, 0], [2, 2], [0, 0], [2, 2]), ([2, 2], [4, 4], [2, 2], [4, 4]), normalize_labels=True
    )
    cams[1] = 0.5 / 16
    cams[1, 3, 3] += 0.5
    out = norm.mix_with_cams(x, torch.tensor([0, 1]), cams, num_classes=2)
    # sample 0: rho_a 0, rho_b = 4 * 0.5/16 + 0.5 = 0.625 -> (0, 1); sample 1: rho_a
    # = 1 - 4 * 0.5/16 = 0.875, rho_b = 0 -> (0, 1) as well (both on class 1)
    torch.testing.assert_close(out.soft_targets, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_boxes_of_different_sizes_and_empty_boxes():
    x = torch.randn(2, 3, 8, 8, generator=seeded(2))
    cams = torch.full((2, 8, 8), 1 / 64)
    # sample 0: box_b 2x2 at (0, 0) stretched to box_a 6x4 at (1, 3); sample 1: empty box_a
    mixer = FixedBoxes(([1, 0], [7, 0], [3, 0], [7, 0]), ([0, 2], [2, 6], [0, 2], [2, 6]))
    out = mixer.mix_with_cams(x, torch.tensor([0, 1]), cams, num_classes=2)
    expected = F.interpolate(x[1:2, :, :2, :2], size=(6, 4), mode="bilinear", align_corners=True)[0]
    torch.testing.assert_close(out.inputs[0, :, 1:7, 3:7], expected)
    torch.testing.assert_close(out.soft_targets[0], torch.tensor([1 - 24 / 64, 4 / 64]))
    assert torch.equal(out.inputs[1], x[1]) and out.lam[1] == 1 and out.mask[1].min() == 1
    torch.testing.assert_close(out.soft_targets[1], torch.tensor([0.0, 1.0]))  # y_a = 1, weight 1


# -- contract ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lam_mode,pairing", [("batch", "random"), ("elem", "random"), ("pair", "reverse"), ("pair", "random")]
)
def test_output_contract(lam_mode, pairing):
    x, y = make_batch()
    mixer = SnapMix(alpha=1.0, normalize_labels=True, lam_mode=lam_mode, pairing=pairing, generator=seeded(0))
    out = check_output(mixer, x, y, model=model(), mask_method=True)
    keep = out.mask[:, :1].expand_as(x) == 1
    assert torch.equal(out.inputs[keep], x[keep]) and not torch.equal(out.inputs, x)
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    if lam_mode == "pair":
        assert torch.equal(out.mask, out.mask[out.index])  # partners share box_a
    raw = SnapMix(alpha=1.0, lam_mode=lam_mode, pairing=pairing, generator=seeded(0))(x, y, model=model())
    totals = raw.soft_targets.sum(1)
    assert bool(((totals >= 0) & (totals <= 2)).all()) and not torch.allclose(totals, torch.ones(6))
    torch.testing.assert_close(out.soft_targets, raw.soft_targets / totals[:, None])
    torch.testing.assert_close(raw.lam, out.lam)


def test_reproducible_batch_size_one_dtypes_formats():
    x, y = make_batch()
    check_reproducible(SnapMix(), x, y, model=model())
    check_batch_size_one(SnapMix(), model=model())
    check_dtypes_and_formats(SnapMix(alpha=1.0, normalize_labels=True), mask_identity=False, model=model())


def test_cam_pass_leaves_the_model_untouched():
    check_model_untouched(SnapMix(), model())


def test_errors_name_the_problem():
    x, y = make_batch()
    with pytest.raises(ValueError, match="needs the model"):
        SnapMix()(x, y)
    with pytest.raises(ValueError, match="alpha > 0"):
        SnapMix(alpha=0)
    with pytest.raises(ValueError, match="normalize_labels"):
        SnapMix(normalize_labels="yes")
    with pytest.raises(ValueError, match=r"cams must be \(B, H, W\)"):
        SnapMix().mix_with_cams(x, y, torch.ones(6, 4, 4), 5)


@requires_cuda
def test_cpu_cuda_equal():
    x, y = make_batch()
    for lam_mode in ("batch", "elem"):
        check_cpu_cuda_equal(SnapMix(alpha=1.0, lam_mode=lam_mode), x, y, model_factory=model, exact=False)


# -- config and training ----------------------------------------------------------------
def test_method_file_builds_the_published_setting():
    from mixbench.registry import build_mixer

    method = method_of("snapmix")
    assert method["name"] == "SnapMix" and set(method) == {"name", "mixer"}
    mixer = build_mixer(method["mixer"])
    assert (mixer.alpha, mixer.prob, mixer.normalize_labels) == (5.0, 1.0, False)


def test_trains_two_epochs_on_digits_and_resumes(tmp_path):
    result, _ = train_and_resume(tmp_path, "snapmix")
    assert result["run"]["method"] == "SnapMix"
