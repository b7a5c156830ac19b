"""Sweep files -> runs: crossing, names, work dirs, overrides, exclusions, resources."""

import subprocess
import sys

import pytest
import yaml
from mbtest.repo import REPO
from mbtest.sweep import CONFIGS, write_sweep

from mixbench.sweep import SweepError, load_sweep
from mixbench.sweep.launch import prepare_run, train_command


def _spec(**extra):
    spec = {
        "name": "grid",
        "base": [
            str(CONFIGS / "_base_/schedules/sgd_cosine_200e.yaml"),
            str(CONFIGS / "_base_/runtime.yaml"),
        ],
        "axes": {
            "dataset": {
                "digits": str(CONFIGS / "_base_/datasets/digits.yaml"),
                "fmnist": str(CONFIGS / "_base_/datasets/fashion_mnist.yaml"),
            },
            "backbone": [str(CONFIGS / "_base_/models/resnet8_w16_gray.yaml")],
            "method": {"Vanilla": {"type": "Vanilla"}, "Mixup": {"type": "Mixup", "alpha": 0.2}},
            "max_epochs": [2, 4],
            "seed": [0, 1],
        },
    }
    spec.update(extra)
    return spec


def test_grid_is_crossed_in_a_fixed_order_with_stable_names(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, _spec()))
    assert len(sweep.runs) == 2 * 1 * 2 * 2 * 2
    assert [r.name for r in sweep.runs[:4]] == [
        "digits/resnet8_w16/Vanilla_e2_s0",
        "digits/resnet8_w16/Vanilla_e2_s1",
        "digits/resnet8_w16/Vanilla_e4_s0",
        "digits/resnet8_w16/Vanilla_e4_s1",
    ]
    run = sweep.run_by_name("fmnist/resnet8_w16/Mixup_e4_s1")
    assert run.work_dir == tmp_path / "work_dirs" / "grid" / "fmnist" / "resnet8_w16" / "Mixup_e4_s1"
    cfg = run.config
    assert cfg["method"] == {"name": "Mixup", "mixer": {"type": "Mixup", "alpha": 0.2}}
    assert cfg["model"]["backbone"]["depth"] == 8  # from the backbone file
    assert cfg["train_dataloader"]["dataset"]["type"] == "FashionMNIST"  # from the dataset file
    assert cfg["train_cfg"]["max_epochs"] == 4
    assert cfg["param_scheduler"][0]["T_max"] == 4  # the 200-epoch cosine follows
    assert cfg["randomness"]["seed"] == 1
    assert cfg["meta"] == {
        **cfg["meta"],
        "method": "Mixup",
        "dataset": "fmnist",
        "backbone": "resnet8_w16",
        "name": "grid/fmnist/resnet8_w16/Mixup_e4_s1",
    }


def test_names_and_configs_do_not_depend_on_the_order_of_the_file(tmp_path):
    spec = _spec()
    a = load_sweep(write_sweep(tmp_path, spec, "a.yaml"))
    spec["axes"]["method"] = dict(reversed(list(spec["axes"]["method"].items())))
    spec["axes"]["seed"] = [1, 0]
    b = load_sweep(write_sweep(tmp_path, spec, "b.yaml"))
    assert {r.name: r.config_hash for r in a.runs} == {r.name: r.config_hash for r in b.runs}


def test_exclusions_drop_matching_runs_and_reject_unknown_axes(tmp_path):
    sweep = load_sweep(
        write_sweep(
            tmp_path,
            _spec(exclude=[{"method": "Mixup", "max_epochs": 4}, {"dataset": "fmnist", "seed": [1]}]),
        )
    )
    names = {r.name for r in sweep.runs}
    assert not any("Mixup_e4" in n for n in names)
    assert not any(n.startswith("fmnist/") and n.endswith("_s1") for n in names)
    assert len(names) == 16 - 4 - 4 + 1  # fmnist/Mixup_e4_s1 matches both entries
    with pytest.raises(SweepError, match="not an axis"):
        load_sweep(write_sweep(tmp_path, _spec(exclude=[{"optimizer": "adam"}]), "bad.yaml"))


