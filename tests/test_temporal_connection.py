"""Connecting to a secured Temporal by configuration alone: TLS, mTLS and an API key, against a real server.

`temporal server start-dev` has no TLS options, so a TLS front end (terminating TLS, optionally requiring a
client certificate, then piping bytes to the dev server) plays the secured frontend. Also: where a real
worker's metrics listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from temporalio.service import TLSConfig

from taskservice.settings import Settings
from taskservice.temporal import connect, temporal_tls
from tests.support.processes import ServiceProcess, TemporalDevServer, free_port
from tests.support.tls_certs import Issued, TestCA


class TLSFrontend:
    """TLS (ALPN h2) on a local port in front of the plain dev server; keeps what clients sent, decrypted."""

    def __init__(self, upstream: str, certificate: Issued, client_ca: Path | None = None) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate.cert, certificate.key)
        self.context.set_alpn_protocols(["h2"])
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cafile=str(client_ca))
        self.from_clients = bytearray()
        self.handshakes = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TLSFrontend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Hang up on clients still connected, so their pipes end on their own before the loop moves on.
        for writer in self._open:
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        host, port = self.upstream.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._open.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer, keep=True), self._pipe(up_reader, writer))
        self._open.difference_update((writer, up_writer))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if keep:
                    self.from_clients.extend(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def plain_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(tmp_path_factory.mktemp("temporal-behind-tls")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
async def frontend(plain_temporal: TemporalDevServer, ca: TestCA) -> AsyncIterator[TLSFrontend]:
    async with TLSFrontend(plain_temporal.address, ca.issue("frontend", ips=("127.0.0.1",))) as running:
        yield running


@pytest.fixture
async def mtls_frontend(plain_temporal: TemporalDevServer, ca: TestCA) -> AsyncIterator[TLSFrontend]:
    certificate = ca.issue("mtls-frontend", ips=("127.0.0.1",))
    async with TLSFrontend(plain_temporal.address, certificate, client_ca=ca.cert) as running:
        yield running


async def reaches_temporal(settings: Settings) -> bool:
    """Connect as the API and workers do, then make one real call."""
    client = await asyncio.wait_for(connect(settings), timeout=30)
    await client.count_workflows()
    return True


async def test_tls_with_a_private_ca(frontend: TLSFrontend, ca: TestCA) -> None:
    settings = Settings(temporal_address=frontend.address, temporal_tls_ca=ca.cert)
    assert await reaches_temporal(settings)
    assert frontend.handshakes >= 1


async def test_tls_checks_the_server_certificate(frontend: TLSFrontend) -> None:
    # TEMPORAL_TLS alone trusts the system's CAs only: the test CA's certificate is refused.
    with pytest.raises(RuntimeError):
        await reaches_temporal(Settings(temporal_address=frontend.address, temporal_tls=True))


async def test_tls_setting_really_speaks_tls(plain_temporal: TemporalDevServer) -> None:
    assert await reaches_temporal(Settings(temporal_address=plain_temporal.address))
    with pytest.raises(RuntimeError):
        await reaches_temporal(Settings(temporal_address=plain_temporal.address, temporal_tls=True))


async def test_mtls_presents_the_client_certificate(mtls_frontend: TLSFrontend, ca: TestCA) -> None:
    client = ca.issue("task-service-client")
    with pytest.raises(RuntimeError):
        await reaches_temporal(Settings(temporal_address=mtls_frontend.address, temporal_tls_ca=ca.cert))
    settings = Settings(
        temporal_address=mtls_frontend.address,
        temporal_tls_ca=ca.cert,
        temporal_tls_cert=client.cert,
        temporal_tls_key=client.key,
    )
    assert await reaches_temporal(settings)


# The client HPACK-encodes header values with the static Huffman code, so the test looks for the encoded
# `authorization` value. The codes of the few characters used, from RFC 7541 Appendix B:
HUFFMAN = {
    " ": "010100",
    "B": "1011101",
    "a": "00011",
    "e": "00101",
    "r": "101100",
    "c": "00100",
    "i": "00110",
    "o": "00111",
    "s": "01000",
    "t": "01001",
    "0": "00000",
    "1": "00001",
    "2": "00010",
}
API_KEY = "cat0sit1ecoa2tic" * 2


def huffman(text: str) -> bytes:
    bits = "".join(HUFFMAN[char] for char in text)
    bits += "1" * (-len(bits) % 8)  # padded with the start of EOS
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


async def test_api_key_implies_tls_and_is_sent_as_bearer(
    frontend: TLSFrontend, plain_temporal: TemporalDevServer, ca: TestCA
) -> None:
    with pytest.raises(RuntimeError):
        await reaches_temporal(Settings(temporal_address=plain_temporal.address, temporal_api_key=API_KEY))
    settings = Settings(temporal_address=frontend.address, temporal_api_key=API_KEY, temporal_tls_ca=ca.cert)
    assert await reaches_temporal(settings)
    assert huffman(f"Bearer {API_KEY}") in frontend.from_clients
    # Explicitly off: plaintext with the key (a local proxy that adds TLS itself, say).
    off = Settings(temporal_address=plain_temporal.address, temporal_api_key=API_KEY, temporal_tls=False)
    assert await reaches_temporal(off)


def test_tls_config_built_from_files(ca: TestCA) -> None:
    client = ca.issue("config-client")
    assert temporal_tls(Settings()) is False
    assert temporal_tls(Settings(temporal_tls=True)) is True
    assert temporal_tls(Settings(temporal_api_key="k")) is True
    assert temporal_tls(Settings(temporal_api_key="k", temporal_tls="off")) is False
    built = temporal_tls(
        Settings(temporal_tls_ca=ca.cert, temporal_tls_cert=client.cert, temporal_tls_key=client.key)
    )
    assert built == TLSConfig(
        server_root_ca_cert=ca.cert.read_bytes(),
        client_cert=client.cert.read_bytes(),
        client_private_key=client.key.read_bytes(),
    )


# -- worker metrics ------------------------------------------------------------------------------------------


def listening(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


def _metrics_base() -> int:
    """A WORKER_METRICS_PORT whose ports for the default queue (+3, and +13 for its second process) are free
    now: a free base alone says nothing of them (a neighbour's port there failed this test once)."""
    for _ in range(100):
        base = free_port()
        try:
            for offset in (3, 13):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError("no base port with free +3 and +13 ports")


def test_worker_metrics_listen_on_loopback_by_default(
    plain_temporal: TemporalDevServer, tmp_path: Path
) -> None:
    base = _metrics_base()
    env: dict[str, Any] = {
        "TEMPORAL_ADDRESS": plain_temporal.address,
        "WORKER_METRICS_PORT": str(base),
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    worker = ServiceProcess(
        "worker-metrics", ["workers", "default", "--no-supervisor"], env, tmp_path / "w.log"
    )
    worker.start()
    expected = {("127.0.0.1", base + 3), ("127.0.0.1", base + 13)}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not expected <= listening(worker.pid):
            assert worker.alive(), worker.log_text()[-3000:]
            time.sleep(0.3)
        ours = {(ip, port) for ip, port in listening(worker.pid) if port in (base + 3, base + 13)}
    finally:
        worker.stop()
    assert ours == expected
