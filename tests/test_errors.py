"""One test per kind of error message, checking its text: where, what, and the fix."""

import pytest

from cvkit.config import load_config
from cvkit.engine.run import validate
from cvkit.errors import (
    ConfigError,
    ConfigFileError,
    MissingArgumentError,
    OverrideError,
    PluginError,
    UnknownArgumentError,
    UnknownTypeError,
    UnsafeYamlError,
    ValueTypeError,
)

BASE = """
model:
  type: ImageClassifier
  backbone: {type: TinyNet, width: 8}
  neck: {type: GlobalPool}
  head: {type: ClsHead, num_classes: 10}
"""


@pytest.fixture
def chain(write, tmp_path, monkeypatch):
    """A config inheriting from _base_/model.yaml; returns a function that writes the child."""
    monkeypatch.chdir(tmp_path)  # messages show paths relative to the working folder
    write("_base_/model.yaml", BASE)
    return lambda text: write("child.yaml", "_base_: _base_/model.yaml\n" + text)


def _error(path, *overrides) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        validate(load_config(path, overrides))
    return err.value


def test_unknown_argument_names_path_suggests_and_lists_accepted(chain):
    err = _error(chain("model:\n  backbone: {widht: 64}\n"))
    assert isinstance(err, UnknownArgumentError) and isinstance(err, TypeError)
    assert str(err).splitlines() == [
        "model.backbone.widht: TinyNet got an unknown argument 'widht'",
        "  did you mean 'width'?",
        "  TinyNet accepts: width=32, out_indices=(-1,), in_chans=3, norm='batch'",
        "  in child.yaml (_base_ chain: child.yaml -> _base_/model.yaml)",
    ]


def test_unknown_type_suggests_and_points_to_cvkit_list(chain):
    err = _error(chain("model:\n  neck: {type: GlobalPol}\n"))
    assert isinstance(err, UnknownTypeError) and isinstance(err, KeyError)
    text = str(err)
    assert text.startswith("model.neck.type: 'GlobalPol' is not a registered neck\n")
    assert "  did you mean 'GlobalPool'?" in text
    assert "`cvkit list necks` shows the" in text
    assert "package.module:ClassName" in text
    assert text.endswith("in child.yaml (_base_ chain: child.yaml -> _base_/model.yaml)")


def test_wrong_value_type(chain):
    err = _error(chain("model:\n  head: {num_classes: ten}\n"))
    assert isinstance(err, ValueTypeError)
    assert str(err).splitlines()[0] == "model.head.num_classes: expected int, got str 'ten'"
    err = _error(chain("train: {optimizer: {type: SGD, lr: fast}}\n"))
    assert str(err).splitlines()[0].startswith("train.optimizer.lr: expected float")
    err = _error(chain("train: {device: gpu}\n"))
    assert "train.device: expected one of 'auto', 'cpu', 'cuda', got str 'gpu'" in str(err)


def test_missing_required_argument(chain):
    # (a missing num_classes is not one: the training data fills it, see test_class_count.py)
    err = _error(chain("model:\n  backbone: {_replace_: true, type: TimmBackbone}\n"))
    assert isinstance(err, MissingArgumentError)
    assert str(err).splitlines()[:2] == [
        "model.backbone: TimmBackbone is missing the required argument 'name'",
        "  add `name: ...` (str)",
    ]


def test_unknown_setting_in_a_section(chain):
    err = _error(chain("train: {epoches: 3}\n"))
    assert isinstance(err, UnknownArgumentError)
    lines = str(err).splitlines()
    assert lines[0] == "train.epoches: 'epoches' is not a setting of section 'train'"
    assert lines[1] == "  did you mean 'epochs'?"


