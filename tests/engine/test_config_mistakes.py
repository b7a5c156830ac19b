"""Config mistakes that used to be silent (an ignored key, a number read as a string) or
raw tracebacks at runner.train(): each fails before training, naming the key, the file and
the fix (issue 17)."""

import pytest
from mbtest.repo import REPO, run_tool

from mixbench.config import ConfigError, load_config, options_to_dict
from mixbench.engine.runner import TOP_LEVEL_KEYS, validate_config
from mixbench.registry import MODELS, UnknownOptionError, check_options

DEMO = REPO / "configs/digits/resnet8_mixup.yaml"


def refused(overrides=(), edit=None):
    cfg = load_config(DEMO, list(overrides))
    if edit is not None:
        edit(cfg)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    msg = str(info.value)
    assert "resnet8_mixup.yaml" in msg, msg
    return msg


def test_unknown_top_level_key_is_refused_with_the_closest_name():
    msg = refused(["trian_cfg.max_epochs=2"])
    assert "unknown top-level key 'trian_cfg'" in msg and "did you mean 'train_cfg'" in msg


def test_known_top_level_keys_include_the_method_section_and_what_mmengine_reads():
    assert {
        "method",
        "meta",
        "logging",
        "result",
        "train_cfg",
        "default_hooks",
        "env_cfg",
        "log_processor",
        "randomness",
        "model_wrapper_cfg",
        "load_from",
        "resume",
    } <= TOP_LEVEL_KEYS
    cfg = load_config(DEMO)
    cfg["method"] = {"name": "Mixup", "mixer": {"type": "Mixup", "alpha": 1.0}}
    validate_config(cfg)


def test_yaml_1_1_exponent_numbers_are_floats_in_files_and_options(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"_base_: {DEMO}\noptim_wrapper:\n  optimizer: {{lr: 1e-3, weight_decay: 5e-4}}\n"
        "method: {mixer: {type: Mixup, alpha: 1e1}}\n"
    )
    cfg = load_config(path)
    assert cfg["optim_wrapper"]["optimizer"]["lr"] == pytest.approx(0.001)
    assert cfg["optim_wrapper"]["optimizer"]["weight_decay"] == pytest.approx(0.0005)
    assert cfg["method"]["mixer"]["alpha"] == 10.0 and isinstance(cfg["method"]["mixer"]["alpha"], float)
    validate_config(cfg)
    opts = options_to_dict(
        ["optim_wrapper.optimizer.lr=5e-4", "a.b=1E1", "a.c=[1e-3, 2]", "a.d=7", "a.e=v1e3"]
    )
    assert opts["optim_wrapper"]["optimizer"]["lr"] == pytest.approx(5e-4)
    assert opts["a"] == {"b": 10.0, "c": [0.001, 2], "d": 7, "e": "v1e3"}
    assert isinstance(opts["a"]["d"], int)


@pytest.mark.parametrize(
    "option, key, closest",
    [
        ("model.backbone.widht=8", "widht", "width"),
        ("optim_wrapper.optimizer.lrr=0.1", "lrr", "lr"),
        ("train_cfg.max_epoch=3", "max_epoch", "max_epochs"),
        ("method.mixer.alpah=0.2", "alpah", "alpha"),
        ("method.classifier={type: AutoMixClassifier, mask_stag: 2}", "mask_stag", "mask_stage"),
    ],
)
def test_misspelled_component_option_names_the_closest(option, key, closest):
    msg = refused([option])
    assert f"no option {key!r}" in msg and f"did you mean {closest!r}" in msg, msg


def test_typo_in_a_default_hook_type():
    msg = refused(["default_hooks.checkpoint.type=SafeCheckpointHok"])
    assert "Unknown hook 'SafeCheckpointHok'" in msg and "default_hooks.checkpoint.type" in msg
    assert "did you mean 'SafeCheckpointHook'" in msg


@pytest.mark.parametrize("value", ["{_delete_: true}", "[]", "null", "{_delete_: true, topk: [1]}"])
def test_emptied_val_evaluator(value):
    msg = refused([f"val_evaluator={value}"])
    assert "val_evaluator must name a metric" in msg and "type: Accuracy" in msg


def test_head_without_num_classes():
    msg = refused(edit=lambda c: c["model"]["head"].pop("num_classes"))
    assert "model.head" in msg and "LinearHead needs 'num_classes'" in msg


def test_malformed_cfg_option_mapping_is_an_error_not_a_string():
    with pytest.raises(ConfigError, match=r"method.mixer=.*not a valid YAML mapping.*quote the whole option"):
        load_config(DEMO, ["method.mixer={type: Mixup, alpha: 1"])
    with pytest.raises(ConfigError, match="not a valid YAML list"):
        load_config(DEMO, ["custom_hooks=[{type: EMAHook}"])


def test_check_options_is_reusable_and_honours_kwargs():
    check_options(MODELS, {"type": "ResNetCIFAR", "depth": 8, "width": 8}, "model.backbone", "x.yaml")
    with pytest.raises(
        UnknownOptionError, match=r"model.backbone in x.yaml: ResNetCIFAR has no option 'dpeth'"
    ):
        check_options(MODELS, {"type": "ResNetCIFAR", "dpeth": 8}, "model.backbone", "x.yaml")

    class Open:
        def __init__(self, a, **kwargs):
            pass

    check_options(MODELS, {"type": Open, "a": 1, "anything": 2})  # **kwargs: any key passes
    with pytest.raises(UnknownOptionError, match="Open needs 'a'"):
        check_options(MODELS, {"type": Open})


def test_train_cli_refuses_before_training(tmp_path):
    for opt in ("trian_cfg.max_epochs=1", "method.mixer={type: Mixup, alpha: 1", "model.mask_stage=2"):
        proc = run_tool(
            "tools/train.py",
            DEMO,
            "--work-dir",
            tmp_path / "wd",
            "--cfg-options",
            opt,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 2 and "config error" in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "wd" / "result.json").exists()
