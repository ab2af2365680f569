"""cvkit's COCO evaluator: pycocotools' COCOeval semantics, vectorised with NumPy.

``load`` reads ground truth and results into flat arrays, ``match`` does the greedy
IoU matching for every image, category, area range and IoU threshold at once,
``accumulate`` builds precision / recall arrays and ``summary`` the 12 stats.
"""
