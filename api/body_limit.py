"""Refuses request bodies over a limit with 413, before a handler buffers them."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            response = error_response(
                scope["path"],
                status,
                "body_too_large" if status == 413 else "invalid_request",
                f"request bodies are limited to {self.max_bytes} bytes"
                if status == 413
                else "Content-Length is not a number",
            )
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            # A chunked body has no Content-Length: count what actually arrives.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(
                        413,
                        "body_too_large",
                        f"request bodies are limited to {self.max_bytes} bytes",
                    )
            return message

        await self.app(scope, limited_receive, send)
