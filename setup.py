"""The compiled part of cvkit; everything else is in pyproject.toml.

soft-NMS as one C loop (cvkit/ops/_soft_nms.c). The extension is optional: an install without a
C compiler still succeeds, and cvkit.ops.soft_nms then runs its NumPy loop. Without FMA
contraction, so that the kernel gives the same bits as the NumPy loop and torch.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cvkit.ops._soft_nms",
            sources=["cvkit/ops/_soft_nms.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
