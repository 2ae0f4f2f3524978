"""Error messages of the API driver for replies that are not fleet's."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetctl.api import ApiRegistry, TLSClientFiles, parse_endpoint
from fleetd.errors import ApiError

FLEET_404 = json.dumps({"error": {"code": 404, "message": "unit does not exist"}})


class _Handler(BaseHTTPRequestHandler):
    """Replies 404 to every GET, with fleetd's JSON body under /units/, else as etcd."""

    def do_GET(self) -> None:
        if "/units/" in self.path:
            body, content_type = FLEET_404.encode(), "application/json"
        else:
            body, content_type = b"404 page not found\n", "text/plain"
        self.send_response(404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[ApiRegistry]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    api = ApiRegistry(parse_endpoint(url), 5.0, TLSClientFiles())
    try:
        yield api
    finally:
        api.close()
        server.shutdown()
        server.server_close()
        thread.join()


def test_plain_404_hints_at_etcd(registry: ApiRegistry) -> None:
    with pytest.raises(ApiError) as caught:
        asyncio.run(registry.machines())
    message = str(caught.value)
    assert caught.value.status == 404
    assert "rejected GET /fleet/v1/machines with 404: 404 page not found" in message
    assert "may be etcd" in message
    assert "--driver=etcd" in message


def test_fleet_404_has_no_etcd_hint(registry: ApiRegistry) -> None:
    with pytest.raises(ApiError) as caught:
        registry.unit_status("web.service")
    message = str(caught.value)
    assert caught.value.status == 404
    assert "unit does not exist" in message
    assert "etcd" not in message
