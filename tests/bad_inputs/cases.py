"""The bad-input corpus: what a user can get wrong, command by command, and what cvkit says.

Each case is a command line run in a folder that holds ``files/`` (broken configs, results
files and plugins, as a user would have them) and what ``tests/test_bad_inputs.py`` makes
there first (see ``world``): a trained tiny classifier run ``runs/cli`` with ``c.yaml``, its
exports ``m.onnx`` and ``w.pt``, a cut-short checkpoint, a tiny COCO detection set ``det/``
with ``det.yaml``, COCO files with one mistake each under ``coco/``, and broken images.

A case states the exit code (1: bad data or files, 2: a config or command-line mistake) and
words the message must contain; the test fails on any traceback. A new error path adds a case.
"""

from __future__ import annotations

from dataclasses import dataclass

CKPT = "runs/cli/last.pt"
GT = "det/gt.json"


@dataclass(frozen=True)
class Case:
    """``argv`` for ``cvkit``; the exit ``code``; ``words`` that must all be in the message."""

    name: str
    argv: tuple[str, ...]
    code: int
    words: tuple[str, ...]


def case(name: str, argv: str | list[str], code: int, *words: str) -> Case:
    return Case(name, tuple(argv.split() if isinstance(argv, str) else argv), code, words)


def _train_on(coco_file: str) -> list[str]:
    """``cvkit train det.yaml`` with both splits read from ``coco_file``."""
    return [
        "train",
        "det.yaml",
        f"data.train.ann_file={coco_file}",
        f"data.val.ann_file={coco_file}",
    ]


CONFIG_PRINT = [
    case("config print: no such file", "config print nope.yaml", 2, "'nope.yaml' does not exist"),
    case("config print: a folder", "config print files", 2, "is a folder", ".yaml"),
    case(
        "config print: broken YAML",
        "config print files/configs/broken.yaml",
        2,
        "broken.yaml, line 2",
        "not valid YAML",
    ),
    case(
        "config print: a YAML list",
        "config print files/configs/list.yaml",
        2,
        "list.yaml",
        "must be a YAML mapping",
    ),
    case(
        "config print: an empty file",
        "config print files/configs/empty.yaml",
        2,
        "missing 'model'",
        "empty.yaml",
    ),
    case(
        "config print: a PNG named .yaml",
        "config print det/img/1.png",
        2,
        "not UTF-8 text",
        "1.png",
    ),
    case(
        "config print: a Python tag",
        "config print files/configs/python_tag.yaml",
        2,
        "python_tag.yaml",
    ),
    case(
        "config print: missing _base_",
        "config print files/configs/base_missing.yaml",
        2,
        "_base_ file 'nothing_here.yaml' does not exist",
    ),
    case(
        "config print: _base_ cycle",
        "config print files/configs/cycle_a.yaml",
        2,
        "cycle",
        "cycle_a.yaml -> files/configs/cycle_b.yaml -> ",
    ),
    case(
        "config print: _base_ escaping to nothing",
        "config print files/configs/base_escapes.yaml",
        2,
        "_base_ file",
        "does not exist",
    ),
    case(
        "config print: unknown key",
        "config print c.yaml train.epochz=3",
        2,
        "'train.epochz' does not exist",
        "did you mean 'epochs'?",
    ),
    case(
        "config print: wrong type",
        "config print c.yaml train.epochs=abc",
        2,
        "train.epochs: expected int, got str 'abc'",
    ),
    case(
        "config print: infinite value",
        "config print c.yaml train.epochs=1e999",
        2,
        "train.epochs",
        "inf",
    ),
    case(
        "config print: batch size 0",
        "config print c.yaml data.batch_size=0",
        2,
        "data.batch_size: must be >= 1, got 0",
    ),
    case(
        "config print: EMA decay above 1",
        ["config", "print", "c.yaml", "train.ema={decay: 1.5}"],
        2,
        "train.ema.decay: must be < 1, got 1.5",
    ),
    case(
        "config print: negative workers",
        "config print c.yaml data.num_workers=-1",
        2,
        "data.num_workers: must be >= 0, got -1",
    ),
    case(
        "config print: not an override",
        "config print c.yaml train.epochs",
        2,
        "'train.epochs' is not an override",
        "path.to.key=value",
    ),
    case(
        "config print: unknown backbone",
        "config print c.yaml model.backbone.type=TinyNett",
        2,
        "'TinyNett' is not a registered backbone",
        "did you mean 'TinyNet'?",
    ),
    case(
        "config print: non-ASCII file name",
        "config print конфиг.yaml",
        2,
        "конфиг.yaml",
        "train.epochs: expected int, got str 'one'",
    ),
    case(
        "config print: run name escaping run_dir",
        "config print c.yaml name=../../elsewhere",
        2,
        "not a folder name inside run_dir",
    ),
]

