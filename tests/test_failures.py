"""How a command ends when it fails (cvkit/failures.py): a bug in cvkit gets a traceback, exit
code 3 and a request to report it; CVKIT_DEBUG=1 re-raises anything; warnings are one line.
(The user's mistakes are the corpus: tests/test_bad_inputs.py.)"""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

import pytest

from cvkit import cli, failures
from cvkit.errors import ConfigError


def _failing_list(exc: BaseException):
    def command(args):
        raise exc

    return command


def test_a_bug_in_cvkit_prints_the_traceback_and_asks_for_a_report(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_list", _failing_list(TypeError("unsupported operand")))
    assert cli.main(["list"]) == failures.EXIT_BUG == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "TypeError: unsupported operand" in err
    assert "This is a bug in cvkit" in err and "Please report it" in err
    assert "CVKIT_DEBUG=1" in err


def test_cvkit_debug_re_raises_a_users_error_too(monkeypatch):
    monkeypatch.setattr(cli, "_cmd_list", _failing_list(ConfigError("bad key", where="train")))
    monkeypatch.setenv("CVKIT_DEBUG", "1")
    with pytest.raises(ConfigError, match="bad key"):
        cli.main(["list"])
    monkeypatch.setenv("CVKIT_DEBUG", "0")  # 0 means off
    assert cli.main(["list"]) == 2


def test_os_errors_name_the_file_and_say_what_to_do(monkeypatch, capsys):
    full = OSError(errno.ENOSPC, "No space left on device", "runs/r50/metrics.jsonl")
    monkeypatch.setattr(cli, "_cmd_list", _failing_list(full))
    assert cli.main(["list"]) == 1
    assert capsys.readouterr().err == (
        "error: runs/r50/metrics.jsonl: No space left on device; free some disk space "
        "(or write elsewhere: run_dir=..., --out ...) and retry\n"
    )


def test_out_of_memory_is_the_users_to_fix_not_a_bug(monkeypatch, capsys):
    class OutOfMemoryError(RuntimeError):  # torch's, by name
        pass

    oom = OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(cli, "_cmd_list", _failing_list(oom))
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert "out of memory (CUDA out of memory" in err and "data.batch_size" in err


def test_notes_are_printed_under_the_message(monkeypatch, capsys):
    exc = ValueError("loss is nan at step 3")
    exc.add_note("runs/x/last.pt (step 2) is intact: resume with `cvkit train --resume runs/x`")
    monkeypatch.setattr(cli, "_cmd_list", _failing_list(exc))
    assert cli.main(["list"]) == 1
    assert capsys.readouterr().err == (
        "error: loss is nan at step 3\n"
        "  runs/x/last.pt (step 2) is intact: resume with `cvkit train --resume runs/x`\n"
    )


def test_an_interrupt_says_so_with_its_notes(monkeypatch, capsys):
    exc = KeyboardInterrupt()
    exc.add_note("resume with `cvkit train --resume runs/x`")
    monkeypatch.setattr(cli, "_cmd_list", _failing_list(exc))
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err == "interrupted\n  resume with `cvkit train --resume runs/x`\n"


def test_an_exception_in_a_plugins_code_names_its_file_and_line(tmp_path: Path):
    plugin = tmp_path / "my_hook.py"
    plugin.write_text("def after_step():\n    return {}['loss']\n")
    namespace: dict = {}
    exec(compile(plugin.read_text(), str(plugin), "exec"), namespace)
    try:
        namespace["after_step"]()
    except KeyError as exc:
        caught = exc
    assert failures.exit_code(caught, [plugin]) == 1
    assert failures.exit_code(caught, []) == failures.EXIT_BUG  # not a plugin's: a bug
    assert failures.describe(caught, [plugin]).startswith(
        f"a plugin failed: {plugin}, line 2, in after_step: KeyError: 'loss'"
    )


def test_warnings_are_one_plain_line(capsys):
    with failures.plain_warnings():
        warnings.warn("results.json holds no detections,\n  so every AP is 0", stacklevel=1)
        warnings.warn("old name", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "warning: results.json holds no detections, so every AP is 0",
        "warning: old name (DeprecationWarning)",
    ]


def test_coco_eval_warns_in_one_line_without_cvkits_source(tmp_path: Path, capsys):
    """The issue's case: a result of a category the ground truth lacks is warned about, and
    the user saw the line of cvkit's source that warned under the message."""
    import json

    gt = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 20, 20], "area": 400}
        ],
        "categories": [{"id": 1, "name": "box"}],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [8, 8, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 5, "bbox": [8, 8, 20, 20], "score": 0.8},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    assert cli.main(["coco-eval", str(tmp_path / "gt.json"), str(tmp_path / "dt.json")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: COCO file ")
    assert "results[1] names category_id 5" in err[0] and "not scored" in err[0]


def test_an_error_from_a_loader_worker_is_its_own_message_and_names_the_plugin(tmp_path):
    """torch re-raises a worker's error with the worker's traceback as its text."""
    plugin = tmp_path / "my_transform.py"
    text = (
        "Caught KeyError in DataLoader worker process 1.\n"
        "Original Traceback (most recent call last):\n"
        '  File "/site-packages/torch/utils/data/_utils/worker.py", line 349, in _worker_loop\n'
        "    data = fetcher.fetch(index)\n"
        f'  File "{plugin}", line 12, in apply\n'
        "    return table[key]\n"
        "KeyError: 'mosaic'\n"
    )
    caught = ValueError(text.replace("KeyError", "ValueError"))
    assert failures.exit_code(caught) == 1
    assert failures.describe(caught) == "'mosaic' (in DataLoader worker process 1)"

    class KeyErrorMessage(str):  # torch's, so that str() of the KeyError is the text itself
        def __repr__(self) -> str:
            return str(self)

    as_key = KeyError(KeyErrorMessage(text))
    assert failures.exit_code(as_key, [plugin]) == 1  # the worker's frames are read
    assert failures.describe(as_key, [plugin]) == (
        f"a plugin failed: {plugin}, line 12, in apply: KeyError: 'mosaic' (in DataLoader "
        "worker process 1); fix the plugin (set CVKIT_DEBUG=1 for the whole traceback)"
    )


def test_cvkits_log_warnings_say_warning_too(capsys):
    import logging

    with failures.plain_warnings():
        logging.getLogger("cvkit.data").warning("CocoDetection 'a.json': dropped 1 of 2 boxes")
        logging.getLogger("cvkit.data").info("not shown: below warning")
    logging.getLogger("cvkit.data").warning("after: not this handler's")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "warning: CocoDetection 'a.json': dropped 1 of 2 boxes"
    assert "not shown" not in "\n".join(lines)
    assert not any(line.startswith("warning: after") for line in lines)