def test_method_from_a_file_with_per_method_overrides(tmp_path):
    frag = tmp_path / "cutmix.yaml"
    frag.write_text(yaml.safe_dump({"method": {"mixer": {"type": "CutMix", "alpha": 1.0, "prob": 0.5}}}))
    spec = _spec()
    spec["axes"]["method"] = {
        "CutMix": str(frag),
        "CutMix_a0.2": {"config": str(frag), "mixer.alpha": 0.2},
        "Mixup": {"type": "Mixup"},
    }
    sweep = load_sweep(write_sweep(tmp_path, spec))
    mixers = {r.axes["method"]: r.config["method"]["mixer"] for r in sweep.runs}
    assert mixers["CutMix"] == {"type": "CutMix", "alpha": 1.0, "prob": 0.5}
    assert mixers["CutMix_a0.2"] == {"type": "CutMix", "alpha": 0.2, "prob": 0.5}
    assert mixers["Mixup"] == {"type": "Mixup"}  # replaced whole, not merged with the base's Vanilla
    assert sweep.run_by_name("digits/resnet8_w16/CutMix_a0.2_e2_s0").config["meta"]["method"] == "CutMix_a0.2"


def test_any_config_key_is_an_axis_and_named_in_the_run(tmp_path):
    spec = _spec()
    spec["axes"] = {
        "method": {"Mixup": {"type": "Mixup"}},
        "optim_wrapper.optimizer.lr": [0.1, 0.05],
        "max_epochs": [3],
        "seed": [0],
    }
    spec["options"] = {"train_dataloader.batch_size": 32}
    sweep = load_sweep(write_sweep(tmp_path, spec))
    assert [r.name for r in sweep.runs] == [
        "dataset/backbone/Mixup_lr0.1_e3_s0",
        "dataset/backbone/Mixup_lr0.05_e3_s0",
    ]
    assert [r.config["optim_wrapper"]["optimizer"]["lr"] for r in sweep.runs] == [0.1, 0.05]
    assert all(r.config["train_dataloader"]["batch_size"] == 32 for r in sweep.runs)


def test_resources_per_cell(tmp_path):
    sweep = load_sweep(
        write_sweep(
            tmp_path,
            _spec(
                resources={
                    "gpus": 1,
                    "cpus": 4,
                    "mem_gb": 8,
                    "time_min": 30,
                    "per_cell": [
                        {"match": {"max_epochs": 4}, "time_min": 90},
                        {"match": {"dataset": "fmnist", "max_epochs": 4}, "gpus": 2},
                    ],
                }
            ),
        )
    )
    r2 = sweep.run_by_name("digits/resnet8_w16/Vanilla_e2_s0").resources
    r4 = sweep.run_by_name("digits/resnet8_w16/Vanilla_e4_s0").resources
    f4 = sweep.run_by_name("fmnist/resnet8_w16/Vanilla_e4_s0").resources
    assert (r2.gpus, r2.cpus, r2.mem_gb, r2.time_min) == (1, 4, 8.0, 30)
    assert (r4.gpus, r4.time_min) == (1, 90)
    assert (f4.gpus, f4.time_min) == (2, 90)
    with pytest.raises(SweepError, match="unknown resource"):
        load_sweep(write_sweep(tmp_path, _spec(resources={"gpu": 1}), "bad.yaml"))