OTHER_COMMANDS = [
    case(
        "analyze: cut-short checkpoint",
        "analyze c.yaml --checkpoint cut.pt",
        1,
        "'cut.pt' cannot be read",
    ),
    case(
        "embed: a detector's config",
        "embed det.yaml",
        2,
        "cvkit embed supports classifiers only",
        "RetinaNet is a 'detection' model",
    ),
    case("tune-loader: no such config", "tune-loader nope.yaml", 2, "'nope.yaml' does not exist"),
]

LIST = [
    case(
        "list: unknown registry",
        "list nosuchkind",
        2,
        "'nosuchkind' is not a registry",
        "registries: backbones",
    ),
]

PLUGINS = [
    case(
        "plugin: no such file",
        "--plugin nope_plugin.py list",
        2,
        "no such file",
        "nope_plugin.py",
        "check the module name",
    ),
    case(
        "plugin: no such module",
        "--plugin no_such_plugin_module list",
        2,
        "No module named 'no_such_plugin_module'",
    ),
    case(
        "plugin: raises on import",
        "--plugin files/plugins/bug_plugin.py list",
        2,
        "NameError (",
        "bug_plugin.py, line 2): name 'undefined_name' is not defined",
        "fix it at the line shown",
    ),
    case(
        "plugin: syntax error",
        "--plugin files/plugins/syntax_plugin.py list",
        2,
        "SyntaxError",
        "syntax_plugin.py, line 1",
    ),
    case(
        "plugin: a name cvkit has",
        "--plugin files/plugins/duplicate_name.py list",
        2,
        "TinyNet",
        "duplicate_name.py",
    ),
    case(
        "plugin: imports: names a missing module",
        "config print c.yaml imports=[no_such_module_xyz]",
        2,
        "config imports",
        "No module named 'no_such_module_xyz'",
    ),
    case(
        "plugin: feature_info disagrees with forward",
        [
            "--plugin",
            "files/plugins/lying_backbone.py",
            "train",
            "c.yaml",
            "model.backbone={type: LyingNet}",
            "name=lying",
        ],
        2,
        "LyingNet",
        "lying_backbone.py",
        "96",
        "72",
    ),
    case(
        "plugin: a hook's code fails mid-run",
        [
            "--plugin",
            "files/plugins/broken_hook.py",
            "train",
            "c.yaml",
            "train.hooks=[{type: BrokenHook}]",
            "name=hook",
        ],
        1,
        "a plugin failed",
        "broken_hook.py, line 11, in after_step",
        "KeyError",
        "start again: `cvkit --plugin files/plugins/broken_hook.py train runs/hook/config.yaml`",
    ),
]

