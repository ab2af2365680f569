"""A COCO results file's shape and types (issue 17): one clear message per kind of mistake.

Each test writes tiny files into ``tmp_path`` and runs from there, so messages name them as a
user would type them (``COCO file 'results.json'``). Checked in the process through
``evaluate_coco`` / ``load_results``, and for a few kinds through ``cvkit.cli.main``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvkit.cli import main
from cvkit.coco_file import CocoFormatError, load_coco_json
from cvkit.evaluation.coco.load import load_ground_truth, load_results
from cvkit.evaluation.coco_map import evaluate_coco

DIVERGED = "a NaN or infinite output usually means the model diverged: check its training loss"
BOX = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400}
GT = {
    "images": [{"id": 1, "width": 100, "height": 80, "file_name": "a.jpg"}],
    "annotations": [{**BOX, "iscrowd": 0}],
    "categories": [{"id": 1, "name": "cat"}],
}


def result(**changes: Any) -> dict[str, Any]:
    """One detection of the ground truth's box, with ``changes``."""
    return {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9, **changes}


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """``tmp_path`` as the working folder, holding ``gt.json``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    return tmp_path


def write(name: str, content: Any) -> str:
    """``content`` (text as it is, anything else as JSON) into ``name``; returns ``name``."""
    Path(name).write_text(content if isinstance(content, str) else json.dumps(content))
    return name


def eval_error(results: Any, **kwargs: Any) -> str:
    """The message ``evaluate_coco('gt.json', results)`` fails with."""
    with pytest.raises(CocoFormatError) as err:
        evaluate_coco("gt.json", results, **kwargs)
    return str(err.value)


def cli_error(capsys, *argv: str) -> str:
    """``cvkit coco-eval ...`` in the process: checks exit code 1 and one clean line."""
    capsys.readouterr()
    assert main(["coco-eval", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("error: ")
    return err.removeprefix("error: ").rstrip("\n")


# -- an object where the list belongs -------------------------------------------------------


def test_a_ground_truth_given_as_results_says_so_and_the_order(folder, capsys):
    expected = (
        "COCO file 'gt.json' is a COCO ground-truth file (it has 'images', 'annotations', "
        "'categories') given where results are expected; a results file is a list of results "
        "(objects with 'image_id', 'category_id', 'bbox' or 'segmentation', and 'score'), the "
        "detections a model made (`cvkit eval` of a detector writes one: results.json); the "
        "ground truth comes first, then the results (cvkit coco-eval GT RESULTS)"
    )
    assert eval_error("gt.json") == expected
    assert cli_error(capsys, "gt.json", "gt.json") == expected


def test_results_swapped_with_the_ground_truth_are_named_as_results(folder):
    write("results.json", [result()])
    with pytest.raises(CocoFormatError) as err:
        evaluate_coco("results.json", "gt.json")
    assert str(err.value) == (
        "COCO file 'results.json' holds a JSON array, not an object with 'images', "
        "'annotations' and 'categories' lists; it looks like a results file (a list of "
        "detections), not ground truth (in cvkit coco-eval GT RESULTS, the ground truth comes "
        "first)"
    )


@pytest.mark.parametrize(
    "key, value",
    [("results", [result()]), ("results", []), ("model_output", [result(), result()])],
)
def test_results_wrapped_in_an_object_name_the_key_holding_them(folder, key, value):
    write("wrapped.json", {"info": {"model": "x"}, key: value})
    assert eval_error("wrapped.json") == (
        f"COCO file 'wrapped.json' holds a JSON object with the results in its '{key}' list; a "
        f"results file is that list itself, not an object around it: save the value of '{key}' "
        "on its own"
    )


def test_another_object_keeps_the_plain_message(folder):
    write("other.json", {"image_id": 1, "boxes": 3})
    assert eval_error("other.json") == (
        "COCO file 'other.json' holds a JSON object, not a list of results (objects with "
        "'image_id', 'category_id', 'bbox' or 'segmentation', and 'score')"
    )


# -- field types ----------------------------------------------------------------------------

IMAGE_RULE = "an 'image_id' is the integer id of an entry of 'images'"
CATEGORY_RULE = "a 'category_id' is the integer id of an entry of 'categories'"


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"score": "0.5"}, "has score '0.5'; a 'score' is a number"),
        ({"score": True}, "has score True; a 'score' is a number"),
        ({"score": None}, "has score None; a 'score' is a number"),  # NumPy reads None as NaN
        ({"image_id": "1"}, f"has image_id '1'; {IMAGE_RULE}"),
        ({"image_id": 1.5}, f"has image_id 1.5; {IMAGE_RULE}"),  # NumPy would cut it to 1
        ({"image_id": 1.0}, f"has image_id 1.0; {IMAGE_RULE}"),
        ({"category_id": True}, f"has category_id True; {CATEGORY_RULE}"),
    ],
)
def test_a_field_of_the_wrong_type_names_the_result_and_the_rule(folder, changes, problem):
    write("results.json", [result(), result(score=0.5), result(**changes)])
    assert eval_error("results.json") == f"COCO file 'results.json': results[2] {problem}"


def test_the_reference_backends_get_the_same_message(folder):
    """pycocotools itself fails on a string score with a TypeError (a traceback)."""
    write("results.json", [result(), result(score="0.5")])
    expected = "COCO file 'results.json': results[1] has score '0.5'; a 'score' is a number"
    assert eval_error("results.json", backend="pycocotools") == expected


def test_load_results_checks_a_list_in_memory(folder):
    gt = load_ground_truth("gt.json")
    with pytest.raises(CocoFormatError) as err:
        load_results([result(), result(category_id="1")], gt)
    assert str(err.value) == f"<results>: results[1] has category_id '1'; {CATEGORY_RULE}"


def test_numpy_numbers_built_in_memory_are_still_numbers(folder):
    plain = evaluate_coco("gt.json", [result(), result(bbox=[50, 40, 10, 10], score=0.4)])
    numpy = [
        result(image_id=np.int64(1), category_id=np.int32(1), score=np.float32(0.9)),
        result(bbox=[50, 40, 10, 10], score=np.float64(0.4)),
    ]
    assert evaluate_coco("gt.json", numpy).stats == plain.stats


# -- NaN and infinity -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "score, written",
    [(float("nan"), "a NaN score"), (float("-inf"), "an infinite score (-inf)")],
)
def test_a_score_that_is_not_finite_says_what_it_means(folder, score, written):
    write("results.json", [result(), result(score=score)])  # json writes NaN, -Infinity
    problem = f"results[1] has {written}; 'score' must be a finite number; {DIVERGED}"
    assert eval_error("results.json") == f"COCO file 'results.json': {problem}"
    with pytest.raises(CocoFormatError) as err:  # a list in memory, and load_results
        load_results([result(), result(score=score)], load_ground_truth("gt.json"))
    assert str(err.value) == f"<results>: {problem}"


def test_a_box_that_is_not_finite_is_refused(folder):
    write("results.json", [result(), result(bbox=[10, float("nan"), 20, 20])])
    assert eval_error("results.json") == (
        "COCO file 'results.json': results[1] has bbox [10, nan, 20, 20]; a 'bbox' is 4 finite "
        f"numbers [x, y, width, height] in pixels; {DIVERGED}"
    )


def bare_nan_file() -> tuple[str, int]:
    """Results whose second entry has a bare ``nan`` (as f-strings write it); its column."""
    second = ' {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": nan}]'
    write("results.json", "[" + json.dumps(result()) + ",\n" + second)
    return "results.json", second.index("nan") + 1


def test_a_bare_nan_is_named_rather_than_only_invalid_json(folder, capsys):
    name, column = bare_nan_file()
    expected = (
        f"COCO file 'results.json' is not valid JSON: results[1] has score nan (line 2, column "
        f"{column}), and JSON has no NaN or infinity; 'score' must be a finite number; {DIVERGED}"
    )
    assert eval_error(name) == expected
    assert cli_error(capsys, "gt.json", name) == expected


def test_a_bare_nan_in_a_ground_truth_box_gets_one_message_from_both_readers(folder):
    text = json.dumps(GT).replace("[10, 10, 20, 20]", "[10, 10, inf, 20]")
    write("gt_inf.json", text)
    expected = (
        f"COCO file 'gt_inf.json' is not valid JSON: line 1, column {text.index('inf') + 1} "
        "has inf in a bbox, and JSON has no NaN or infinity; a 'bbox' is 4 finite numbers "
        "[x, y, width, height] in pixels"
    )
    with pytest.raises(CocoFormatError) as training:
        load_coco_json("gt_inf.json")
    assert str(training.value) == expected
    with pytest.raises(CocoFormatError) as evaluation:
        evaluate_coco("gt_inf.json", [])
    assert str(evaluation.value) == expected


# -- empty ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, size", [("", "0 bytes"), (" \n\t\n", "only whitespace, 4 bytes")]
)
def test_an_empty_file_says_empty(folder, capsys, content, size):
    write("results.json", content)
    expected = (
        f"COCO file 'results.json' is empty ({size}); a COCO file is JSON text: check that "
        "whatever wrote it finished (or write it again)"
    )
    assert eval_error("results.json") == expected
    assert cli_error(capsys, "gt.json", "results.json") == expected


def test_an_empty_results_file_warns_and_scores_zero(folder):
    write("results.json", [])
    with pytest.warns(UserWarning) as record:
        stats = evaluate_coco("gt.json", "results.json").stats
    assert [str(w.message) for w in record] == [
        "COCO file 'results.json' holds no detections (an empty list), so every AP is 0; check "
        "that the model detected anything (is its score threshold too high?) and that this is "
        "the file its evaluation wrote"
    ]
    assert stats["AP"] == 0.0


def test_an_empty_list_in_memory_is_the_callers_own_and_not_warned_about(folder):
    """An untrained detector's validation may detect nothing: no warning every epoch."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate_coco("gt.json", []).stats["AP"] == 0.0
