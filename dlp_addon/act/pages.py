"""What a person sees when the proxy stops something: an HTML page for a browser, JSON for a
script (XHR/fetch), a notice over the WebSocket. Chinese first, English below. They name the
rule in plain words, the incident id and whom to ask, and never echo the data."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from dlp_addon.decide.verdict import Verdict

_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_zh} / {title_en}</title>
<style>
body{{font-family:system-ui,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;
max-width:40em;margin:3em auto;padding:0 1em;color:#222;line-height:1.6}}
h1{{font-size:1.4em;color:#b00020}} .en{{color:#555}} code{{background:#f3f3f3;padding:.1em .3em}}
</style></head><body>
<h1>{title_zh}</h1>
<p>{reason_zh}</p>
<p>规则：<code>{rule}</code></p>
<p>事件编号：<code id="incident-id">{incident}</code></p>
<p>如有疑问或确属工作需要，请联系：{contact}，并提供上述事件编号。</p>
<hr>
<div class="en" lang="en">
<h2>{title_en}</h2>
<p>{reason_en}</p>
<p>Rule: <code>{rule}</code></p>
<p>Incident id: <code>{incident}</code></p>
<p>If this is part of your work, contact {contact} and quote the incident id.</p>
</div></body></html>
"""

_BLOCK_TITLE = ("内容已被数据防泄漏策略拦截", "Blocked by the data-loss-prevention policy")
_REFUSE_TITLE = ("此网站未被允许访问", "This site is not allowed")


def wants_json(headers: Mapping[str, str]) -> bool:
    """True for XHR/fetch callers, which cannot show an HTML page but can show JSON."""
    accept = headers.get("accept", "")
    return (
        "application/json" in accept
        or headers.get("x-requested-with", "").lower() == "xmlhttprequest"
        or headers.get("sec-fetch-mode", "") in ("cors", "same-origin")
        or "json" in headers.get("content-type", "")
    )


def block_body(
    verdict: Verdict, incident_id: str, contact: str, *, as_json: bool, refused: bool = False
) -> tuple[bytes, str]:
    """``(body, content type)`` of the answer to a blocked or refused request."""
    title_zh, title_en = _REFUSE_TITLE if refused else _BLOCK_TITLE
    if as_json:
        doc = {
            "error": "refused_by_dlp" if refused else "blocked_by_dlp",
            "incident_id": incident_id,
            "rule": verdict.rule,
            "message_zh": f"{title_zh}：{verdict.description_zh}",
            "message_en": f"{title_en}: {verdict.description_en}",
            "contact": contact,
        }
        return json.dumps(doc, ensure_ascii=False).encode(), "application/json; charset=utf-8"
    page = _PAGE.format(
        title_zh=html.escape(title_zh),
        title_en=html.escape(title_en),
        reason_zh=html.escape(verdict.description_zh),
        reason_en=html.escape(verdict.description_en),
        incident=html.escape(incident_id),
        rule=html.escape(verdict.rule or ""),
        contact=html.escape(contact),
    )
    return page.encode(), "text/html; charset=utf-8"


def ws_notice(verdict: Verdict, incident_id: str, contact: str) -> str:
    """The text message sent to the client in place of a dropped WebSocket message."""
    return json.dumps(
        {
            "type": "dlp.blocked",
            "incident_id": incident_id,
            "rule": verdict.rule,
            "message": f"{_BLOCK_TITLE[0]}：{verdict.description_zh}（事件编号 {incident_id}）"
            f" / {_BLOCK_TITLE[1]}: {verdict.description_en} (incident {incident_id})",
            "contact": contact,
        },
        ensure_ascii=False,
    )