TRAIN = [
    case("train: no config", "train", 2, "needs a config file"),
    case(
        "train: a broken image met mid-run by a loader worker",
        [
            "train",
            "det.yaml",
            "data.train.image_dir=det/img_broken",
            "data.check_images=false",
            "data.num_workers=1",
            "name=worker",
        ],
        1,
        "image file 'det/img_broken/2.png' could not be decoded",
        "(in DataLoader worker process 0)",
        "no checkpoint was written yet",
    ),
    case(
        "train: resume from nothing",
        "train --resume runs/cil",
        1,
        "cannot resume: 'runs/cil' does not exist",
        "did you mean 'cli'?",
        "pass a run folder that holds last.pt (--resume runs/NAME) or a checkpoint file",
    ),
    case(
        "train: resume a folder without last.pt",
        "train --resume empty_folder",
        1,
        "the folder 'empty_folder' holds no last.pt",
    ),
    case(
        "train: resume from a cut-short checkpoint",
        "train --resume cut.pt",
        1,
        "'cut.pt' cannot be read",
        "not a complete checkpoint",
        "cut short",
    ),
    case(
        "train: resume from a text file",
        "train --resume det/img/text.png",
        1,
        "'det/img/text.png' is not a checkpoint",
        "zip archive",
        "b'not '",
    ),
    case(
        "train: resume from an export",
        "train --resume w.pt",
        1,
        "cannot resume from 'w.pt': it is a weights-only file written by `cvkit export`",
        "--resume runs/NAME",
        "model.backbone.pretrained",
    ),
    case(
        "train: resume from ONNX",
        "train --resume m.onnx",
        1,
        "'m.onnx' is an ONNX model written by `cvkit export`, not a checkpoint",
    ),
    case(
        "train: resume with another model's config",
        f"train det.yaml --resume {CKPT}",
        2,
        "cannot resume",
        "other settings",
        "model.type: ImageClassifier -> RetinaNet",
    ),
    case(
        "train: resume a plugin's model without the plugin",
        "train --resume plugin_model.pt",
        2,
        "'KeypointNet' is not a registered model",
    ),
    case(
        "train: a model of a task nothing registered",
        [
            "--plugin",
            "files/plugins/keypoint_model.py",
            "train",
            "c.yaml",
            "model.type=KeypointNet",
        ],
        2,
        "KeypointNet is a 'keypoints' model",
        "no task of that name is registered",
    ),
    case(
        "train: a head of 10^11 classes",
        "train c.yaml model.head.num_classes=100000000000",
        1,
        "out of memory (can't allocate memory: you tried to allocate",
        "while building model.head (ClsHead)",
    ),
    case(
        "train: batch size 0",
        "train c.yaml data.batch_size=0",
        2,
        "data.batch_size: must be >= 1, got 0",
    ),
    case("train: epochs 0", "train c.yaml train.epochs=0", 2, "train.epochs: must be >= 1"),
    case(
        "train: negative learning rate",
        "train c.yaml train.optimizer.lr=-1",
        2,
        "train.optimizer",
        "Invalid learning rate: -1",
    ),
    case(
        "train: zero classes",
        "train c.yaml model.head.num_classes=0",
        2,
        "model.head",
        "num_classes must be at least 1",
    ),
    case(
        "train: NaN learning rate",
        "train c.yaml train.optimizer.lr=.nan name=nan",
        1,
        "loss is nan",
        "lower the learning rate",
    ),
    case("train: run_dir is a file", "train c.yaml run_dir=c.yaml", 1, "c.yaml", "Not a directory"),
    case(
        "train: missing COCO file",
        _train_on("coco/nope.json"),
        1,
        "data.train",
        "'coco/nope.json' (relative to",
        "does not exist",
    ),
    case(
        "train: broken COCO JSON",
        _train_on("coco/broken.json"),
        1,
        "broken.json",
        "not valid JSON",
        "line 1",
    ),
    case(
        "train: COCO file is a list",
        _train_on("coco/list.json"),
        1,
        "list.json",
        "JSON array",
        "'images', 'annotations' and 'categories'",
    ),
    case(
        "train: file_name escapes image_dir",
        _train_on("coco/escape.json"),
        1,
        "image id 1",
        "points outside image_dir",
    ),
    case(
        "train: image file missing",
        _train_on("coco/image_missing.json"),
        1,
        "image id 1",
        "missing.png",
    ),
    case(
        "train: non-ASCII image file missing",
        _train_on("coco/nonascii_missing.json"),
        1,
        "фото.png",
    ),
    case(
        "train: annotation of an unknown category",
        _train_on("coco/unknown_category.json"),
        1,
        "annotation id 1",
        "category_id 7",
    ),
    case(
        "train: a repeated image id",
        _train_on("coco/duplicate_id.json"),
        1,
        "repeats image id 1",
        "images[0] and images[1]",
    ),
    case(
        "train: a bbox of 3 numbers",
        _train_on("coco/short_bbox.json"),
        1,
        "annotation id 1",
        "4 finite numbers",
    ),
    case(
        "train: width given as a string",
        _train_on("coco/string_width.json"),
        1,
        "image id 1",
        "width",
    ),
    case(
        "train: no images at all",
        _train_on("coco/no_images.json"),
        1,
        "data.train",
        "holds no images",
    ),
    case(
        "train: image_dir missing",
        ["train", "det.yaml", "data.train.image_dir=det/nowhere"],
        1,
        "image_dir 'det/nowhere'",
        "does not exist",
    ),
    case(
        "train: an image that is not an image",
        ["train", "det.yaml", "data.train.image_dir=det/img_broken", "name=broken_img"],
        1,
        "'det/img_broken/2.png'",
        "not an image",
        "cvkit doctor",
    ),
]

EVAL = [
    case(
        "eval: no such checkpoint",
        "eval c.yaml --checkpoint nope.pt",
        1,
        "checkpoint 'nope.pt' does not exist",
    ),
    case(
        "eval: cut-short checkpoint",
        "eval c.yaml --checkpoint cut.pt",
        1,
        "not a complete checkpoint",
        "copy it again",
    ),
    case("eval: empty checkpoint", "eval c.yaml --checkpoint empty.pt", 1, "the file is empty"),
    case(
        "eval: checkpoint of another model",
        f"eval det.yaml --checkpoint {CKPT}",
        1,
        "does not fit this model",
    ),
    case(
        "eval: split the config lacks",
        f"eval c.yaml --checkpoint {CKPT} --split test",
        2,
        "no data.test",
    ),
]

