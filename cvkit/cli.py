"""The ``cvkit`` command line: thin wrappers around the library."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from cvkit import failures
from cvkit.config.resume_keys import CHANGEABLE_ON_RESUME

# what `cvkit demo` trains; its runs go to <run_dir>/demo_shapes unless name= is given
DEMO_CONFIG = "cvkit://detection/retinanet_effl0_fpn_8e_shapes.yaml"
DEMO_NAME = "demo_shapes"


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (see ``cvkit.failures`` and the README's "When
    something goes wrong"): a user's mistake ends in one message, never a traceback."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from cvkit import plugins

    rank = _rank_label()
    try:
        with failures.plain_warnings():
            if args.plugin:
                plugins.import_plugins(args.plugin, "--plugin")
            return args.func(args) or 0
    except BaseException as exc:
        if isinstance(exc, SystemExit) or failures.debug_requested():
            raise
        return _report_failure(exc, rank, plugins.plugin_paths())
    finally:
        if rank:
            from cvkit.engine.distributed import teardown

            teardown()


def _report_failure(exc: BaseException, rank: str, plugin_files: list[Path]) -> int:
    """Print what went wrong and return the exit code; a traceback only for a bug in cvkit."""
    from cvkit import __version__

    code = failures.exit_code(exc, plugin_files)
    if rank and code == failures.EXIT_BUG and _lost_a_peer(exc):
        # another process failed first (its message is above) or was stopped; torchrun
        # then ends this one: one line, not a traceback of where it was waiting
        print(
            f"error ({rank}): stopped because another process of the run stopped "
            "(its error is above)",
            file=sys.stderr,
        )
        return failures.EXIT_BAD_INPUT
    if code == failures.EXIT_BUG:
        if rank:  # torchrun ends every process when one fails; say which failed first
            print(f"error ({rank}): cvkit failed; traceback below", file=sys.stderr)
        failures.print_bug(exc, __version__, sys.stderr)
        return code
    message = failures.describe(exc, plugin_files)
    if code == failures.EXIT_INTERRUPTED:
        print("\n".join(["interrupted", *message.splitlines()[1:]]), file=sys.stderr)
    elif code == failures.EXIT_CONFIG:
        # every process of a distributed run reads the same config and files: rank 0 says it
        if not rank or rank.startswith("rank 0 "):
            print(f"error: {message}", file=sys.stderr)
    else:
        # bad input: the message names the file, key or step. Under torchrun it may be one
        # process's data alone: the message names the process.
        print(f"error{f' ({rank})' if rank else ''}: {message}", file=sys.stderr)
    return code


def _rank_label() -> str:
    """``rank 1 of 2`` in a process torchrun started, else ``""``."""
    if "WORLD_SIZE" not in os.environ:
        # not under torchrun (which always sets it): cvkit.engine imports torch, seconds that
        # a command without it (coco-eval, config print, list) would pay for nothing
        return ""
    from cvkit.engine.distributed import from_environment

    processes = from_environment()
    return processes.describe() if processes.distributed else ""


def _lost_a_peer(exc: BaseException) -> bool:
    from cvkit.engine.distributed import lost_a_peer

    return lost_a_peer(exc)


def is_main_process() -> bool:
    """False in the processes torchrun started other than rank 0: they print nothing."""
    from cvkit.engine.distributed import from_environment

    return from_environment().is_main


def _parser() -> argparse.ArgumentParser:
    from cvkit import __version__

    p = argparse.ArgumentParser(
        prog="cvkit",
        description="Composable computer vision on PyTorch: train, evaluate and inspect models "
        "built from registry parts and YAML configs.",
        epilog="`cvkit COMMAND --help` describes each command.",
    )
    p.add_argument("--version", action="version", version=f"cvkit {__version__}")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module or .py file that registers components (repeatable)",
    )
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    for add in (
        _add_list,
        _add_config,
        _add_train,
        _add_eval,
        _add_coco_eval,
        _add_predict,
        _add_export,
        _add_analyze,
        _add_doctor,
        _add_tune_loader,
        _add_embed,
        _add_demo,
    ):
        add(sub)
    return p


def _add_list(sub: Any) -> None:
    """`cvkit list`."""
    s = sub.add_parser(
        "list",
        help="list registered components, or the configs that ship with cvkit",
        description="List registered components with their source and "
        "parameters. KIND is a registry (backbones, necks, heads, models, ...); "
        "without it, every registry is summarised. `cvkit list configs` lists the configs "
        "that ship with cvkit by their cvkit://<path> names, which `_base_:` and every "
        "command taking a config accept.",
    )
    s.add_argument("kind", nargs="?", help="a registry name, e.g. backbones; or configs")
    s.add_argument(
        "pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'Res*' or 'detection/*'"
    )
    s.add_argument("--plugins", action="store_true", help="show each plugin, ok or its error")
    s.add_argument("--full", action="store_true", help="do not shorten long parameter lists")
    s.set_defaults(func=_cmd_list)


def _add_config(sub: Any) -> None:
    """`cvkit config`."""
    s = sub.add_parser(
        "config",
        help="inspect configs",
        description="Work with configs. `cvkit config print CFG [key=value ...]` "
        "prints the config resolved: _base_ files merged, overrides applied.",
    )
    csub = s.add_subparsers(title="actions", metavar="ACTION")
    cp = csub.add_parser(
        "print",
        help="print a config resolved",
        description="Print CFG with its _base_ files merged and the overrides "
        "applied, after checking it against the schema.",
    )
    cp.add_argument("config", help="path to a YAML config")
    cp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3")
    cp.add_argument("--origins", action="store_true", help="show which file set each key")
    cp.set_defaults(func=_cmd_config_print)


def _add_train(sub: Any) -> None:
    """`cvkit train`."""
    s = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train the model CFG describes. The run folder "
        "(<run_dir>/<name>) gets the resolved config, metrics.jsonl and last.pt. "
        "With --resume RUN the run continues from its last.pt with its own config.yaml "
        "(no CFG needed); overrides may then change only the run's length and "
        "cadence: " + ", ".join(CHANGEABLE_ON_RESUME) + ". They are printed and recorded "
        "in the run's resumes.jsonl; config.yaml is never rewritten.",
    )
    s.add_argument("config", nargs="?", help="path to a YAML config (optional with --resume)")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3")
    s.add_argument(
        "--resume",
        metavar="RUN_DIR|CKPT",
        help="continue a run from its folder (last.pt) or a checkpoint, at the "
        "same step and data position; e.g. --resume runs/NAME train.epochs=24 extends it",
    )
    s.set_defaults(func=_cmd_train)


def _add_eval(sub: Any) -> None:
    """`cvkit eval`."""
    s = sub.add_parser(
        "eval",
        help="evaluate a checkpoint",
        description="Evaluate CHECKPOINT on the config's data.val (or --split): "
        "prints the metrics and a per-class table, and writes, by task: "
        "classification: eval.json, confusion_matrix.png; "
        "detection: eval.json, results.json, pr_curve.png, predictions.png; "
        "segmentation: eval.json, predictions.png.",
    )
    s.add_argument("config", help="the config the checkpoint was trained with")
    s.add_argument("overrides", nargs="*", help="dotted overrides")
    s.add_argument(
        "--checkpoint",
        required=True,
        help="a .pt file from a run, or a model from `cvkit export` (.onnx, .pt2)",
    )
    s.add_argument("--split", default="val", choices=["val", "test", "train"])
    s.add_argument("--out", help="folder for the report (default: beside the checkpoint)")
    s.set_defaults(func=_cmd_eval)


def _add_coco_eval(sub: Any) -> None:
    """`cvkit coco-eval`."""
    # cvkit.evaluation.coco_map.BACKENDS, spelt out: importing it would load NumPy for every
    # command, a tenth of a second before `cvkit --help` prints (a test keeps the two equal)
    backends = ("cvkit", "pycocotools", "faster-coco-eval")
    s = sub.add_parser(
        "coco-eval",
        help="score a COCO results file against its ground truth",
        description="COCO mAP of RESULTS (a COCO results file from any tool) against GT (a "
        "COCO instances file): prints pycocotools' 12-line summary, a per-class table and "
        "the time taken, and writes nothing. With --out DIR it also writes coco_eval.json "
        "(every number: the precision and recall arrays, each class's precision-recall "
        "curves, the detection confusion matrix), pr_curve.png (mean over classes), "
        "pr_curves_grid.png (a panel per class, the first 100) and confusion_matrix.png; "
        "with --per-class-plots also pr_curves/<id>_<name>.png (one per class).",
    )
    s.add_argument("ground_truth", metavar="GT", help="a COCO instances JSON file")
    s.add_argument(
        "results",
        metavar="RESULTS",
        help="a COCO results JSON file: a list of detections (image_id, category_id, bbox or "
        "segmentation, score), e.g. the results.json `cvkit eval` writes; GT comes first",
    )
    s.add_argument("--iou-type", default="bbox", choices=["bbox", "segm"])
    s.add_argument("--backend", default="cvkit", choices=backends, help="default: cvkit")
    s.add_argument("--out", metavar="DIR", help="folder for the JSON and the plots")
    s.add_argument(
        "--score-threshold",
        type=float,
        default=0.3,
        help="with --out: the confusion matrix leaves out detections scoring below it "
        "(default 0.3)",
    )
    s.add_argument(
        "--per-class-plots",
        action="store_true",
        help="with --out: also one precision-recall PNG per class, in DIR/pr_curves/",
    )
    s.set_defaults(func=_cmd_coco_eval)


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_predict(sub: Any) -> None:
    """`cvkit predict`."""
    s = sub.add_parser(
        "predict",
        help="classify, detect or segment images with a checkpoint",
        description="Print the top-k classes with probabilities for each image (a "
        "classifier), its detections (a detector) or each class's share of its pixels (a "
        "segmenter).",
    )
    s.add_argument(
        "config",
        metavar="CONFIG|MODEL",
        help="the config the checkpoint was trained with, or a model from `cvkit export` "
        "(.onnx, .pt2), which needs no config and no --checkpoint",
    )
    s.add_argument("images", nargs="+", help="image files, or folders of images")
    s.add_argument(
        "--checkpoint",
        help="a .pt file from a run (required with a config), or an exported .onnx / .pt2",
    )
    s.add_argument(
        "--topk",
        type=_positive_int,
        metavar="K",
        help="classifiers: list the K most probable classes (default 5); detectors: keep only "
        "the K highest-scoring detections of each image, in the table, the JSON, results.json "
        "and the drawn images (default: all); segmenters: not used",
    )
    s.add_argument(
        "--score-threshold",
        type=float,
        metavar="S",
        help="detectors: keep only detections scoring at least S, in the table, the JSON, "
        "results.json and the drawn images (default: all the model gives, above its "
        "model.score_threshold; the drawn images show those scoring at least 0.3)",
    )
    s.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1,
        metavar="N",
        help="images per forward pass at most (default 1: on 2 CPU cores one image a pass "
        "was the fastest, bench/predict_speed.py); a worker decodes the files beside the "
        "model, and only images the network sees at one padded size share a batch, so the "
        "predictions are those of one image at a time (an exported graph without "
        "--dynamic-batch takes them one by one)",
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument(
        "--out",
        help="detectors: a folder for results.json and the drawn images; segmenters: for "
        "an index-mask PNG and a colour overlay per image",
    )
    s.set_defaults(func=_cmd_predict)


def _add_export(sub: Any) -> None:
    """`cvkit export`."""
    s = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, an ExportedProgram or slim weights",
        description="Write CHECKPOINT as an ONNX file (run by onnxruntime, or any ONNX "
        "runtime), a torch.export ExportedProgram (.pt2), or a slim weights file (.pt: the "
        "weights, the EMA average if the run kept one, class names and config). The graphs "
        "take uint8 RGB images of any size in their range, normalise and pad them inside, and "
        "give the final predictions (a detector's boxes in the image file's pixels, after "
        "NMS); class names, category ids and the input range travel in the file. Every graph "
        "is checked against the eager model at three input sizes other than the traced one "
        "before it is written.",
    )
    s.add_argument(
        "checkpoint", help="a .pt file from a run (best.pt, last.pt) or a weights export"
    )
    s.add_argument(
        "overrides",
        nargs="*",
        help="dotted overrides of the config the checkpoint was trained with, for what may "
        "change after training, e.g. model.score_threshold=0.3 model.max_detections=50",
    )
    s.add_argument(
        "--format",
        choices=["onnx", "exported-program", "weights"],
        help="default: from --out's suffix (.onnx, .pt2, .pt), else onnx",
    )
    s.add_argument("--out", help="the file to write (default: CHECKPOINT with the format's suffix)")
    s.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="the graph takes batches of any size (default: one image a run)",
    )
    s.add_argument(
        "--input-size",
        nargs=2,
        type=_positive_int,
        metavar=("H", "W"),
        help="the size to trace at (default: the model's pad_to, else the first validation "
        "image's); the graph takes other sizes too",
    )
    s.add_argument(
        "--check",
        action="store_true",
        help="also evaluate the export and the checkpoint on the config's validation data: "
        "the metric must agree (AP and mIoU within 0.001)",
    )
    s.set_defaults(func=_cmd_export)


def _add_embed(sub: Any) -> None:
    """`cvkit embed`."""
    s = sub.add_parser(
        "embed",
        help="a classifier's pooled features of its data, a t-SNE map and a separation score",
        description="Run the images of the config's data.val (or --split) through the "
        "classifier in eval mode (data.train with data.val's transforms, not its "
        "augmentations) and keep what its neck gives the head. Writes embeddings.npy "
        "(float32 [N, D]), labels.npy, indices.npy (each image's index in the split), "
        "embed.json (split, checkpoint, class names, scores) "
        "and tsne.png (scikit-learn's t-SNE, coloured by class); prints the cosine "
        "silhouette of the features by class and their 5-NN leave-one-out accuracy. "
        "Without --checkpoint the model is the config's as built, with its pretrained "
        "weights if it names any: the picture before training. Classifiers only.",
    )
    s.add_argument("config", help="a classifier's config (the one the checkpoint was trained with)")
    s.add_argument("overrides", nargs="*", help="dotted overrides")
    s.add_argument("--checkpoint", help="a .pt file from a run (default: the model as built)")
    s.add_argument("--split", default="val", choices=["val", "test", "train"])
    s.add_argument(
        "--out",
        help="folder for the files (default: <checkpoint folder>/embed_<split>, or without "
        "--checkpoint <run_dir>/embed_<name>_<split>)",
    )
    s.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="embed at most N images, a seeded uniform sample (train.seed) in the split's "
        "order (default 2000: t-SNE's cost grows as N^2)",
    )
    s.set_defaults(func=_cmd_embed)


def _add_analyze(sub: Any) -> None:
    """`cvkit analyze`."""
    s = sub.add_parser(
        "analyze",
        help="a model's per-layer output shapes, parameters and FLOPs",
        description="Print a table of the model's modules (path, type, output shape, "
        "parameters, GFLOPs) and the totals, for one forward pass of the model as it is "
        "deployed: uint8 images in, final predictions out. FLOPs are counted by PyTorch's "
        "FlopCounterMode (2 per multiply-add; GMACs, the unit of torchvision's and fvcore's "
        "figures, are half); operators it cannot count (NMS, RoIAlign) are listed. Without "
        "--input-size the inputs are images of data.val after its transforms, and the mean "
        "and spread over them are printed; with it no data is read.",
    )
    s.add_argument(
        "config", help="a YAML config (only its model section is needed with --input-size)"
    )
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.head.num_classes=80")
    s.add_argument("--checkpoint", help="a .pt file from a run: its weights and class count")
    s.add_argument(
        "--input-size",
        nargs=2,
        type=_positive_int,
        metavar=("H", "W"),
        help="measure one input of this size; no data is read",
    )
    s.add_argument(
        "--images",
        type=_positive_int,
        default=8,
        metavar="N",
        help="without --input-size: how many images of data.val, spread over it (default 8)",
    )
    s.add_argument(
        "--depth",
        type=_positive_int,
        default=3,
        metavar="N",
        help="table rows down to N levels below the model (default 3: backbone.model.layer1)",
    )
    s.add_argument("--json", action="store_true", help="print JSON (every module) instead")
    s.set_defaults(func=_cmd_analyze)


def _add_doctor(sub: Any) -> None:
    """`cvkit doctor`."""
    s = sub.add_parser(
        "doctor",
        help="check a dataset whole: every problem at once, and its statistics",
        description="Read every split of CONFIG's data (or one COCO file ANN_FILE with its "
        "IMAGE_DIR) whole and report every problem at once, each kind with its severity, "
        "count and first examples: the COCO file's structure and ids, every image decoded and "
        "its size (EXIF orientation applied) against the file's, boxes that are NaN, empty or "
        "outside their image, duplicate ids, files and boxes, the same image in two splits, "
        "unused categories, mask values that are no class. Writes report.json and dataset.png "
        "(instances per class, COCO small/medium/large, box sizes and aspect ratios). Exit "
        "code: 0 no errors, 1 errors (or warnings, with --strict), 2 a config or usage mistake.",
    )
    s.add_argument("target", metavar="CONFIG|ANN_FILE", help="a config, or a COCO .json file")
    s.add_argument(
        "rest",
        nargs="*",
        metavar="IMAGE_DIR|key=value",
        help="with ANN_FILE: its image folder; with CONFIG: dotted overrides",
    )
    s.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    s.add_argument(
        "--out",
        help="folder for report.json and dataset.png (default: <run_dir>/doctor_<name>, "
        "or doctor_<ANN_FILE stem>)",
    )
    s.add_argument(
        "--examples", type=_positive_int, default=5, metavar="N", help="examples per kind (5)"
    )
    s.add_argument(
        "--no-images", action="store_true", help="check the annotations only, decode no image"
    )
    s.set_defaults(func=_cmd_doctor)


def _add_tune_loader(sub: Any) -> None:
    """`cvkit tune-loader`."""
    s = sub.add_parser(
        "tune-loader",
        help="measure the data loader's images/s at each worker count",
        description="Load batches of the config's data.train (or --split) with 0, 1, 2, ... "
        "loader workers, a couple of seconds each, and print images/s for each count and "
        "the smallest count within 5%% of the best: what data.num_workers: auto then uses "
        "(cached per data spec, batch size and machine; a run with auto measures this itself "
        "the first time).",
    )
    s.add_argument("config", help="a YAML config")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.batch_size=8")
    s.add_argument("--split", default="train", choices=["train", "val", "test"])
    s.add_argument(
        "--max-workers", type=_positive_int, metavar="N", help="default: this machine's cores"
    )
    s.set_defaults(func=_cmd_tune_loader)


def _add_demo(sub: Any) -> None:
    """`cvkit demo`."""
    s = sub.add_parser(
        "demo",
        help="train the embedded detection demo (no download)",
        description="Train a small RetinaNet (ImageNet-pretrained EfficientNet-Lite0 + FPN) on "
        "shapes drawn on scikit-image's photos, generated once into ~/.cache/cvkit; print the "
        "COCO mAP table and save a picture of predictions. A few minutes on 2 CPU cores.",
    )
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=1")
    s.set_defaults(func=_cmd_demo)


def _cmd_list(args: argparse.Namespace) -> int:
    from cvkit import plugins
    from cvkit.errors import ConfigError, did_you_mean
    from cvkit.registry import REGISTRIES

    if args.plugins:
        records = plugins.report()
        if not records:
            print("no plugins found (entry-point group 'cvkit.plugins')")
        for r in records:
            status = "ok" if r.ok else f"FAILED: {r.error}"
            print(f"{r.name:<20} {r.origin:<32} {r.target:<30} {status}")
        return 0
    if args.kind is None:
        for name, registry in REGISTRIES.items():
            names = registry.names()
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            print(f"{name:<18} {len(names):>4}  {shown}")
        print("\n`cvkit list KIND` shows one registry with sources and parameters.")
        print("`cvkit list configs` lists the configs that ship with cvkit (cvkit://...).")
        return 0
    reg = REGISTRIES.get(args.kind)
    if reg is None:
        reg = REGISTRIES.get(args.kind + "s")
    if reg is None and args.kind in ("config", "configs"):
        return _list_configs(args.pattern)
    if reg is None:
        raise ConfigError(
            f"{args.kind!r} is not a registry",
            hints=[
                did_you_mean(args.kind, [*REGISTRIES, "configs"]),
                f"registries: {', '.join(REGISTRIES)}; or `cvkit list configs`",
            ],
        )
    entries = [reg.entry(n) for n in reg.names(args.pattern)]
    width = max([len(e.name) for e in entries] + [4])
    swidth = max([len(e.source) for e in entries] + [6])
    print(f"{'NAME':<{width}}  {'SOURCE':<{swidth}}  PARAMETERS")
    for e in entries:
        params = _describe_params(e.obj)
        if not args.full and len(params) > 110:
            params = params[:107] + "..."
        print(f"{e.name:<{width}}  {e.source:<{swidth}}  {params}")
    print(
        f"\n{len(entries)} {reg.plural}"
        + (
            " (plugins that failed to import: `cvkit list --plugins`)"
            if plugins.failure_hints()
            else ""
        )
    )
    return 0


def _list_configs(pattern: str) -> int:
    """`cvkit list configs [PATTERN]`: each packaged config's name and first sentence."""
    from fnmatch import fnmatch

    from cvkit.config.load import PACKAGED, packaged_configs

    configs = {
        name: path
        for name, path in packaged_configs().items()
        if fnmatch(name, pattern) or fnmatch(name.removeprefix(PACKAGED), pattern)
    }
    if not configs:
        print(f"no packaged config matches {pattern!r} (`cvkit list configs` lists them all)")
        return 0
    width = max(len(n) for n in configs)
    for name, path in configs.items():
        print(f"{name:<{width}}  {_first_sentence(path, 80)}".rstrip())
    print(
        f"\n{len(configs)} packaged configs. Train one with `cvkit train cvkit://<path>`, or "
        "build on it from anywhere with `_base_: cvkit://<path>` in your own config."
    )
    return 0


