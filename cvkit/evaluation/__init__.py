"""Evaluation tools: classification metrics and COCO mAP.

The built-in metrics register when ``cvkit.evaluation.classification`` is imported (by
``cvkit.load_builtins``); the COCO evaluator (``coco_map``, ``coco/``) needs no torch.
"""