def test_leaderboard_section_sets_the_final_table_metric(tmp_path):
    assert load_sweep(write_sweep(tmp_path, _spec())).leaderboard == {"metric": "median_last_n", "last_n": 10}
    spec = _spec(leaderboard={"last_n": 3})
    assert load_sweep(write_sweep(tmp_path, spec, "lb.yaml")).leaderboard == {
        "metric": "median_last_n",
        "last_n": 3,
    }
    spec = _spec(leaderboard={"metric": "best"})
    assert load_sweep(write_sweep(tmp_path, spec, "lb2.yaml")).leaderboard["metric"] == "best"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["axes"]["method"].update({"bad name": {"type": "Mixup"}}), "must be letters"),
        (lambda s: s["axes"].update(seed=[]), "empty"),
        (lambda s: s["axes"].update(max_epochs=["ten"]), "non-negative integers"),
        (lambda s: s["axes"]["method"].update({"NoType": {"alpha": 1}}), "unknown key method.alpha"),
        (
            lambda s: s["axes"]["method"].update({"NoType": {"mixer": {"alpha": 1}}}),
            "method.mixer must be a mapping with a `type`",
        ),
        (lambda s: s.update(axes_typo={}), "unknown top-level keys"),
        (lambda s: s.update(exclude=[{"seed": [0, 1]}]), "no runs"),
        (lambda s: s.update(leaderboard={"metric": "top5"}), "leaderboard.metric must be one of"),
        (lambda s: s.update(leaderboard={"last_n": 0}), "leaderboard.last_n must be a positive integer"),
        (lambda s: s.update(leaderboard={"lastn": 3}), "unknown leaderboard keys"),
    ],
)
def test_bad_sweep_files_say_what_to_fix(tmp_path, change, message):
    spec = _spec()
    change(spec)
    with pytest.raises(SweepError, match=message):
        load_sweep(write_sweep(tmp_path, spec))


def test_resolved_config_is_written_before_launch_and_a_changed_config_is_refused(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, _spec()))
    run = sweep.runs[0]
    prepare_run(run)
    written = yaml.safe_load((run.work_dir / "config.yaml").read_text())
    assert written["method"] == run.config["method"]
    cmd = train_command(run)
    assert cmd[1:] == [
        str(REPO / "tools/train.py"),
        str(run.work_dir.resolve() / "config.yaml"),
        "--work-dir",
        str(run.work_dir.resolve()),
        "--resume",
        "auto",
    ]
    assert train_command(run, gpus=4, port=29501)[1:5] == [
        "-m",
        "torch.distributed.run",
        "--master_port=29501",
        "--nproc_per_node=4",
    ]
    (run.work_dir / "result.json").write_text("{}")  # the run has started
    spec = _spec(options={"optim_wrapper.optimizer.lr": 0.3})
    changed = load_sweep(write_sweep(tmp_path, spec)).runs[0]
    with pytest.raises(SweepError, match="another config"):
        prepare_run(changed)


