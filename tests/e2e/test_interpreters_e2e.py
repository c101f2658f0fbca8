"""The wheel and its C pass on every interpreter scripts/setup may pick (python3.14, 3.13,
3.12 on PATH or under pyenv): built, installed into a clean venv, the compiled engine running
and its findings hashing like plain tuples (CPython 3.14 caches tuple hashes; a finding made
in C with its cache left at zero would hash to 0). An interpreter that is absent is skipped,
saying so."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.packaging import MINORS, find_interpreter, install
from tests.synth import resident_id

pytestmark = pytest.mark.e2e

# Runs inside the installed venv; the IDs come on stdin, only counts go out.
PROBE = """
import json, sys
import dlp_addon.detect._numscan
from dlp_addon.decide import load_policy
from dlp_addon.detect.engine import engine_for
from dlp_addon.detect.scanner import Finding
ids = json.load(sys.stdin)
policy = load_policy()
scanner = engine_for(policy).scanner
found = scanner.scan("\\n".join(f"客户{i} 身份证 {v}" for i, v in enumerate(ids)), "body")
print(json.dumps({
    "engine": engine_for(policy).name,
    "findings": len(found),
    "distinct_keys": len({f.key for f in found}),
    "hash_like_tuple": all(hash(f) == hash(tuple(f)) == hash(Finding(*f)) for f in found),
    "distinct_hashes": len({hash(f) for f in found}),
    "in_a_set": len(set(found) | set(Finding(*f) for f in found)),
}))
"""


@pytest.mark.parametrize("minor", MINORS)
def test_wheel_and_c_pass_on_each_interpreter(minor: str, tmp_path: Path) -> None:
    python = find_interpreter(minor)
    if python is None:
        pytest.skip(
            f"no Python {minor}: neither python{minor} on PATH nor one under "
            "$PYENV_ROOT/versions (where scripts/setup looks)"
        )
    installed = install(python, tmp_path)
    version = installed.run(installed.bin("dlp-proxy"), "--version").stdout
    assert f"python: {minor}." in version and "C pass: built" in version
    rng = random.Random(int(minor.replace(".", "")))
    ids = [resident_id(rng) for _ in range(10)]
    out = installed.run(installed.python, "-c", PROBE, input=json.dumps(ids)).stdout
    assert json.loads(out) == {
        "engine": "hyperscan+c",
        "findings": 10,
        "distinct_keys": 10,
        "hash_like_tuple": True,
        "distinct_hashes": 10,
        "in_a_set": 10,
    }
