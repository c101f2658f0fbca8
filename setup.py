"""Builds the scanner's hot path in C; everything else about the package is in pyproject.toml.

``dlp_addon/detect/_numscan.c`` finds number tokens and letter-and-digit tokens, validates,
hashes (OpenSSL's SHA-256) and masks them, and tells whether a text needs folding;
``dlp_addon/detect/numbers.py`` and ``validators.py`` hold its pure-Python twin.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dlp_addon.detect._numscan",
            sources=["dlp_addon/detect/_numscan.c"],
            extra_compile_args=["-Wall", "-Wextra"],
            libraries=["crypto"],  # OpenSSL's SHA-256 for the keyed hashes
        )
    ]
)
