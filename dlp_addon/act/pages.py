"""What a person sees when the proxy stops something: an HTML page for a browser, JSON for a
script (XHR/fetch), a notice over the WebSocket. Chinese first, English below. They say what was
stopped and why in plain words (the rule's description and how many identifiers of each kind
were found), the incident id, what to do and whom to ask, and never echo the data: counts and
detector names only, no value, masked or not.

The JSON and the WebSocket notice carry the same facts as the page, as fields a chat front end
can show as they are (``message_zh`` / ``message_en`` are complete sentences).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from dlp_addon.decide.policy import Policy
from dlp_addon.decide.verdict import Verdict

# detector id -> (Chinese name, English name), from the policy's detector definitions
DetectorNames = Mapping[str, tuple[str, str]]

_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title_zh} / {title_en}</title>
<style>
body{{font-family:system-ui,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC","WenQuanYi Zen Hei",
sans-serif;max-width:42em;margin:2.5em auto;padding:0 1em;color:#222;line-height:1.65}}
.card{{border:1px solid #e3c2c2;border-top:6px solid #b00020;border-radius:6px;
padding:.4em 1.4em 1em;background:#fffafa}}
h1{{font-size:1.45em;color:#b00020;margin:.6em 0 .4em}} h2{{font-size:1.15em;color:#7a1020}}
dl{{display:grid;grid-template-columns:max-content 1fr;gap:.25em 1em;margin:.8em 0}}
dt{{color:#666}} dd{{margin:0}}
code{{background:#f1eded;padding:.1em .35em;border-radius:3px;font-size:.95em}}
#incident-id{{font-weight:bold;font-size:1.05em}}
.todo{{background:#fff;border-left:4px solid #b00020;padding:.4em .9em}}
.en{{color:#444;margin-top:1.6em;border-top:1px solid #ddd;padding-top:.4em}}
</style></head><body><main class="card">
<h1>{title_zh}</h1>
<dl>
<dt>原因</dt><dd>{reason_zh}</dd>
{found_zh}<dt>规则</dt><dd><code>{rule}</code></dd>
<dt>事件编号</dt><dd><code id="incident-id">{incident}</code></dd>
</dl>
<p class="todo">{todo_zh}</p>
<section class="en" lang="en">
<h2>{title_en}</h2>
<dl>
<dt>Why</dt><dd>{reason_en}</dd>
{found_en}<dt>Rule</dt><dd><code>{rule}</code></dd>
<dt>Incident id</dt><dd><code>{incident}</code></dd>
</dl>
<p class="todo">{todo_en}</p>
</section></main></body></html>
"""

_BLOCK_TITLE = ("内容已被数据防泄漏策略拦截", "Blocked by the data-loss-prevention policy")
_REFUSE_TITLE = ("此网站未被允许访问", "This site is not allowed")


def detector_names(policy: Policy) -> dict[str, tuple[str, str]]:
    """The names an employee reads for the policy's detectors."""
    return {d.id: (d.name_zh, d.name_en) for d in policy.detectors.detectors}


def wants_json(headers: Mapping[str, str]) -> bool:
    """True for XHR/fetch callers, which cannot show an HTML page but can show JSON.

    A navigation (``Sec-Fetch-Mode: navigate``: a link, a form post, the address bar) always
    gets the page, whatever it accepts; a script's request (``Sec-Fetch-Dest: empty``, CORS
    modes, ``X-Requested-With``, or one that asks for or sends JSON) gets JSON.
    """
    mode = headers.get("sec-fetch-mode", "")
    if mode == "navigate":
        return False
    return (
        "application/json" in headers.get("accept", "")
        or headers.get("x-requested-with", "").lower() == "xmlhttprequest"
        or mode in ("cors", "same-origin")
        or headers.get("sec-fetch-dest", "") == "empty"
        or "json" in headers.get("content-type", "")
    )


