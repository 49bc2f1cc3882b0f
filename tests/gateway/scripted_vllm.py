"""A stand-in for vLLM that fails, stalls or answers on cue, to test the gateway's own logic
under faults a real vLLM cannot be made to show on demand (a 502, a stall before the first
token, a queue of slow streams), or to see exactly what the gateway sends. Each chat completion
takes the next step of the script, or `default` when the script is empty; `bodies` keeps the
request bodies in order. Given the `models` it serves, it lists them and answers any other
model with vLLM's 404; without, it lists `base` and answers any name. Its usage counts a prompt
token per character of the messages' JSON, and like vLLM it puts the running usage on every
chunk under `continuous_usage_stats`."""

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ragft import sse


@dataclass(frozen=True)
class Answer:
    """Send `tokens` tokens, `token_s` apart, after `stall_s` (headers sent, no event yet)."""

    tokens: int = 2
    token_s: float = 0.0
    stall_s: float = 0.0
    # Not streamed: answer with the prompt's text, as a model that copies its passages would.
    echo: bool = False
    # The answer's text, instead of "ok " per token: whole, or streamed a word per event.
    text: str | None = None


@dataclass(frozen=True)
class Fail:
    """Answer with this status, or with status 0, drop the connection without answering."""

    status: int


Step = Answer | Fail


@dataclass
class ScriptedVllm:
    url: str = ""
    default: Step = Answer()
    models: tuple[str, ...] | None = None
    script: deque[Step] = field(default_factory=deque)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        return len(self.bodies)

    def next_step(self, body: dict[str, Any]) -> Step:
        with self.lock:
            self.bodies.append(body)
            return self.script.popleft() if self.script else self.default


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    event = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": "voice",
             "choices": [choice], **({"usage": usage} if usage else {})}  # fmt: skip
    return sse.encode(event)


def _handler(vllm: ScriptedVllm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            listed = [
                {"id": name, "object": "model", "created": 0, "owned_by": "vllm"} for name in vllm.models or ["base"]
            ]
            self._json(200, {"object": "list", "data": listed})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if vllm.models is not None and body.get("model") not in vllm.models:
                missing = {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError",
                           "param": "model", "code": 404}  # fmt: skip
                self._json(404, {"error": missing})
                return
            step = vllm.next_step(body)
            if isinstance(step, Fail):
                if step.status == 0:
                    self.close_connection = True
                    return
                self._json(step.status, {"error": {"message": f"scripted {step.status}", "type": "scripted"}})
                return
            prompt_tokens = len(json.dumps(body["messages"]))
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": step.tokens,
                     "total_tokens": prompt_tokens + step.tokens}  # fmt: skip
            if not body.get("stream"):
                time.sleep(step.stall_s + step.tokens * step.token_s)
                prompt = "\n".join(str(message["content"]) for message in body["messages"])
                content = prompt if step.echo else step.text if step.text is not None else "ok " * step.tokens
                message = {"role": "assistant", "content": content}
                self._json(200, {"id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
                                 "model": "voice", "choices": [{"index": 0, "message": message,
                                                                "finish_reason": "stop"}],
                                 "usage": usage})  # fmt: skip
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self.wfile.flush()
            time.sleep(step.stall_s)
            continuous = body.get("stream_options", {}).get("continuous_usage_stats")
            try:
                self.wfile.write(_chunk({"role": "assistant", "content": ""}))
                pieces = re.findall(r"\S+\s*", step.text) if step.text is not None else ["ok "] * step.tokens
                for sent, piece in enumerate(pieces, 1):
                    time.sleep(step.token_s)
                    so_far = usage | {"completion_tokens": sent} if continuous else None
                    self.wfile.write(_chunk({"content": piece}, usage=so_far))
                    self.wfile.flush()
                self.wfile.write(_chunk({}, "stop"))
                if body.get("stream_options", {}).get("include_usage"):
                    self.wfile.write(sse.encode({"choices": [], "usage": usage}))
                self.wfile.write(sse.DONE)
            except OSError:  # the gateway hung up: what it does on a deadline or a client leaving
                pass

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def served(server: ThreadingHTTPServer) -> Iterator[str]:
    """A stand-in's server on a thread of its own: its URL, until the block ends."""
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def scripted_vllm(default: Step = Answer(), models: tuple[str, ...] | None = None) -> Iterator[ScriptedVllm]:
    vllm = ScriptedVllm(default=default, models=models)
    with served(ThreadingHTTPServer(("127.0.0.1", 0), _handler(vllm))) as vllm.url:
        yield vllm
