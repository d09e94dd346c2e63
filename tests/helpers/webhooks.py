"""A webhook receiver for tests: a local HTTP server that records what it is sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """A local HTTP server that records each POST (path, headers, body) and answers 500 to the first POST on
    /flaky, 200 otherwise."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                first_flaky = self.path == "/flaky" and not any(p == "/flaky" for p, _, _ in receiver.posts)
                receiver.posts.append((self.path, dict(self.headers.items()), body))
                self.send_response(500 if first_flaky else 200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        """The JSON bodies received so far, in order."""
        return [json.loads(body) for _, _, body in list(self.posts)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
