import subprocess
import sys

import pytest

import cvkit
from cvkit.errors import DuplicateNameError, UnknownTypeError
from cvkit.registry import REGISTRIES, Registry


def test_register_get_names_alias_and_bare():
    reg = Registry("toy")

    @reg.register()
    class Ball:
        pass

    @reg.register("Cube")
    class Box:
        pass

    @reg.register
    class Bat:
        pass

    assert reg.get("Ball") is Ball and reg.get("Cube") is Box and reg.get("Bat") is Bat
    assert reg.names() == ["Ball", "Bat", "Cube"]
    assert reg.names("B*") == ["Ball", "Bat"]
    assert "Cube" in reg and "Box" not in reg
    assert reg.entry("Ball").source == "tests.test_registry"


def test_duplicate_name_raises_and_names_both():
    reg = Registry("toy")
    reg.add(int, "Thing")
    with pytest.raises(DuplicateNameError) as err:
        reg.add(float, "Thing")
    assert "'Thing' is already registered as a toy" in str(err.value)
    assert "builtins.int" in str(err.value)
    assert isinstance(err.value, KeyError)  # still catchable as the builtin kind


def test_dotted_type_imports_the_class():
    reg = Registry("toy")
    assert reg.get("collections:OrderedDict").__name__ == "OrderedDict"
    with pytest.raises(UnknownTypeError, match="has no attribute 'OrderedDicct'"):
        reg.get("collections:OrderedDicct")
    with pytest.raises(UnknownTypeError, match="cannot import module 'no_such_mod_xyz'"):
        reg.get("no_such_mod_xyz:Thing")


def test_unknown_name_suggests_and_points_to_cvkit_list():
    with pytest.raises(UnknownTypeError) as err:
        cvkit.NECKS.get("GlobalPol")
    text = str(err.value)
    assert "'GlobalPol' is not a registered neck" in text
    assert "did you mean 'GlobalPool'?" in text
    assert "`cvkit list necks`" in text


def test_providers_resolve_albumentations_by_name_and_registered_names_win():
    flip = cvkit.TRANSFORMS.get("HorizontalFlip")
    assert flip.__module__.startswith("albumentations")
    assert cvkit.TRANSFORMS.entry("HorizontalFlip").source == "albumentations"
    assert "BasicTransform" not in cvkit.TRANSFORMS  # abstract bases are left out


def test_every_builtin_registers_on_import():
    assert "TimmBackbone" in cvkit.BACKBONES.names()
    assert "ImageClassifier" in cvkit.MODELS.names()
    for kind in ("backbones", "necks", "heads", "models", "losses", "datasets", "optimizers"):
        assert REGISTRIES[kind].names(), kind
    assert bool(Registry("empty"))  # an empty registry is not falsy


def test_every_registry_is_a_public_name():
    import cvkit.registry as registry_module

    declared = {n for n, v in vars(registry_module).items() if isinstance(v, Registry)}
    assert declared == {n for n in cvkit.__all__ if n.isupper()}
    for name in declared:
        assert getattr(cvkit, name) is getattr(registry_module, name)


def test_datasets_follow_one_naming_rule_and_old_names_still_build():
    names = set(cvkit.DATASETS.names())
    assert {"DigitsClassification", "ClassificationFolder", "CocoDetection"} <= names
    assert {"ShapesDetection", "SegmentationFolder", "ShapesSegmentation"} <= names
    for old, new in [
        ("DigitsDataset", "DigitsClassification"),
        ("ShapesDataset", "ShapesDetection"),
        ("ImageFolderDataset", "ClassificationFolder"),
    ]:
        entry = cvkit.DATASETS.entry(old)
        assert entry.obj is cvkit.DATASETS.get(new) and f"old name of {new}" in entry.source


IMPORT_EACH = """
import importlib, pkgutil, sys
import cvkit
names = sorted(m.name for m in pkgutil.walk_packages(cvkit.__path__, "cvkit."))
failed = []
for name in names:
    for key in [k for k in sys.modules if k == "cvkit" or k.startswith("cvkit.")]:
        del sys.modules[key]  # each module is the first of cvkit's to be imported
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names), failed)
"""


def test_every_module_imports_first_on_its_own():
    """A built-in registering itself must not pull in the others half-way (a module that
    imports one being initialised would find it half-built)."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    count, failed = out.stdout.split(" ", 1)
    assert int(count) > 90 and failed.strip() == "[]", failed
