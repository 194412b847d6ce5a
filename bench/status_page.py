"""A local HTTP server for an agent's `http_get` to call: the steering benchmark's slow
tool and the fault tests' held one (tests/faults/fault_helpers.py) are this server with
a different wait before each answer."""

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StatusPage:
    """An HTTP server on 127.0.0.1 that answers every GET with `body` once
    `before_answer` returns; a subclass overrides it to make the tool call take time."""

    def __init__(self, body: bytes) -> None:
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page.before_answer()
                # The caller may have gone meanwhile (a fault test kills the worker).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/status"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def before_answer(self) -> None:
        """Called on the request's thread before it is answered; answers at once here."""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
