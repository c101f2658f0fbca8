"""A stand-in for a shop's customer-service chat, served by the tests over HTTPS on 127.0.0.1.

What a real one has, in miniature: a page whose text box sends over a WebSocket, a file picker
that uploads with ``fetch`` and multipart, a classic form post (the after-sales form), and the
error display chat front ends have: a failed upload shows the ``message`` fields of the JSON it
got back, and a WebSocket message that is not one of the shop's own is shown as a system notice.
The page knows nothing of the proxy: whatever the employee reads there comes from the proxy's
answers, as it would on a real site.

Everything the shop receives is recorded (:class:`tests.e2e.harness.Recorder`), so a test can
tell what left the proxy. Paths other than ``/shop/...`` go to the plain recording app.
"""

from __future__ import annotations

import collections
import json
from urllib.parse import parse_qs

from tests.e2e.harness import (
    Receive,
    RecordedRequest,
    RecordedWsMessage,
    Recorder,
    Scope,
    Send,
    make_app,
)

CHAT_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>行旅箱包旗舰店 · 在线客服</title>
<style>
* { box-sizing: border-box; }
body { margin: 0; font-family: "WenQuanYi Zen Hei", "Noto Sans CJK SC", sans-serif;
  background: #f2f3f5; color: #222; }
header { background: #ff5000; color: #fff; padding: 10px 18px; font-size: 17px; }
header small { opacity: .85; margin-left: 10px; font-size: 13px; }
main { display: grid; grid-template-columns: 1fr 270px; gap: 12px; padding: 12px;
  max-width: 980px; margin: 0 auto; }
#log { background: #fff; border-radius: 6px; height: 470px; overflow-y: auto; padding: 12px; }
.msg { margin: 8px 0; max-width: 80%; padding: 8px 11px; border-radius: 8px;
  white-space: pre-wrap; word-break: break-all; font-size: 14px; line-height: 1.5; }
.me { background: #d7f0ff; margin-left: auto; }
.shop { background: #f1f1f1; }
.system { background: #fff4e5; border: 1px solid #ffcc80; max-width: 100%; font-size: 13px; }
.notice { background: #fdecea; border: 1px solid #f5a3a3; max-width: 100%; font-size: 13px; }
.notice .incident { font-family: monospace; font-weight: bold; }
#compose { display: flex; gap: 8px; margin-top: 8px; }
#text { flex: 1; height: 64px; resize: none; padding: 6px; font: inherit; }
button { background: #ff5000; color: #fff; border: 0; border-radius: 4px; padding: 6px 14px;
  font: inherit; cursor: pointer; }
aside section { background: #fff; border-radius: 6px; padding: 10px 12px; margin-bottom: 12px;
  font-size: 13px; }
aside h3 { margin: 0 0 8px; font-size: 14px; }
aside textarea, aside input[type=text] { width: 100%; margin-bottom: 6px; font: inherit; }
</style></head>
<body>
<header>行旅箱包旗舰店 · 在线客服 <small>客服小美为您服务</small></header>
<main>
<div>
  <div id="log"><div class="msg shop">亲，您好！请问有什么可以帮您？</div></div>
  <div id="compose">
    <textarea id="text" placeholder="输入消息，按“发送”"></textarea>
    <button id="send">发送</button>
  </div>
</div>
<aside>
  <section>
    <h3>发送图片/文件</h3>
    <input type="file" id="file">
    <button id="upload">上传</button>
  </section>
  <section>
    <h3>售后登记</h3>
    <form id="feedback" method="post" action="/shop/feedback">
      <input type="text" name="order" placeholder="订单号">
      <textarea name="content" rows="4" placeholder="问题描述"></textarea>
      <button type="submit" id="submit">提交</button>
    </form>
  </section>
</aside>
</main>
<script>
const chat = { opens: 0, closes: 0, replies: 0, notices: 0, uploads: 0, errors: 0 };
window.chat = chat;
const log = document.getElementById("log");
const box = document.getElementById("text");
const sid = Math.random().toString(36).slice(2);
chat.sid = sid;

function add(kind, text) {
  const div = document.createElement("div");
  div.className = "msg " + kind;
  div.textContent = text;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

// What a chat front end does with an error it did not expect: show its message fields.
function showError(doc, fallback) {
  if (!doc || !(doc.message_zh || doc.message)) { add("system", fallback); chat.errors++; return; }
  const div = add("notice", "");
  for (const line of [doc.message_zh || doc.message, doc.message_en]) {
    if (!line) continue;
    const p = document.createElement("div");
    p.textContent = line;
    div.appendChild(p);
  }
  if (doc.incident_id) {
    const p = document.createElement("div");
    p.append("事件编号 / Incident: ");
    const id = document.createElement("span");
    id.className = "incident";
    id.textContent = doc.incident_id;
    p.appendChild(id);
    div.appendChild(p);
  }
  log.scrollTop = log.scrollHeight;
  chat.notices++;
}

const ws = new WebSocket(`wss://${location.host}/shop/ws?sid=${sid}`);
ws.onopen = () => { chat.opens++; document.body.dataset.ws = "open"; };
ws.onclose = () => {
  chat.closes++;
  document.body.dataset.ws = "closed";
  add("system", "连接已断开");
};
ws.onmessage = (event) => {
  let doc = null;
  try { doc = JSON.parse(event.data); } catch (e) { /* plain text */ }
  if (doc && doc.type === "chat.reply") { add("shop", doc.text); chat.replies++; return; }
  showError(doc, String(event.data));
};

document.getElementById("send").onclick = () => {
  const text = box.value.trim();
  if (!text || ws.readyState !== WebSocket.OPEN) return;
  add("me", text);
  ws.send(text);
  box.value = "";
};

document.getElementById("upload").onclick = async () => {
  const file = document.getElementById("file").files[0];
  if (!file) return;
  add("me", "[文件] " + file.name);
  const form = new FormData();
  form.append("file", file, file.name);
  let response, doc = null;
  try {
    response = await fetch(`/shop/upload?sid=${sid}`, { method: "POST", body: form });
  } catch (e) { add("system", "网络错误，发送失败"); chat.errors++; return; }
  try { doc = await response.json(); } catch (e) { /* not JSON */ }
  if (response.ok && doc && doc.ok) {
    add("system", "文件已发送：" + file.name);
    chat.uploads++;
    return;
  }
  showError(doc, `发送失败（HTTP ${response.status}）`);
};
</script>
</body></html>
"""

FEEDBACK_DONE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>提交成功</title></head><body><h1 id="done">提交成功，客服会尽快联系您</h1></body></html>
"""


def _reply(text: str) -> str:
    head = text if len(text) <= 20 else text[:20] + "…"
    return json.dumps({"type": "chat.reply", "text": f"收到：{head}"}, ensure_ascii=False)


class ShopApp:
    """The shop on ``/shop/``: chat page, WebSocket ``/shop/ws``, ``/shop/upload`` and
    ``/shop/feedback``. ``connections[sid]`` counts the WebSocket connections of one page."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.connections: collections.Counter[str] = collections.Counter()
        self._fallback = make_app(recorder)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or not scope["path"].startswith("/shop/"):
            await self._fallback(scope, receive, send)
            return
        query = scope["query_string"].decode("latin-1")
        path = scope["path"] + ("?" + query if query else "")
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, path)
            return
        body = await _read_body(receive)
        if body is None:
            return
        if scope["method"] == "GET":
            if scope["path"] == "/shop/":
                await _respond(send, 200, CHAT_PAGE.encode(), "text/html; charset=utf-8")
            else:  # favicon and the like
                await _respond(send, 404, b"", "text/plain")
            return
        self.recorder.add_request(
            RecordedRequest(
                method=scope["method"],
                path=path,
                headers=tuple(
                    (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
                ),
                body=body,
                http_version=scope["http_version"],
                scheme=scope["scheme"],
            )
        )
        if scope["path"] == "/shop/feedback":
            await _respond(send, 200, FEEDBACK_DONE.encode(), "text/html; charset=utf-8")
        else:
            await _respond(send, 200, b'{"ok": true}', "application/json")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        sid = parse_qs(scope["query_string"].decode("latin-1")).get("sid", [""])[0]
        self.connections[sid] += 1
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            text = event.get("text")
            if event["type"] == "websocket.receive" and text is not None:
                self.recorder.add_ws_message(RecordedWsMessage(path, text, scope["scheme"]))
                await send({"type": "websocket.send", "text": _reply(text)})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return None
        chunks.append(event.get("body", b""))
        if not event.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, ctype: str) -> None:
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
