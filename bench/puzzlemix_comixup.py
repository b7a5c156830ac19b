"""Benchmark: our PuzzleMix and Co-Mixup against the official implementations, side by side.

    python bench/puzzlemix_comixup.py                                  # ours only
    python bench/puzzlemix_comixup.py --openmixup /path/openmixup --comixup /path/Co-Mixup

``--openmixup`` is a checkout of Westlake-AI/openmixup (its
``openmixup/models/augments/puzzlemix.py`` is loaded on its own, with ``.cuda()`` made a
no-op and gco from ``pip install gco-wrapper``); ``--comixup`` a checkout of
snu-mllab/Co-Mixup (``match.py`` and ``mixup.py``, run on the CPU). Nothing of theirs is
part of mixbench.

What is timed: the mask/mixing function for a batch (default 100 x 3 x 32 x 32), given a
saliency map, i.e. without the saliency forward/backward that both sides share: OpenMixup's
``puzzlemix(img, label, features=...)`` vs ``PuzzleMix.mix_with_saliency``, Co-Mixup's
``mixup_process`` vs ``CoMixup.mix_with_saliency`` (after one untimed warm-up call of each:
our Co-Mixup's numba kernels are compiled on a machine's first run, then loaded from
numba's cache; that first call is reported as ``first_call_s``). Both sides get the same
images, saliency (one Gaussian blob per image plus noise: peaked, like real input-gradient
saliency), and --
for PuzzleMix -- the same lambda, pairing and grid side per round (the four grid sides
2, 4, 8, 16 in turn). Rounds alternate between the two sides so load on a shared machine hits
both alike; we report the mean over rounds and the ratio official / ours.

Objective values (lower is better), computed on identical problems:
* PuzzleMix: the energy the official code hands to gco (unary, prior, pairwise terms as
  recorded from its own call), of its mask (alpha-beta swap) and ours (exact min-cut).
* Co-Mixup: for each partition, with the same Dirichlet prior, the official ``obj_fn``
  (plain diversity term) and ``obj_fn_thres`` (thresholded, what its modular steps
  approximate) of the official labeling and of ours (both start from random labelings).
Also reported: a reference forward+backward of a width-16 CIFAR ResNet-18 on the batch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import round_robin  # noqa: E402

from mixbench.mixers import CoMixup, PuzzleMix  # noqa: E402
from mixbench.mixers import comixup as comixup_module  # noqa: E402
from mixbench.mixers._graphcut import chain_grid_energy, solve_chain_grid  # noqa: E402
from mixbench.mixers.comixup import comixup_objective  # noqa: E402

PUZZLE_ARGS = dict(
    block_num=5,
    beta=1.2,
    gamma=0.5,
    eta=0.2,
    neigh_size=4,
    n_labels=3,
    t_eps=0.8,
    t_size=4,
    transport=True,
    t_batch_size=None,
)
COMIX_ARGS = dict(
    m_block_num=4,
    m_part=20,
    m_beta=0.32,
    m_gamma=1.0,
    m_thres=0.83,
    m_thres_type="hard",
    m_eta=0.05,
    mixup_alpha=2.0,
    m_omega=0.001,
    set_resolve=True,
    m_niter=4,
)


# -- inputs -------------------------------------------------------------------------------
def smooth_images(b: int, size: int, seed: int) -> torch.Tensor:
    """Normalised images with some spatial structure (upsampled noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(b, 3, size // 4, size // 4, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def blob_saliency(b: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    c = torch.rand(b, 2, generator=g) * size
    s = 1.5 + torch.rand(b, generator=g) * size / 6
    d2 = (yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * s[:, None, None] ** 2)) + 0.05 * torch.rand(b, size, size, generator=g)


# -- loading the official code -----------------------------------------------------------
def load_module(name: str, path: Path):
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass the root of a checkout of the official repository")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def cuda_is_noop():
    """The official code calls ``.cuda()`` everywhere: run it on the CPU."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


@contextlib.contextmanager
def patched(obj, **attrs):
    old = {k: getattr(obj, k) for k in attrs}
    for k, v in attrs.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(obj, k, v)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# -- PuzzleMix -----------------------------------------------------------------------------
def fix_draws(mixer: PuzzleMix, lam: float, index: torch.Tensor, side: int) -> None:
    b = index.shape[0]
    mixer.sample_lam = lambda _index: torch.full((b,), lam, dtype=torch.float64)
    mixer.sample_index = lambda _b: index.clone()
    mixer.sample_grid = lambda h, w: side


def official_puzzle_call(om, x, y, sal, lam, index, side, record=None):
    """OpenMixup's puzzlemix with its random draws fixed to (lam, index, side)."""
    graphcut = om.graphcut_multi
    if record is not None:

        def graphcut(*a, _orig=om.graphcut_multi):
            mask = _orig(*a)
            record.append((a, mask))
            return mask

    with (
        cuda_is_noop(),
        patched(om.np.random, beta=lambda a, b: lam, randint=lambda lo, hi: int(np.log2(side))),
        patched(om.torch, randperm=lambda n, **k: index.clone()),
        patched(om, graphcut_multi=graphcut),
    ):
        return om.puzzlemix(x.clone(), y, alpha=1.0, features=sal, **PUZZLE_ARGS)


def official_energy(record):
    """(unary (B,G,G,L) in our label order, w_v, w_h, official masks as labels) from the
    arguments the official code passed to gco."""
    unary, w_v, w_h, labels = [], [], [], []
    for (u_first, u_second, pw_x, pw_y, alpha, beta, eta, n_labels), mask in record:
        g, n = u_first.shape[0], n_labels - 1
        lam_k = np.array([alpha ** (n - k) * (1 - alpha) ** k for k in range(n_labels)])
        lam_k *= np.array([1, 2, 1]) if n_labels == 3 else 1
        prior = -eta / g**2 * np.log(lam_k + 1e-8)
        theirs = np.stack([(1 - k / n) * u_first + k / n * u_second + prior[k] for k in range(n_labels)], -1)
        unary.append(theirs[..., ::-1])  # their label k = our label n - k (mask 1 - k/n)
        w_v.append(pw_x + beta)
        w_h.append(pw_y + beta)
        labels.append(np.rint(mask * n).astype(np.int64))
    return np.stack(unary), np.stack(w_v), np.stack(w_h), np.stack(labels)


def bench_puzzlemix(om, x, y, sal, rounds: int, seed: int, solver: str = "auto"):
    rng = np.random.default_rng(seed)
    b = x.shape[0]
    ours_t, theirs_t, energies, agree = [], [], [], []
    sides = (2, 4, 8, 16)
    mixer = PuzzleMix(solver=solver, generator=torch.Generator().manual_seed(seed))
    for r in range(rounds):
        side = sides[r % len(sides)]
        lam = float(rng.beta(1.0, 1.0))
        index = torch.from_numpy(rng.permutation(b))
        fix_draws(mixer, lam, index, side)
        out, t_ours = timed(lambda: mixer.mix_with_saliency(x, y, sal))
        ours_t.append(t_ours)
        if om is None:
            continue
        _, t_theirs = timed(lambda: official_puzzle_call(om, x, y, sal, lam, index, side))  # noqa: B023
        theirs_t.append(t_theirs)
        record = []  # untimed: the official energy and masks on this very problem
        their_img, _ = official_puzzle_call(om, x, y, sal, lam, index, side, record)
        unary, w_v, w_h, their_labels = official_energy(record)
        our_labels = solve_chain_grid(unary, w_v, w_h)
        energies.append(
            (
                side,
                chain_grid_energy(unary, w_v, w_h, their_labels).mean(),
                chain_grid_energy(unary, w_v, w_h, our_labels).mean(),
            )
        )
        agree.append(float((out.inputs == their_img).float().mean()))
    result = {"ours_s": float(np.mean(ours_t))}
    if om is not None:
        result.update(
            official_s=float(np.mean(theirs_t)),
            speedup=float(np.mean(theirs_t) / np.mean(ours_t)),
            energy_official=float(np.mean([e[1] for e in energies])),
            energy_ours=float(np.mean([e[2] for e in energies])),
            energy_by_side={
                str(s): [
                    float(np.mean([e[1] for e in energies if e[0] == s])),
                    float(np.mean([e[2] for e in energies if e[0] == s])),
                ]
                for s in sides
            },
            ours_lower_or_equal=float(np.mean([e[2] <= e[1] + 1e-9 for e in energies])),
            identical_pixels=float(np.mean(agree)),
        )
    return result


# -- Co-Mixup ------------------------------------------------------------------------------
def load_comixup(root: Path):
    match = load_module("match", root / "match.py")
    mixup = load_module("comixup_official_mixup", root / "mixup.py")
    original = match.get_onehot_matrix
    mixup.get_onehot_matrix = lambda *a, **k: original(*a, **{**k, "device": "cpu"})
    return match, mixup


def official_a_dist(sal: torch.Tensor) -> torch.Tensor:
    """What the official training loop hands to ``mixup_process`` (L1 distance of peaks)."""
    z = F.avg_pool2d(sal, kernel_size=8, stride=1)
    flat = z.reshape(sal.shape[0], -1).argmax(1)
    idx = torch.stack([flat // z.shape[-1], flat % z.shape[-1]], 1).float()
    return (idx[:, None] - idx[None]).abs().sum(-1)


def comixup_objectives(match, sal, rounds: int, seed: int):
    """Per partition, the same prior for both: (obj, obj_thres) official vs ours."""
    p_size, m = COMIX_ARGS["m_part"], COMIX_ARGS["m_block_num"]
    blocks = m * m
    beta, gamma = COMIX_ARGS["m_beta"] / blocks, COMIX_ARGS["m_gamma"] / blocks
    thres = COMIX_ARGS["m_thres"] * blocks
    sal_blocks = F.avg_pool2d(sal[:, None], sal.shape[-1] // m)[:, 0]
    parts = sal.shape[0] // p_size
    a_dist = official_a_dist(sal)
    rows = []
    for r in range(rounds):
        prior = torch.distributions.Dirichlet(2.0 * torch.ones(p_size)).sample((parts,)).double()
        mixer = CoMixup(generator=torch.Generator().manual_seed(seed + r))
        dist = torch.stack(
            [a_dist[q * p_size : (q + 1) * p_size, q * p_size : (q + 1) * p_size] for q in range(parts)]
        )
        with patched(comixup_module, _dirichlet=lambda a, p, n, g, prior=prior: prior.numpy()):
            z = mixer.solve(sal_blocks[: parts * p_size].reshape(parts, p_size, m, m), dist)
        cost = mixer._last_cost
        for q in range(parts):

            class FixedDirichlet:  # the official code draws its prior here
                def __init__(self, concentration):
                    pass

                def sample(self, _q=q, _prior=prior):
                    return _prior[_q].float()

            sc = sal_blocks[q * p_size : (q + 1) * p_size]
            sc_norm = sc / sc.reshape(p_size, -1).sum(1).reshape(p_size, 1, 1)
            a = dist[q].float()
            a = (1 - COMIX_ARGS["m_omega"]) * torch.eye(p_size) + COMIX_ARGS["m_omega"] * a / a.sum() * p_size
            with patched(match.torch.distributions.dirichlet, Dirichlet=FixedDirichlet):
                theirs = match.get_onehot_matrix(
                    -sc_norm,
                    a,
                    n_output=p_size,
                    beta=COMIX_ARGS["m_beta"],
                    gamma=COMIX_ARGS["m_gamma"],
                    eta=COMIX_ARGS["m_eta"],
                    mixup_alpha=2.0,
                    thres=COMIX_ARGS["m_thres"],
                    thres_type="hard",
                    set_resolve=True,
                    niter=COMIX_ARGS["m_niter"],
                    device="cpu",
                ).double()[None]
            cq = cost[q : q + 1]
            rows.append(
                [
                    comixup_objective(cq, theirs, beta, gamma).item(),
                    comixup_objective(cq, z[q : q + 1], beta, gamma).item(),
                    comixup_objective(cq, theirs, beta, gamma, thres).item(),
                    comixup_objective(cq, z[q : q + 1], beta, gamma, thres).item(),
                ]
            )
    rows = np.array(rows)
    return {
        "obj_official": float(rows[:, 0].mean()),
        "obj_ours": float(rows[:, 1].mean()),
        "obj_thres_official": float(rows[:, 2].mean()),
        "obj_thres_ours": float(rows[:, 3].mean()),
        "ours_lower_or_equal_obj": float((rows[:, 1] <= rows[:, 0] + 1e-9).mean()),
        "ours_lower_or_equal_obj_thres": float((rows[:, 3] <= rows[:, 2] + 1e-9).mean()),
        "partitions": int(len(rows)),
    }


def bench_comixup(official, x, y, sal, num_classes: int, rounds: int, seed: int):
    mixer = CoMixup(generator=torch.Generator().manual_seed(seed))
    onehot = F.one_hot(y, num_classes).float()
    a_dist = official_a_dist(sal)
    args = types.SimpleNamespace(**COMIX_ARGS)
    # untimed warm-up of both sides; ours loads its numba kernels from the cache (or, on a
    # machine's first run, compiles them: reported as first_call_s)
    fns = {"ours": lambda: mixer.mix_with_saliency(x, y, sal, num_classes)}
    _, first = timed(fns["ours"])
    if official is not None:
        fns["official"] = lambda: official[1].mixup_process(x, onehot, args=args, sc=sal, A_dist=a_dist)
        fns["official"]()
    times = round_robin(fns, rounds=rounds, warmup=0)
    ours_s = float(np.mean(times["ours"].wall))
    result = {"ours_s": ours_s, "first_call_s": first}
    if official is not None:
        official_s = float(np.mean(times["official"].wall))
        result.update(official_s=official_s, speedup=official_s / ours_s)
        result.update(comixup_objectives(official[0], sal, max(1, rounds // 2), seed))
    return result


def reference_step(x: torch.Tensor, num_classes: int) -> float:
    """Seconds of one forward+backward of a width-16 CIFAR ResNet-18 on ``x``."""
    from mixbench.models.classifiers.mixup_classifier import MixupClassifier

    model = MixupClassifier(
        backbone={"type": "ResNetCIFAR", "depth": 18, "width": 16},
        head={"type": "LinearHead", "num_classes": num_classes},
    )
    y = torch.randint(0, num_classes, (x.shape[0],))

    def step() -> None:
        model.zero_grad()
        F.cross_entropy(model.logits(x), y).backward()

    return round_robin({"step": step}, rounds=2)["step"].median  # after one warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openmixup", type=Path, help="checkout of Westlake-AI/openmixup")
    parser.add_argument("--comixup", type=Path, help="checkout of snu-mllab/Co-Mixup")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="timed calls per side (PuzzleMix: cycling through grid sides 2, 4, 8, 16)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--solver",
        default="auto",
        choices=["auto", "scipy", "pymaxflow"],
        help="PuzzleMix min-cut backend (auto: PyMaxflow when installed)",
    )
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    num_classes = 100
    x = smooth_images(args.batch, args.size, args.seed)
    y = torch.randint(0, num_classes, (args.batch,), generator=torch.Generator().manual_seed(1))
    sal = blob_saliency(args.batch, args.size, args.seed)
    om = None
    if args.openmixup is not None:
        om = load_module(
            "openmixup_puzzlemix", args.openmixup / "openmixup" / "models" / "augments" / "puzzlemix.py"
        )
    official_co = load_comixup(args.comixup) if args.comixup is not None else None

    results = {
        "batch": args.batch,
        "size": args.size,
        "threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg(),
        "reference_fwd_bwd_s": reference_step(x, num_classes),
    }
    # warm-up both sides once
    results["puzzlemix"] = bench_puzzlemix(om, x, y, sal, 4, args.seed + 100, args.solver)
    results["puzzlemix"] = bench_puzzlemix(om, x, y, sal, args.rounds, args.seed, args.solver)
    results["puzzlemix"]["solver"] = args.solver
    results["comixup"] = bench_comixup(official_co, x, y, sal, num_classes, args.rounds, args.seed)
    results["loadavg_end"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
