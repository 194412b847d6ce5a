"""A local HTTP server whose answers a subclass writes: the steering benchmark's slow
tool (bench/steering.py), the fault tests' held request (tests/faults/fault_helpers.py)
and the browser tests' held tool calls (tests/console/world.py) are each this server
with its own `answer`."""

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalServer:
    """An HTTP server on 127.0.0.1 answering every GET with the bytes `answer(path)`
    returns. Each request has a thread of its own, so an answer may wait."""

    # Where `url` points on the server.
    url_path = ""
    # Sent as the answers' Content-Type when set.
    content_type: str | None = None

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.answer(self.path)
                # The caller may have gone meanwhile (a fault test kills the worker).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(200)
                    if owner.content_type:
                        self.send_header("Content-Type", owner.content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}{self.url_path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
