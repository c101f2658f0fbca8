"""Builds the scanner's hot path in C and records the commit; the rest is in pyproject.toml.

``dlp_addon/detect/_numscan.c`` finds number tokens and letter-and-digit tokens, validates,
hashes (OpenSSL's SHA-256) and masks them, and tells whether a text needs folding;
``dlp_addon/detect/candidates.py``, ``plan.py`` and ``validators.py`` hold its pure-Python twin.
Its validator codes, checksum kinds and constants come from ``validator_table.py``, the one
table Python reads too: the header ``_numscan_table.h`` is generated from it into the build
directory (never into the sources). ``dlp_addon/extract/_biffwalk.c`` walks an xls workbook
stream's records (``biff.py`` holds its pure-Python twin); ``dlp_addon/extract/_runscan.c``
finds where base64, hex and base32 runs can be in a long text (``runs.windows_py``, its twin);
``dlp_addon/extract/_sheettext.c`` writes a sheet's cells as text (``spreadsheet._text_py``).

A built package (wheel, ``pip install .``) carries ``dlp_addon/_commit.txt``, the git commit it
was built from, so ``dlp-proxy --version`` can name it without a checkout. An editable install
does not need it: ``dlp_addon.about`` asks git in the checkout instead.
"""

import os
import runpy
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

TABLE = Path(__file__).resolve().parent / "dlp_addon" / "detect" / "validator_table.py"


def _commit() -> str:
    """``$DLP_COMMIT`` (an image build without .git passes it), else the checkout's commit,
    ``+dirty`` when files differ from it; empty when neither is known."""
    if os.environ.get("DLP_COMMIT", "").strip():
        return os.environ["DLP_COMMIT"].strip()
    here = Path(__file__).resolve().parent
    try:
        run = {"cwd": here, "capture_output": True, "text": True, "timeout": 10, "check": True}
        head = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty.stdout.strip() else "")


class BuildPyWithCommit(build_py):
    """build_py that also writes ``_commit.txt`` into the build (never into the sources)."""

    def run(self) -> None:
        super().run()
        commit = _commit()
        if commit and not self.editable_mode:
            target = Path(self.build_lib) / "dlp_addon" / "_commit.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(commit + "\n", encoding="ascii")


class BuildExtWithTable(build_ext):
    """build_ext that first writes ``_numscan_table.h`` from the validator table."""

    def build_extensions(self) -> None:
        include = Path(self.build_temp) / "dlp_numscan_table"
        include.mkdir(parents=True, exist_ok=True)
        header = runpy.run_path(str(TABLE))["c_header"]()
        (include / "_numscan_table.h").write_text(header, encoding="ascii")
        for ext in self.extensions:
            ext.include_dirs.append(str(include))
            ext.depends.append(str(TABLE))
        super().build_extensions()


setup(
    cmdclass={"build_py": BuildPyWithCommit, "build_ext": BuildExtWithTable},
    ext_modules=[
        Extension(
            "dlp_addon.detect._numscan",
            sources=["dlp_addon/detect/_numscan.c"],
            extra_compile_args=["-Wall", "-Wextra"],
            libraries=["crypto"],  # OpenSSL's SHA-256 for the keyed hashes
        ),
        Extension(
            "dlp_addon.extract._biffwalk",
            sources=["dlp_addon/extract/_biffwalk.c"],
            extra_compile_args=["-Wall", "-Wextra"],
        ),
        Extension(
            "dlp_addon.extract._sheettext",
            sources=["dlp_addon/extract/_sheettext.c"],
            extra_compile_args=["-Wall", "-Wextra"],
        ),
        Extension(
            "dlp_addon.extract._runscan",
            sources=["dlp_addon/extract/_runscan.c"],
            extra_compile_args=["-Wall", "-Wextra"],
        ),
    ],
)
