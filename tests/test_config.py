import pytest

from cvkit.config import from_dict, load_config
from cvkit.errors import ConfigFileError, OverrideError


def test_base_merges_in_order_child_wins_lists_replace(write):
    write(
        "base1.yaml",
        """
        model: {type: ImageClassifier, head: {type: ClsHead, num_classes: 10, dropout: 0.1}}
        train: {epochs: 5, optimizer: {type: SGD, lr: 0.1}}
        data: {batch_size: 8}
    """,
    )
    write("base2.yaml", "train: {epochs: 7}\nimports: [a]\n")
    child = write(
        "child.yaml",
        """
        _base_: [base1.yaml, base2.yaml]
        model: {head: {num_classes: 3}}
        train: {optimizer: {lr: 0.01}}
        imports: [b, a]
    """,
    )
    cfg = load_config(child)
    assert cfg.get("model.head.num_classes") == 3
    assert cfg.get("model.head.dropout") == 0.1
    assert cfg.get("train.epochs") == 7  # the later base wins over the earlier
    assert cfg.get("train.optimizer") == {"type": "SGD", "lr": 0.01}
    assert cfg.data["imports"] == ["a", "b"]  # a union, not a replacement
    assert [p.name for p in cfg.chain] == ["child.yaml", "base1.yaml", "base2.yaml"]
    assert cfg.origins["model.head.num_classes"].endswith("child.yaml")
    assert cfg.origins["model.head.dropout"].endswith("base1.yaml")
    assert "_base_ chain" in cfg.describe("model.head.dropout")


def test_replace_and_type_change_replace_the_subtree(write):
    write(
        "base.yaml",
        """
        model:
          backbone: {type: TimmBackbone, name: resnet18, frozen_stages: 2}
          head: {type: ClsHead, num_classes: 10, dropout: 0.5}
        data: {train: {type: DigitsClassification, split: train}}
    """,
    )
    child = write(
        "child.yaml",
        """
        _base_: base.yaml
        model:
          backbone: {type: LeNet5}
          head: {_replace_: true, type: ClsHead, num_classes: 2}
    """,
    )
    cfg = load_config(child)
    assert cfg.get("model.backbone") == {"type": "LeNet5"}
    assert cfg.get("model.head") == {"type": "ClsHead", "num_classes": 2}
    assert "_replace_" not in str(cfg.data)


def test_lists_replace_whole(write):
    write("b.yaml", "data: {train: {type: X, transforms: [{type: A}, {type: B}]}}\n")
    cfg = load_config(write("c.yaml", "_base_: b.yaml\ndata: {train: {transforms: [{type: C}]}}\n"))
    assert cfg.get("data.train.transforms") == [{"type": "C"}]


def test_overrides_parse_yaml_values_and_add_with_plus():
    cfg = from_dict(
        {"model": {"type": "ImageClassifier", "head": {"type": "ClsHead"}}, "train": {"epochs": 1}},
        [
            "train.epochs=3",
            "model.head.num_classes=5",
            "+extra.note=hi",
            "train.optimizer={type: Adam, lr: 1e-3}",
            "train.max_steps=4",
            "model.head.dropout=0.2",
        ],
    )
    assert cfg.get("train.epochs") == 3
    assert cfg.get("train.optimizer") == {"type": "Adam", "lr": 0.001}  # 1e-3 is a float
    assert cfg.get("train.max_steps") == 4  # a schema key may be set though the file omits it
    assert cfg.get("model.head.dropout") == 0.2  # so may a component's argument
    assert cfg.get("extra.note") == "hi"
    assert from_dict({"model": {}}, ["eval.plots=false"]).get("eval.plots") is False
    assert cfg.origins["train.epochs"] == "the command line"


def test_override_typos_fail_even_for_schema_and_component_keys():
    base = {"model": {"type": "ImageClassifier", "head": {"type": "ClsHead"}}, "train": {}}
    with pytest.raises(OverrideError, match=r"'train\.epoches' does not exist"):
        from_dict(base, ["train.epoches=3"])
    with pytest.raises(OverrideError, match=r"'model\.head\.dropuot' does not exist"):
        from_dict(base, ["model.head.dropuot=0.1"])
    with pytest.raises(OverrideError, match="already exists"):
        from_dict(base, ["+model.type=X"])
    with pytest.raises(OverrideError, match="is not an override"):
        from_dict(base, ["train.epochs"])


def test_base_cycle_and_non_mapping(write):
    write("a.yaml", "_base_: b.yaml\n")
    write("b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigFileError, match="cycle"):
        load_config(write("top.yaml", "_base_: a.yaml\n"))
    with pytest.raises(ConfigFileError, match="must be a YAML mapping"):
        load_config(write("list.yaml", "- 1\n- 2\n"))


def test_imports_paths_are_relative_to_the_file_that_names_them(write, tmp_path):
    write("sub/base.yaml", "imports: [./plug.py, some.module]\n")
    cfg = load_config(write("top.yaml", "_base_: sub/base.yaml\n"))
    assert cfg.data["imports"] == [str((tmp_path / "sub" / "plug.py").resolve()), "some.module"]
