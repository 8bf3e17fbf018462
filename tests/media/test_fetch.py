"""InputFetcher against a real local HTTP(S) server: redirects, limits, error classes, address pinning."""

from __future__ import annotations

import datetime
import gzip
import ssl
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.io.fetch import InputFetcher, InputFetchError, pinned_request
from taskservice.settings import Settings
from tests.support.file_server import StaticFileServer
from tests.support.media import png_bytes


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def fetcher(client: httpx.AsyncClient, **overrides: Any) -> InputFetcher:
    values: dict[str, Any] = {"allow_private_urls": True, "fetch_timeout_s": 5.0, **overrides}
    return InputFetcher(Settings(**values), client)


async def invalid(coro: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await coro
    assert caught.value.type == "InvalidInput" and caught.value.non_retryable
    return caught.value


async def test_fetch_follows_redirects(http_server: StaticFileServer, client: httpx.AsyncClient) -> None:
    http_server.put("/hop-2", b"", "image/png", status=307, headers={"location": "/ref.png"})
    url = http_server.put(
        "/hop-1", b"", "image/png", status=302, headers={"location": http_server.base_url + "/hop-2"}
    )
    fetched = await fetcher(client).fetch(url, accept=("image/",))
    assert fetched.content_type == "image/png" and fetched.data == png_bytes((96, 80), (200, 30, 30))


async def test_redirect_loop_is_invalid(http_server: StaticFileServer, client: httpx.AsyncClient) -> None:
    url = http_server.put("/loop", b"", "image/png", status=302, headers={"location": "/loop"})
    assert "redirects more than 5 times" in str(await invalid(fetcher(client).fetch(url, accept=("image/",))))


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_transient_statuses_are_retryable(
    http_server: StaticFileServer, client: httpx.AsyncClient, status: int
) -> None:
    url = http_server.put(f"/status-{status}", b"busy", "image/png", status=status)
    with pytest.raises(InputFetchError, match=f"HTTP {status}"):
        await fetcher(client).fetch(url, accept=("image/",))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
async def test_client_errors_are_permanent(
    http_server: StaticFileServer, client: httpx.AsyncClient, status: int
) -> None:
    url = http_server.put(f"/status-{status}", b"no", "image/png", status=status)
    assert f"HTTP {status}" in str(await invalid(fetcher(client).fetch(url, accept=("image/",))))


async def test_size_limit(http_server: StaticFileServer, client: httpx.AsyncClient) -> None:
    url = http_server.put("/big.png", b"\x89PNG" + b"0" * 5000, "image/png")
    error = await invalid(fetcher(client).fetch(url, accept=("image/",), max_bytes=1000))
    assert "1000 byte limit" in str(error)
    small = await fetcher(client, fetch_max_bytes=10_000).fetch(url, accept=("image/",))
    assert len(small.data) == 5004


async def test_accept_list(http_server: StaticFileServer, client: httpx.AsyncClient) -> None:
    url = http_server.put("/voice.bin", b"RIFF....", "application/octet-stream")
    fetched = await fetcher(client).fetch(url, accept=("audio/", "application/octet-stream"))
    assert fetched.content_type == "application/octet-stream"
    await invalid(fetcher(client).fetch(url, accept=("image/",)))


async def test_timeout_and_connection_errors_are_retryable(
    http_server: StaticFileServer, client: httpx.AsyncClient
) -> None:
    url = http_server.put("/slow.png", b"late", "image/png", delay_s=1.0)
    with pytest.raises(InputFetchError, match="timed out"):
        await fetcher(client, fetch_timeout_s=0.2).fetch(url, accept=("image/",))
    with pytest.raises(InputFetchError, match="could not download"):
        await fetcher(client).fetch("http://127.0.0.1:9/x.png", accept=("image/",))


async def test_private_and_non_http_refused(http_server: StaticFileServer, client: httpx.AsyncClient) -> None:
    guarded = fetcher(client, allow_private_urls=False)
    for url in (http_server.base_url + "/ref.png", "http://localhost/x.png", "http://[::1]/x.png",
                "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/x.png"):  # fmt: skip
        assert "private" in str(await invalid(guarded.fetch(url, accept=("image/",))))
    assert "http(s)" in str(await invalid(guarded.fetch("ftp://example.com/x.png", accept=("image/",))))


# -- pinning: the checked address is the one connected to, while TLS still verifies the host name ---------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "media-input.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("media-input.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _EchoHost(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        body = (self.headers.get("host") or "").encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHost)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()


async def test_pinned_request_keeps_host_and_sni(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    verify = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(verify=verify) as http:
        url = httpx.URL(f"https://media-input.test:{port}/image.png")
        request = pinned_request(http, url, "127.0.0.1", {"accept": "*/*"}, timeout=httpx.Timeout(5.0))
        response = await http.send(request)
    # Connected to the pinned address, yet the certificate matched the name and the Host header kept it.
    assert response.status_code == 200 and response.text == f"media-input.test:{port}"


def _gzip_of_zeros(size: int) -> bytes:
    """A gzip body that inflates to `size` zero bytes (~1000:1), built without holding the inflated bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, packer.flush()])


async def test_gzip_bomb_is_refused_without_inflating_it(
    http_server: StaticFileServer, client: httpx.AsyncClient
) -> None:
    bomb = _gzip_of_zeros(512 << 20)
    assert len(bomb) < 1 << 20
    url = http_server.put("/bomb.png", bomb, "image/png", headers={"content-encoding": "gzip"})
    tracemalloc.start()
    try:
        error = await invalid(fetcher(client, fetch_max_bytes=4 << 20).fetch(url, accept=("image/",)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"larger than the {4 << 20} byte limit" in str(error)
    # The limit, a chunk and the bomb as sent, not its 512 MiB inflated.
    assert peak < 16 << 20, peak


async def test_compressed_input_within_the_limit_is_decoded(
    http_server: StaticFileServer, client: httpx.AsyncClient
) -> None:
    png = png_bytes((96, 80), (200, 30, 30))
    for encoding, body in [("gzip", gzip.compress(png)), ("deflate", zlib.compress(png))]:
        url = http_server.put(
            f"/packed-{encoding}.png", body, "image/png", headers={"content-encoding": encoding}
        )
        assert (await fetcher(client).fetch(url, accept=("image/",))).data == png
    url = http_server.put(
        "/exactly.png", gzip.compress(png), "image/png", headers={"content-encoding": "gzip"}
    )
    assert (await fetcher(client, fetch_max_bytes=len(png)).fetch(url, accept=("image/",))).data == png
    error = await invalid(fetcher(client, fetch_max_bytes=len(png) - 1).fetch(url, accept=("image/",)))
    assert "byte limit" in str(error)


async def test_unknown_content_encoding_is_refused(
    http_server: StaticFileServer, client: httpx.AsyncClient
) -> None:
    url = http_server.put("/brotli.png", b"\x8b\x02\x80", "image/png", headers={"content-encoding": "br"})
    error = await invalid(fetcher(client).fetch(url, accept=("image/",)))
    assert "Content-Encoding 'br'" in str(error)


class _EchoAcceptEncoding(_EchoHost):
    def do_GET(self) -> None:
        body = (self.headers.get("accept-encoding") or "").encode()
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


async def test_downloads_ask_for_identity_encoding(client: httpx.AsyncClient) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAcceptEncoding)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x.png"
        assert (await fetcher(client).fetch(url, accept=("image/",))).data == b"identity"
    finally:
        server.shutdown()
        server.server_close()
