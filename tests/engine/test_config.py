"""Config loading: _base_ inheritance, merge rules, overrides, safety."""

import pytest

from mixbench.config import ConfigError, config_hash, dump_config, load_config, merge, options_to_dict


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_chain_and_override_order(tmp_path):
    write(tmp_path / "b1.yaml", "a: 1\nmodel: {mixer: {type: Mixup, alpha: 1.0}, depth: 18}\n")
    write(tmp_path / "sub/b2.yaml", "_base_: ../b1.yaml\na: 2\nmodel: {depth: 34}\n")
    cfg = load_config(write(tmp_path / "c.yaml", "_base_: [sub/b2.yaml]\nmodel: {mixer: {alpha: 0.5}}\n"))
    assert cfg["a"] == 2
    assert cfg["model"] == {"mixer": {"type": "Mixup", "alpha": 0.5}, "depth": 34}


def test_changed_type_replaces_dict(tmp_path):
    write(tmp_path / "b.yaml", "model: {mixer: {type: Mixup, alpha: 1.0, prob: 0.5}}\n")
    cfg = load_config(write(tmp_path / "c.yaml", "_base_: b.yaml\nmodel: {mixer: {type: CutMix}}\n"))
    assert cfg["model"]["mixer"] == {"type": "CutMix"}


def test_delete_key_replaces_dict(tmp_path):
    write(tmp_path / "b.yaml", "opt: {lr: 0.1, momentum: 0.9}\n")
    cfg = load_config(write(tmp_path / "c.yaml", "_base_: b.yaml\nopt: {_delete_: true, lr: 0.2}\n"))
    assert cfg["opt"] == {"lr": 0.2}


def test_lists_replace_not_append():
    assert merge({"x": [1, 2, 3]}, {"x": [4]}) == {"x": [4]}


def test_cfg_options_parse_types(tmp_path):
    cfg = load_config(
        write(tmp_path / "c.yaml", "model: {mixer: {type: Mixup, alpha: 1.0}}\n"),
        [
            "model.mixer.alpha=0.2",
            "train_cfg.max_epochs=3",
            "flag=true",
            "sizes=[1, 2]",
            "name=abc",
            "model.mixer={type: CutMix, alpha: 1}",
        ],
    )
    assert cfg["model"]["mixer"] == {"type": "CutMix", "alpha": 1}
    assert cfg["train_cfg"]["max_epochs"] == 3 and cfg["flag"] is True
    assert cfg["sizes"] == [1, 2] and cfg["name"] == "abc"


def test_cfg_options_malformed():
    with pytest.raises(ConfigError, match="key.sub=value"):
        options_to_dict(["model.mixer.alpha"])


def test_missing_base_and_cycle(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(write(tmp_path / "c.yaml", "_base_: nope.yaml\n"))
    write(tmp_path / "x.yaml", "_base_: y.yaml\n")
    write(tmp_path / "y.yaml", "_base_: x.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "x.yaml")


def test_yaml_cannot_execute_code(tmp_path):
    evil = write(tmp_path / "c.yaml", "a: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(evil)


def test_dump_roundtrip_and_hash(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", "a: {b: [1, 2]}\nc: 0.5\n"))
    out = tmp_path / "out.yaml"
    dump_config(cfg, out)
    again = load_config(out)
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(out, ["c=0.6"])) != config_hash(cfg)
