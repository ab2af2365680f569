"""ensure_generated: a cache folder appears complete or not at all, and a foreign one is refused."""

import pytest

from cvkit.data.generated_cache import ensure_generated


def _writer(calls):
    def write(folder):
        calls.append(folder)
        (folder / "image.png").write_bytes(b"x")
        (folder / "done.txt").write_text("ok")  # the marker, written last

    return write


def test_generates_once_then_reuses(tmp_path):
    calls = []
    folder = tmp_path / "cache" / "split-a"
    assert ensure_generated(folder, "done.txt", "Toy", _writer(calls), "1 image") == folder
    assert (folder / "image.png").is_file() and len(calls) == 1
    ensure_generated(folder, "done.txt", "Toy", _writer(calls), "1 image")
    assert len(calls) == 1  # the marker is there: nothing is drawn again
    assert [p.name for p in folder.parent.iterdir()] == ["split-a"]  # no scratch left


def test_a_crash_leaves_no_folder_behind(tmp_path):
    def crash(folder):
        (folder / "image.png").write_bytes(b"x")
        raise RuntimeError("out of disk")

    folder = tmp_path / "split-a"
    with pytest.raises(RuntimeError, match="out of disk"):
        ensure_generated(folder, "done.txt", "Toy", crash, "1 image")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_the_marker_is_refused_by_name(tmp_path):
    folder = tmp_path / "split-a"
    folder.mkdir()
    (folder / "mine.txt").write_text("a user's file")
    with pytest.raises(ValueError) as err:
        ensure_generated(folder, "done.txt", "ShapesDetection", _writer([]), "1 image")
    message = str(err.value)
    assert "ShapesDetection cache folder" in message and str(folder) in message
    assert "has no done.txt" in message and "delete it" in message
    assert (folder / "mine.txt").read_text() == "a user's file"  # nothing of theirs touched
