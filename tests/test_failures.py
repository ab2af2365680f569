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