PREDICT = [
    case(
        "predict: no such image",
        f"predict c.yaml nope.png --checkpoint {CKPT}",
        1,
        "image file 'nope.png' does not exist",
    ),
    case(
        "predict: a cut-short JPEG",
        f"predict c.yaml det/cut.jpg --checkpoint {CKPT}",
        1,
        "det/cut.jpg",
        "could not be decoded",
    ),
    case(
        "predict: text named .png",
        f"predict c.yaml det/img_broken/2.png --checkpoint {CKPT}",
        1,
        "2.png",
        "could not be decoded",
    ),
    case(
        "predict: non-ASCII broken image",
        f"predict c.yaml det/снимок.png --checkpoint {CKPT}",
        1,
        "снимок.png",
        "could not be decoded",
    ),
    case(
        "predict: empty folder",
        f"predict c.yaml empty_folder --checkpoint {CKPT}",
        1,
        "'empty_folder' holds no images",
    ),
    case(
        "predict: config without checkpoint",
        "predict c.yaml det/img/1.png",
        2,
        "needs --checkpoint",
    ),
    case(
        "predict: broken ONNX",
        "predict broken.onnx det/img/1.png",
        1,
        "'broken.onnx' is not a readable ONNX model",
    ),
    case(
        "predict: ONNX model, broken image", "predict m.onnx det/cut.jpg", 1, "could not be decoded"
    ),
]

EXPORT = [
    case("export: no such checkpoint", "export nope.pt", 1, "'nope.pt' does not exist"),
    case(
        "export: cut-short checkpoint", "export cut.pt --out x.onnx", 1, "not a complete checkpoint"
    ),
    case(
        "export: an ONNX file as input",
        "export m.onnx --out y.onnx",
        1,
        "'m.onnx' is an ONNX model",
        "cvkit predict m.onnx IMAGES",
    ),
    case("export: input size 0", f"export {CKPT} --input-size 0 0", 2, "must be at least 1"),
    case(
        "export: out under a file",
        f"export {CKPT} --out c.yaml/x.onnx",
        1,
        "c.yaml",
        "choose another path",
    ),
    case(
        "export: unknown override",
        f"export {CKPT} model.nosuch=1 --out q.onnx",
        2,
        "'model.nosuch' does not exist",
    ),
]

COCO_EVAL = [
    case(
        "coco-eval: ground truth as results", f"coco-eval {GT} {GT}", 1, "ground-truth", "gt.json"
    ),
    case(
        "coco-eval: results wrapped in an object",
        f"coco-eval {GT} files/results/wrapped.json",
        1,
        "wrapped.json",
        "'results'",
    ),
    case(
        "coco-eval: a score as a string",
        f"coco-eval {GT} files/results/string_score.json",
        1,
        "results[0]",
        "score",
        "'0.9'",
    ),
    case(
        "coco-eval: a NaN score",
        f"coco-eval {GT} files/results/nan_score.json",
        1,
        "results[0]",
        "NaN",
    ),
    case(
        "coco-eval: an empty file",
        f"coco-eval {GT} files/results/empty.json",
        1,
        "empty.json",
        "empty",
    ),
    case(
        "coco-eval: cut short",
        f"coco-eval {GT} files/results/cut_short.json",
        1,
        "cut_short.json",
        "not valid JSON",
        "line 2",
    ),
    case(
        "coco-eval: a list of numbers",
        f"coco-eval {GT} files/results/numbers.json",
        1,
        "results[0]",
        "not an object",
    ),
    case(
        "coco-eval: a box of 3 numbers",
        f"coco-eval {GT} files/results/short_box.json",
        1,
        "results[0]",
        "bbox",
        "4 finite numbers",
    ),
    case(
        "coco-eval: results of other images",
        f"coco-eval {GT} files/results/other_image.json",
        1,
        "results[0] names image_id 99",
        "evaluate against the ground truth",
    ),
    case("coco-eval: not UTF-8", f"coco-eval {GT} files/results/latin1.json", 1, "not UTF-8 text"),
    case(
        "coco-eval: non-ASCII results name",
        f"coco-eval {GT} files/results/résultats.json",
        1,
        "résultats.json",
        "image_id 99",
    ),
    case(
        "coco-eval: files swapped",
        f"coco-eval files/results/ok.json {GT}",
        1,
        "ok.json",
        "JSON array",
    ),
    case(
        "coco-eval: no such ground truth",
        "coco-eval nope.json files/results/ok.json",
        1,
        "'nope.json'",
        "does not exist",
    ),
    case(
        "coco-eval: segm without masks",
        f"coco-eval {GT} files/results/ok.json --iou-type segm",
        1,
        "results[0] has no 'segmentation'",
    ),
    case(
        "coco-eval: plots without --out",
        f"coco-eval {GT} files/results/ok.json --per-class-plots",
        1,
        "--per-class-plots",
        "give --out DIR",
    ),
]

CASES = CONFIG_PRINT + LIST + PLUGINS + TRAIN + EVAL + PREDICT + EXPORT + COCO_EVAL + OTHER_COMMANDS
