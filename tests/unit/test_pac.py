"""``dlp-policy pac``: the generated JavaScript, run in a real JavaScript engine (duktape via
dukpy), routes exactly the hosts the proxy allows to the proxy, never offers DIRECT for them,
and sends every other host where the policy says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dukpy
import pytest

from dlp_addon.decide.policy import DEFAULT_POLICY, Policy, load_policy
from dlp_addon.pac import PacError, render_pac
from dlp_addon.policy_cli import main

PROXIES = ["dlp-1.corp.example:3128", "10.1.2.3:3128"]
VIA_PROXY = "PROXY dlp-1.corp.example:3128; PROXY 10.1.2.3:3128"

SMALL = """\
version: 1
egress: {refuse_unlisted: %s}
destinations:
  - name: shop
    hosts: [shop.example, "*.shop.example", "*.cdn.example", 198.51.100.7]
  - name: chat
    hosts: [im.chat.example]
rules:
  - name: ids
    action: block
    when:
      - {detector: cn_resident_id, min_distinct: 5}
"""


def find_proxy(pac: str, hosts: list[str]) -> list[str]:
    """``FindProxyForURL`` for each host, evaluated by duktape."""
    result: Any = dukpy.evaljs(
        [
            pac,
            "var out = []; for (var i = 0; i < dukpy.hosts.length; i++) "
            "{ out.push(FindProxyForURL('https://' + dukpy.hosts[i] + '/', dukpy.hosts[i])); } "
            "out",
        ],
        hosts=hosts,
    )
    return [str(r) for r in result]


def small_policy(tmp_path: Path, refuse_unlisted: bool = True) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(SMALL % ("true" if refuse_unlisted else "false"), encoding="utf-8")
    return load_policy(path)


def candidate_hosts(policy: Policy) -> list[str]:
    """Every listed name in several spellings, names just beside them, and strangers."""
    out: list[str] = []
    for dest in policy.destinations:
        for glob in dest.hosts:
            base = glob.removeprefix("*.")
            out += [base, "www." + base, "a.b." + base, base.upper(), base + ".", "x" + base]
            out += [base + ".evil.example", base.rsplit(".", 1)[0] + ".co", "-" + base]
    return [*out, "example.org", "localhost", "intranet", "10.9.8.7", "192.168.1.1", "::1"]


@pytest.mark.parametrize("policy_file", [DEFAULT_POLICY, None], ids=["shipped", "small"])
def test_pac_agrees_with_the_proxy_on_every_host(tmp_path: Path, policy_file: Path | None) -> None:
    policy = load_policy(policy_file) if policy_file else small_policy(tmp_path)
    hosts = candidate_hosts(policy)
    pac = render_pac(policy, PROXIES, direct=["*.corp.example", "10.0.0.0/8"], plain_direct=True)
    answers = dict(zip(hosts, find_proxy(pac, hosts), strict=True))
    allowed = [h for h in hosts if policy.destination_for(h)]
    assert len(allowed) > len(policy.destinations)  # the list above does reach the allow-list
    for host, answer in answers.items():
        if policy.destination_for(host):
            assert answer == VIA_PROXY, host  # never "; DIRECT": no way around inspection
        elif ("." not in host and ":" not in host) or host.startswith("10."):
            assert answer == "DIRECT", host
        else:  # refuse_unlisted: the proxy refuses it with a page the employee can read
            assert answer == VIA_PROXY, host


def test_allow_list_wins_over_the_intranet_list(tmp_path: Path) -> None:
    policy = small_policy(tmp_path)
    pac = render_pac(
        policy, PROXIES, direct=["198.51.100.0/24", "*.example", "shop.example"], plain_direct=True
    )
    hosts = ["198.51.100.7", "198.51.100.8", "shop.example", "a.shop.example", "other.example"]
    assert find_proxy(pac, hosts) == [VIA_PROXY, "DIRECT", VIA_PROXY, VIA_PROXY, "DIRECT"]


def test_unlisted_direct_only_when_the_policy_lets_unlisted_hosts_out(tmp_path: Path) -> None:
    with pytest.raises(PacError, match="refuse_unlisted"):
        render_pac(small_policy(tmp_path), PROXIES, unlisted="direct")
    policy = small_policy(tmp_path, refuse_unlisted=False)
    hosts = ["im.chat.example", "chat.example", "x.cdn.example", "cdn.example", "news.example"]
    assert find_proxy(render_pac(policy, PROXIES, unlisted="direct"), hosts) == [
        VIA_PROXY,
        "DIRECT",
        VIA_PROXY,
        "DIRECT",  # "*.cdn.example" does not list cdn.example itself
        "DIRECT",
    ]
    assert set(find_proxy(render_pac(policy, PROXIES), hosts)) == {VIA_PROXY}


def test_plain_names_and_networks_only_when_asked(tmp_path: Path) -> None:
    pac = render_pac(small_policy(tmp_path), PROXIES)
    assert find_proxy(pac, ["intranet", "10.1.1.1", "[::1]"]) == [VIA_PROXY] * 3
    pac = render_pac(small_policy(tmp_path), PROXIES, direct=["10.128.0.0/9", "::1"])
    assert find_proxy(pac, ["10.127.255.255", "10.128.0.1", "10.255.255.255", "[::1]"]) == [
        VIA_PROXY,
        "DIRECT",
        "DIRECT",
        "DIRECT",
    ]


@pytest.mark.parametrize(
    ("proxies", "direct", "message"),
    [
        ([], [], "at least one proxy"),
        (["dlp.corp.example"], [], "host:port"),
        (["dlp.corp.example:0"], [], "host:port"),
        (["dlp.corp.example:3128"], ["fd00::/8"], "IPv4"),
        (["dlp.corp.example:3128"], ["*corp.example"], "host glob"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, proxies: list[str], direct: list[str], message: str
) -> None:
    with pytest.raises(PacError, match=message):
        render_pac(small_policy(tmp_path), proxies, direct=direct)


def test_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small_policy(tmp_path)
    out = tmp_path / "proxy.pac"
    args = ["pac", str(tmp_path / "policy.yaml"), "--proxy", PROXIES[0], "--proxy", PROXIES[1]]
    assert main([*args, "--direct", "*.corp.example", "-o", str(out)]) == 0
    assert find_proxy(out.read_text("utf-8"), ["a.shop.example", "wiki.corp.example"]) == [
        VIA_PROXY,
        "DIRECT",
    ]
    assert main([*args, "--unlisted", "direct"]) == 2
    assert "refuse_unlisted" in capsys.readouterr().err