def test_the_sweep_package_never_imports_torch():
    code = (
        "import sys, mixbench.sweep, mixbench.sweep.report; "
        "bad = [m for m in ('torch', 'mmengine', 'mixbench.models') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_a_checkpoint_pointer_to_a_deleted_file_is_repaired_before_resume(tmp_path):
    from mixbench.sweep.launch import repair_checkpoint_pointer

    wd = tmp_path / "run"
    wd.mkdir()
    assert repair_checkpoint_pointer(wd) is None  # nothing to resume: nothing to do
    (wd / "last_checkpoint").write_text(str(wd / "epoch_3.pth"))  # killed between delete and save
    (wd / "epoch_1.pth").write_bytes(b"x")
    (wd / "epoch_2.pth").write_bytes(b"x")
    assert "resuming from epoch_2.pth" in repair_checkpoint_pointer(wd)
    assert (wd / "last_checkpoint").read_text() == str((wd / "epoch_2.pth").resolve())
    assert repair_checkpoint_pointer(wd) is None  # a valid pointer is left alone
    (wd / "epoch_1.pth").unlink()
    (wd / "epoch_2.pth").unlink()
    assert "starting over" in repair_checkpoint_pointer(wd)
    assert not (wd / "last_checkpoint").exists()


def test_shipped_sweep_files_carry_whole_methods_of_registered_parts():
    """Every run of every shipped sweep resolves to a registered classifier, mixer and loss,
    and carries its method file whole (only the name is the axis name)."""
    from mixbench.config import load_config
    from mixbench.method import resolve_method
    from mixbench.registry import MIXERS, MODELS

    sizes = {}
    for path in sorted((CONFIGS / "sweeps").glob("*.yaml")):
        sweep = load_sweep(path)
        sizes[sweep.name] = len(sweep.runs)
        files = {
            name: (path.parent / f)
            for name, f in (yaml.safe_load(path.read_text())["axes"].get("method") or {}).items()
            if isinstance(f, str)
        }
        for run in sweep.runs:
            cfg = resolve_method(run.config)
            model = cfg["model"]
            assert MODELS.get(model["type"]) is not None, (path.name, run.name, model["type"])
            mixer = model.get("mixer") or {"type": "Vanilla"}  # AutoMix & co.: their Mix Block mixes
            assert MIXERS.get(mixer["type"]) is not None, (path.name, run.name)
            assert MODELS.get(model["loss"]["type"]) is not None, (path.name, run.name)
            assert run.config["randomness"]["seed"] == run.axes["seed"]
            method = run.axes["method"]
            assert cfg["meta"]["method"] == cfg["method"]["name"] == method
            if method in files:
                shipped = load_config(files[method])["method"]
                assert {**shipped, "name": method} == run.config["method"], (path.name, run.name)
    assert sizes["demo_digits"] == 7 * 3 and sizes["fashion_mnist"] == 11 * 3
    assert sizes["all_methods"] == 28 + 30


def test_a_method_is_carried_whole_and_named_what_ran(tmp_path):
    """Every part of a method file reaches the run: classifier, mixer, loss, parameter groups
    and hooks; the run's meta names the method (the axis name)."""
    from mixbench.method import resolve_method

    spec = _spec()
    spec["axes"]["method"] = {
        "DecoupleMix": str(CONFIGS / "methods/decouple_mixup.yaml"),
        "AutoMix": str(CONFIGS / "methods/automix.yaml"),
        "TransMix": str(CONFIGS / "methods/transmix.yaml"),
    }
    sweep = load_sweep(write_sweep(tmp_path, spec))
    runs = {r.axes["method"]: resolve_method(r.config) for r in sweep.runs if r.axes["seed"] == 0}
    decouple = runs["DecoupleMix"]
    assert decouple["model"]["type"] == "MixupClassifier"
    assert decouple["model"]["mixer"] == {"type": "Mixup", "alpha": 0.2}
    assert decouple["model"]["loss"]["type"] == "DecoupledMixupLoss"
    assert decouple["meta"]["method"] == decouple["method"]["name"] == "DecoupleMix"
    automix = runs["AutoMix"]
    assert automix["model"]["type"] == "AutoMixClassifier" and automix["model"]["mask_stage"] == 3
    assert (
        automix["model"]["backbone"]["type"] == "ResNetCIFAR"
    )  # the sweep's backbone, not one of the method's
    assert automix["optim_wrapper"]["paramwise_cfg"]["custom_keys"]["mix_block"] == {"lr_mult": 1.0}
    assert automix["model"]["mix_block_lr"] == 0.1 and automix["model"]["end_momentum"] == 0.999999
    transmix = runs["TransMix"]
    assert transmix["model"]["type"] == "TransMixClassifier"
    assert transmix["model"]["mixer"]["type"] == "RandomChoiceMixer"


def test_what_a_sweep_cannot_carry_is_refused(tmp_path):
    spec = _spec()
    spec["axes"]["mixer"] = spec["axes"].pop("method")
    with pytest.raises(SweepError, match="axes.mixer is now axes.method"):
        load_sweep(write_sweep(tmp_path, spec, "old.yaml"))
    spec = _spec()
    spec["axes"]["methd"] = spec["axes"].pop("method")
    with pytest.raises(SweepError, match="did you mean 'method'"):
        load_sweep(write_sweep(tmp_path, spec, "typo.yaml"))
    full = tmp_path / "full.yaml"  # a method file that names a backbone
    full.write_text(
        yaml.safe_dump(
            {
                "method": {"mixer": {"type": "CutMix"}},
                "model": {"backbone": {"type": "ResNetCIFAR", "depth": 18}},
            }
        )
    )
    spec = _spec()
    spec["axes"]["method"] = {"CutMix": str(full)}
    with pytest.raises(SweepError, match="only a `method:` section"):
        load_sweep(write_sweep(tmp_path, spec, "full_sweep.yaml"))
    spec["axes"]["method"] = {"CutMix": {"mixr": {"type": "CutMix"}}}
    with pytest.raises(SweepError, match="did you mean 'mixer'"):
        load_sweep(write_sweep(tmp_path, spec, "key.yaml"))