def test_unknown_override_path(chain):
    with pytest.raises(OverrideError) as err:
        load_config(chain(""), ["model.backbone.widht=4"])
    lines = str(err.value).splitlines()
    assert lines[0] == (
        "override 'model.backbone.widht=4': 'model.backbone.widht' does not exist in the config"
    )
    assert "  did you mean 'width'?" in lines
    assert "  keys under model.backbone: type, width" in lines
    assert any("+model.backbone.widht=" in line for line in lines)


def test_missing_base_file_names_the_file_and_the_nearest(write):
    write("_base_/schedule.yaml", "train: {epochs: 1}\n")
    path = write("top.yaml", "_base_: [_base_/shedule.yaml]\n")
    with pytest.raises(ConfigFileError) as err:
        load_config(path)
    assert isinstance(err.value, FileNotFoundError)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("top.yaml: _base_ file '_base_/shedule.yaml' does not exist")
    assert lines[1] == "  did you mean 'schedule.yaml'?"


def test_yaml_tag_that_would_construct_python_objects_is_refused(write, tmp_path):
    marker = tmp_path / "hacked"
    path = write(
        "evil.yaml", f'model:\n  type: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    with pytest.raises(UnsafeYamlError) as err:
        load_config(path)
    assert not marker.exists()
    text = str(err.value)
    assert "evil.yaml, line 2: the YAML tag" in text
    assert "python/object/apply:os.system" in text
    assert "configs are data and never execute code" in text


def test_duplicate_key_in_one_file_is_not_silently_dropped(write):
    with pytest.raises(ConfigFileError) as err:
        load_config(write("dup.yaml", "train: {epochs: 3}\ntrain: {epochs: 4}\n"))
    assert "dup.yaml, line 2: key 'train' appears twice in one mapping (first on line 1)" in str(
        err.value
    )


def test_invalid_yaml_names_file_and_line(write):
    with pytest.raises(ConfigFileError, match=r"bad\.yaml, line \d+: not valid YAML"):
        load_config(write("bad.yaml", "model: {type: X\ntrain: [\n"))


def test_plugin_that_fails_to_import_is_named_with_its_error(chain, write):
    write("broken_plugin.py", "raise RuntimeError('boom at import')\n")
    err = _error(chain("imports: [./broken_plugin.py, no_such_module_xyz]\n"))
    assert isinstance(err, PluginError)
    text = str(err)
    assert "2 of 2 plugin(s) failed to import" in text
    assert "broken_plugin.py: RuntimeError (" in text
    assert "broken_plugin.py, line 1): boom at import" in text
    assert "no_such_module_xyz: ModuleNotFoundError" in text


def test_class_count_that_disagrees_with_the_data(write):
    from cvkit.engine.run import train

    path = write("c.yaml", BASE + "data: {train: {type: DigitsClassification}}\n")
    with pytest.raises(ConfigError) as err:
        train(load_config(path, ["model.head.num_classes=3"]))
    assert "the model has num_classes=3 but data.train has 10 classes" in str(err.value)
    assert "set model.head.num_classes=10" in str(err.value)


def test_checkpoint_that_cannot_be_read_says_why_and_never_suggests_running_its_code(tmp_path):
    import os

    import torch

    from cvkit.engine.checkpoint import load_checkpoint
    from cvkit.errors import CheckpointError

    class Code:
        def __reduce__(self):
            return (os.getcwd, ())

    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"model": {"x": Code()}}, tmp_path / "code.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "bare.pt")
    texts = {}
    for name in ("empty.pt", "code.pt", "bare.pt"):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        texts[name] = str(err.value)
    assert (
        "empty.pt' cannot be read: it is not a complete checkpoint (the file is empty)"
        in (texts["empty.pt"])
    )
    assert (
        "code.pt' cannot be read: it holds Python objects other than tensors" in (texts["code.pt"])
    )
    assert "weights_only=False" not in texts["code.pt"]
    assert "bare.pt' has no 'model' entry: it is not a cvkit checkpoint" in texts["bare.pt"]
    assert "model.backbone.pretrained" in texts["bare.pt"]
