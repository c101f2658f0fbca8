"""Builds the scanner's hot path in C; everything else about the package is in pyproject.toml.

``dlp_addon/detect/_numscan.c`` finds number tokens and their checked candidates, and tells
whether a text needs folding; ``dlp_addon/detect/numbers.py`` holds its pure-Python twin.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dlp_addon.detect._numscan",
            sources=["dlp_addon/detect/_numscan.c"],
            extra_compile_args=["-Wall", "-Wextra"],
        )
    ]
)