def _first_sentence(path: Path, limit: int) -> str:
    """The first sentence of a config's leading comment, shortened to ``limit``."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text.startswith("#") or not text.lstrip("#").strip():
            break
        lines.append(text.lstrip("#").strip())
    sentence = " ".join(lines).split(". ")[0].rstrip(".:")
    return sentence if len(sentence) <= limit else sentence[: limit - 3].rstrip() + "..."


def _describe_params(obj: object) -> str:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "?"
    parts = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts)


def _cmd_config_print(args: argparse.Namespace) -> int:
    from cvkit.config import load_config
    from cvkit.engine.run import validate

    cfg = load_config(args.config, args.overrides)
    validate(cfg)
    print(cfg.to_yaml(), end="")
    if args.origins:
        print("\n# where each key was set:")
        for path, origin in sorted(cfg.origins.items()):
            print(f"#   {path}: {origin}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from cvkit import errors as cvkit_errors
    from cvkit.config import load_config
    from cvkit.engine.resume import plan_resume
    from cvkit.engine.run import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        # `cvkit train --resume RUN key=value`: argparse fills the optional CFG first
        config, overrides = None, [config, *overrides]
    if args.resume is not None:
        result = train(None, resume=plan_resume(args.resume, config, overrides))
    elif config is None:
        raise cvkit_errors.ConfigError(
            "cvkit train needs a config file (or --resume RUN to continue a run)",
            hints=["cvkit train configs/detection/retinanet_effl0_fpn_8e_shapes.yaml"],
        )
    else:
        result = train(load_config(config, overrides))
    _print_result(result)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from cvkit.config import load_config
    from cvkit.engine.evaluate_checkpoint import evaluate

    report = evaluate(
        load_config(args.config, args.overrides), args.checkpoint, args.split, args.out
    )
    if not is_main_process():
        return 0
    for key, value in report["metrics"].items():
        print(f"{key:>16}: {value:.4f}")
    return 0


def _cmd_coco_eval(args: argparse.Namespace) -> int:
    from cvkit.evaluation.coco_map import evaluate_coco

    if args.per_class_plots and not args.out:
        raise ValueError("--per-class-plots writes into the --out folder: give --out DIR")
    # with --out, the report's confusion matrix reads the arrays the evaluation made
    result = evaluate_coco(
        args.ground_truth, args.results, args.iou_type, args.backend, keep_inputs=bool(args.out)
    )
    print("\n".join(result.summary.splitlines()[:12]))
    print()
    print(result.table())
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items() if k != "total")
    print(f"\nevaluated with {result.backend} in {result.timings['total']:.2f} s ({phases})")
    if args.out:
        from cvkit.evaluation.coco_report import coco_eval_report

        print(
            coco_eval_report(
                result, args.ground_truth, args.results, args.iou_type, args.out,
                args.score_threshold, args.per_class_plots,
            )
        )  # fmt: skip
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from cvkit.config import load_config
    from cvkit.engine.deployed import is_deployed
    from cvkit.engine.predict import predict, predict_deployed

    exported = args.config if is_deployed(args.config) else args.checkpoint
    if is_deployed(exported):
        results = predict_deployed(
            exported, args.images, args.topk, args.out, args.score_threshold, args.batch_size
        )
    elif args.checkpoint is None:
        from cvkit import ConfigError

        raise ConfigError(
            "cvkit predict needs --checkpoint with a config",
            hints=["or give a model from `cvkit export` (.onnx, .pt2) in place of the config"],
        )
    else:
        results = predict(
            load_config(args.config),
            args.checkpoint,
            args.images,
            args.topk,
            args.out,
            args.score_threshold,
            args.batch_size,
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        if "detections" in r:
            print(f"{r['image']}: {len(r['detections'])} detections")
            for d in r["detections"]:  # already limited by --topk and --score-threshold
                print(f"  {d['score']:.2f}  {d['class']:<16} {d['bbox_xyxy']}")
            continue
        if "class_shares" in r:
            print(r["image"] + (f" -> {r['mask']}, {r['overlay']}" if "mask" in r else ""))
            for name, share in sorted(r["class_shares"].items(), key=lambda kv: -kv[1]):
                print(f"  {share:7.2%}  {name}")
            continue
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['prob']:7.2%}  {t['class']}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from cvkit.engine.export import export

    result = export(
        args.checkpoint,
        args.format,
        args.out,
        overrides=args.overrides,
        dynamic_batch=args.dynamic_batch,
        input_size=tuple(args.input_size) if args.input_size else None,
        check_metric=args.check,
    )
    for line in result.checks:
        print(f"  checked {line}")
    print(f"wrote {result.path}")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from cvkit.config import load_config
    from cvkit.engine.embed import embed

    result = embed(
        load_config(args.config, args.overrides),
        args.checkpoint,
        args.split,
        args.out,
        **({"limit": args.limit} if args.limit else {}),
    )
    print("\n".join(result.lines()))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    import json

    from cvkit.config import load_config
    from cvkit.engine.analyze import analyze, render, to_json

    analysis = analyze(
        load_config(args.config, args.overrides),
        args.checkpoint,
        tuple(args.input_size) if args.input_size else None,
        args.images,
    )
    print(json.dumps(to_json(analysis), indent=2) if args.json else render(analysis, args.depth))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from cvkit import ConfigError
    from cvkit.engine.doctor import doctor_config, doctor_files, render, write_report

    images = not args.no_images
    if args.target.lower().endswith(".json"):
        if len(args.rest) != 1:
            raise ConfigError(
                "cvkit doctor ANN_FILE needs the image folder after it",
                hints=["cvkit doctor annotations.json images/"],
            )
        report = doctor_files(args.target, args.rest[0], args.examples, images)
        out = args.out or f"doctor_{Path(args.target).stem}"
    else:
        from cvkit.config import load_config

        cfg = load_config(args.target, args.rest)
        report = doctor_config(cfg, args.examples, images)
        name = cfg.get("name") or Path(args.target).stem
        out = args.out or str(Path(cfg.get("run_dir") or "runs") / f"doctor_{name}")
    print(render(report))
    for path in write_report(report, out):
        print(f"wrote {path}")
    return report.exit_code(args.strict)


def _cmd_tune_loader(args: argparse.Namespace) -> int:
    from cvkit.config import load_config
    from cvkit.engine.tune_loader import tune_loader

    probe = tune_loader(load_config(args.config, args.overrides), args.split, args.max_workers)
    best = max(probe.rates)
    print(f"{'workers':>7}  {'images/s':>9}  of best")
    for count, rate in zip(probe.counts, probe.rates):
        mark = "  <- chosen" if count == probe.chosen else ""
        print(f"{count:>7}  {rate:>9.1f}  {rate / best:>6.0%}{mark}")
    where = " (cached: data.num_workers: auto uses it)" if args.split == "train" else ""
    print(f"smallest count within 5% of the best: {probe.chosen}{where}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cvkit.config import load_config
    from cvkit.engine.run import train

    cfg = load_config(DEMO_CONFIG, args.overrides)
    if not cfg.get("name"):  # the run folder keeps the demo's name, not the config's stem
        cfg.data["name"] = DEMO_NAME
    if is_main_process():
        print(f"cvkit demo: training {cfg.get('model.type')} on shapes drawn on real photos")
    _print_result(train(cfg))
    return 0


def _print_result(result) -> None:
    if not is_main_process():
        return
    for key, value in result.metrics.items():
        print(f"{key:>10}: {value:.4f}")
    print(f"run folder: {result.run_dir}")


if __name__ == "__main__":
    sys.exit(main())
