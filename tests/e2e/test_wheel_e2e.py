"""The wheel, installed as an operator installs it: built from the sources alone, installed (not
editable) into a clean venv outside the checkout, then ``dlp-proxy`` from that venv in front of
a real upstream. The package must carry its own data (detectors, policy, schemas, keyword
lists) and its compiled engine, and say which engine runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import TEST_DESTINATION, UPSTREAM_HOST, Proxy, Upstream
from tests.packaging import Installed, default_python, head_commit, install
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    yield install(default_python(), tmp_path_factory.mktemp("wheel-install"))


class WheelProxy(Proxy):
    """The harness's proxy, started from the installed venv's ``dlp-proxy``."""

    def __init__(self, installed: Installed, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.exe = installed.bin("dlp-proxy")

    @property
    def command(self) -> list[str]:
        return [str(self.exe), *super().command[1:]]


def package_dir(installed: Installed) -> Path:
    code = "import dlp_addon, pathlib; print(pathlib.Path(dlp_addon.__file__).parent)"
    return Path(installed.run(installed.python, "-c", code).stdout.strip())


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    where = package_dir(installed)
    assert installed.venv in where.parents
    assert (where / "patterns" / "policy.yaml").is_file() and (where / "haproxy.cfg").is_file()
    assert list((where / "detect").glob("_numscan*.so"))


def test_version_names_the_commit_and_the_compiled_engine(installed: Installed) -> None:
    out = installed.run(installed.bin("dlp-proxy"), "--version").stdout
    assert out.startswith("dlp-proxy ")
    assert f"commit: {head_commit()}" in out
    assert "C pass: built" in out and "scan engine: compiled (hyperscan + C pass)" in out


def test_dlp_policy_checks_the_shipped_policy(installed: Installed) -> None:
    policy = package_dir(installed) / "patterns" / "policy.yaml"
    done = installed.run(installed.bin("dlp-policy"), "check", policy)
    assert "ok" in done.stdout.lower()


def admin_policy(installed: Installed) -> dict[str, object]:
    """The shipped policy as an admin copies it out of the package (to /etc/dlp/policy.yaml),
    with the test upstream allowed and an own keyword list beside it (a relative words_file:
    it resolves against the copy's directory, the shipped detectors stay the package's)."""
    shipped = package_dir(installed) / "patterns" / "policy.yaml"
    policy = yaml.safe_load(shipped.read_text("utf-8"))
    policy["destinations"] = [{"name": TEST_DESTINATION, "hosts": [UPSTREAM_HOST]}]
    for rule in policy["rules"]:
        if "destinations" in rule:
            rule["destinations"] = [TEST_DESTINATION]
    policy["custom_detectors"].append(
        {
            "id": "internal_project",
            "name": {"zh": "内部项目", "en": "internal project"},
            "category": "keyword",
            "legal_category": None,
            "words_file": "words/projects.txt",
            "validator": "none",
            "confidence": "low",
            "samples": {"match": ["北辰计划"], "no_match": ["北辰"]},
        }
    )
    return dict(policy)


def test_wheel_proxy_blocks_ten_ids_and_reports_the_compiled_engine(
    installed: Installed, tmp_path: Path, upstream: Upstream
) -> None:
    etc = tmp_path / "etc-dlp"  # the admin's directory, outside the package
    (etc / "words").mkdir(parents=True)
    (etc / "words" / "projects.txt").write_text("# internal projects\n北辰计划\n", "utf-8")
    proxy = WheelProxy(installed, etc, admin_policy(installed), upstream.tls.ca_cert)
    proxy.start()
    try:
        records = customer_records(10, seed=1810)
        with proxy.client() as client:
            r = client.post(
                upstream.url("https", "/wheel/chat/send"),
                json={"content": records_chat_text(records)},
                headers={"Accept": "application/json"},
            )
            ok = client.post(upstream.url("https", "/wheel/chat/send"), json={"content": "在吗"})
        assert r.status_code == 403 and r.json()["error"] == "blocked_by_dlp"
        assert ok.status_code == 200
        sent = [json.loads(q.body) for q in upstream.recorder.requests("/wheel/chat/send")]
        assert sent == [{"content": "在吗"}]
        assert not proxy.leaks(raw_values(records))
        assert "scan engine hyperscan+c" in proxy.output()
        assert proxy.metric("dlp_scan_engine_info", engine="hyperscan+c") == 1
    finally:
        proxy.stop()