def found_summary(verdict: Verdict, names: DetectorNames | None) -> tuple[str, str]:
    """What was found, as counts by kind in both languages ("" when nothing was counted):
    ``居民身份证号码 10 个、手机号码 10 个；共 10 条记录``."""
    names = names or {}
    order = {d: i for i, d in enumerate(names)}  # the definitions' order: IDs before names
    counts = sorted(
        ((n, d) for d, n in verdict.counts.items() if n > 0),
        key=lambda c: (-c[0], order.get(c[1], len(order)), c[1]),
    )[:6]
    zh = "、".join(f"{names.get(d, (d, d))[0]} {n} 个" for n, d in counts)
    en = ", ".join(f"{names.get(d, (d, d))[1]}: {n}" for n, d in counts)
    if verdict.edm_records:  # rows of the company's own customer table
        zh = "、".join(filter(None, (f"本公司客户记录 {verdict.edm_records} 条", zh)))
        en = ", ".join(filter(None, (f"our customers' records: {verdict.edm_records}", en)))
    if not zh:
        return "", ""
    if verdict.records > 1:
        zh += f"；共 {verdict.records} 条记录"
        en += f"; {verdict.records} records"
    return zh, en


def _todo(refused: bool, contact: str, incident_id: str) -> tuple[str, str]:
    if refused:
        return (
            f"如工作需要访问此网站，请联系 {contact}，并提供事件编号 {incident_id}。",
            f"If your work needs this site, contact {contact} and quote incident {incident_id}.",
        )
    return (
        "请删除其中的个人信息后再发送。如确属工作需要，"
        f"请联系 {contact}，并提供事件编号 {incident_id}。",
        "Remove the personal data and send again. If this is part of your work, "
        f"contact {contact} and quote incident {incident_id}.",
    )


def block_body(
    verdict: Verdict,
    incident_id: str,
    contact: str,
    *,
    as_json: bool,
    refused: bool = False,
    names: DetectorNames | None = None,
) -> tuple[bytes, str]:
    """``(body, content type)`` of the answer to a blocked or refused request."""
    title_zh, title_en = _REFUSE_TITLE if refused else _BLOCK_TITLE
    found_zh, found_en = found_summary(verdict, names)
    todo_zh, todo_en = _todo(refused, contact, incident_id)
    if as_json:
        doc = {
            "error": "refused_by_dlp" if refused else "blocked_by_dlp",
            "incident_id": incident_id,
            "rule": verdict.rule,
            "message_zh": _sentence_zh(title_zh, verdict, found_zh, todo_zh),
            "message_en": _sentence_en(title_en, verdict, found_en, todo_en),
            "found_zh": found_zh,
            "found_en": found_en,
            "contact": contact,
        }
        return json.dumps(doc, ensure_ascii=False).encode(), "application/json; charset=utf-8"
    page = _PAGE.format(
        title_zh=html.escape(title_zh),
        title_en=html.escape(title_en),
        reason_zh=html.escape(verdict.description_zh),
        reason_en=html.escape(verdict.description_en),
        found_zh=f"<dt>发现</dt><dd>{html.escape(found_zh)}</dd>\n" if found_zh else "",
        found_en=f"<dt>Found</dt><dd>{html.escape(found_en)}</dd>\n" if found_en else "",
        incident=html.escape(incident_id),
        rule=html.escape(verdict.rule or ""),
        todo_zh=html.escape(todo_zh),
        todo_en=html.escape(todo_en),
    )
    return page.encode(), "text/html; charset=utf-8"


def _sentence_zh(title: str, verdict: Verdict, found: str, todo: str) -> str:
    return f"{title}：{verdict.description_zh}" + (f"（{found}）" if found else "") + f"。{todo}"


def _sentence_en(title: str, verdict: Verdict, found: str, todo: str) -> str:
    return f"{title}: {verdict.description_en}" + (f" ({found})" if found else "") + f". {todo}"


def ws_notice(
    verdict: Verdict, incident_id: str, contact: str, names: DetectorNames | None = None
) -> str:
    """The text message sent to the client in place of a dropped WebSocket message: JSON with
    ``"type": "dlp.blocked"``, which a chat page can tell from its own messages and show."""
    found_zh, found_en = found_summary(verdict, names)
    todo_zh, todo_en = _todo(False, contact, incident_id)
    message_zh = _sentence_zh(_BLOCK_TITLE[0], verdict, found_zh, todo_zh)
    message_en = _sentence_en(_BLOCK_TITLE[1], verdict, found_en, todo_en)
    return json.dumps(
        {
            "type": "dlp.blocked",
            "incident_id": incident_id,
            "rule": verdict.rule,
            "message": f"{message_zh} / {message_en}",
            "message_zh": message_zh,
            "message_en": message_en,
            "found_zh": found_zh,
            "found_en": found_en,
            "contact": contact,
        },
        ensure_ascii=False,
    )
