"""Webhook delivery at the activity, with real HTTP servers: the checked address is the one connected to (no
DNS rebinding), redirects are not followed, at most 64 KiB of an answer is read, rotation signs with every
secret. Runs the real `WebhookActivities.deliver_webhook` in Temporal's `ActivityEnvironment`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import ssl
import threading
import tracemalloc
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.io.webhooks import MAX_RESPONSE_BYTES, WebhookActivities
from taskservice.contracts import TaskStatus, WebhookDelivery, WebhookPayload
from taskservice.netguard import pinned_request
from taskservice.settings import Settings
from taskservice.webhook_secrets import tenant_secret
from tests.support.tls_certs import TestCA
from tests.support.webhook_receiver import ReceivedWebhook, WebhookReceiver

# A public (globally routable) address the guard accepts. Nothing here serves it: in these tests a delivery
# that goes where the check said fails to connect, and one that goes anywhere else shows up on a receiver.
PUBLIC_ADDRESS = "93.184.215.14"
REBINDING_NAME = "rebind.webhook.test"


def secret_of(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def delivery(url: str) -> WebhookDelivery:
    return WebhookDelivery(
        url=url,
        payload=WebhookPayload(
            task_id="t-1",
            project_id="webhook-delivery",
            task_type="test_prompt",
            status=TaskStatus.COMPLETED,
            result={"output": "ok"},
        ),
        webhook_id="msg_t-1_completed",
        task_id="t-1",
        project_id="webhook-delivery",
        task_type="test_prompt",
        event="completed",
    )


def settings(**overrides: Any) -> Settings:
    return Settings(**{"webhook_timeout_s": 3.0, "webhook_secret": None, **overrides})


async def deliver(activities: WebhookActivities, url: str) -> int:
    result: int = await ActivityEnvironment().run(activities.deliver_webhook, delivery(url))
    return result


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


# -- DNS rebinding ----------------------------------------------------------------------------------------


class RebindingDNS:
    """DNS for one name that answers a public address the first time and loopback ever after."""

    def __init__(self) -> None:
        self.questions = 0
        self._system = socket.getaddrinfo

    def answer(self) -> str:
        self.questions += 1
        return PUBLIC_ADDRESS if self.questions == 1 else "127.0.0.1"

    async def resolve(self, host: str, port: int) -> list[str]:
        """The resolver a test injects into the guard."""
        assert host == REBINDING_NAME
        return [self.answer()]

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        """Stands in for the system resolver, so a second resolution anywhere (httpx included) is seen."""
        # anyio (under httpx) asks with the IDNA-encoded name, as bytes.
        if (host.decode() if isinstance(host, bytes) else host) != REBINDING_NAME:
            return self._system(host, port, *args, **kwargs)
        return self._system(self.answer(), port, *args, **kwargs)


@pytest.mark.parametrize("resolver", ["system", "injected"])
async def test_rebinding_after_the_check_reaches_no_private_receiver(
    resolver: str, webhook_receiver: WebhookReceiver, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = RebindingDNS()
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    if resolver == "injected":
        activities = WebhookActivities(settings(), http, resolver=dns.resolve)
    else:
        activities = WebhookActivities(settings(), http)
    url = f"http://{REBINDING_NAME}:{webhook_receiver.port}/rebound"
    outcome: int | ApplicationError
    try:
        outcome = await deliver(activities, url)
    except ApplicationError as err:
        outcome = err
    await asyncio.sleep(0.2)
    assert webhook_receiver.received == [], "the webhook reached the loopback address the name rebound to"
    # The check's public answer is where the request went (and failed): the name was asked for once only.
    assert dns.questions == 1
    assert isinstance(outcome, ApplicationError) and outcome.type == "WebhookFailed"


async def test_injected_resolver_decides_what_the_check_sees(
    webhook_receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    asked: list[tuple[str, int]] = []

    async def private_only(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return [PUBLIC_ADDRESS, "10.0.0.7"]

    activities = WebhookActivities(settings(), http, resolver=private_only)
    with pytest.raises(ApplicationError) as refused:
        await deliver(activities, f"http://hooks.example.test:{webhook_receiver.port}/x")
    assert refused.value.type == "WebhookRefused" and "private" in str(refused.value)
    assert asked == [("hooks.example.test", webhook_receiver.port)]
    assert webhook_receiver.received == []


async def test_pinned_post_keeps_host_header_and_tls_name(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    issued = ca.issue("hooks", dns=("hooks.example.test",))
    seen: list[tuple[str, bytes]] = []

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_POST(self) -> None:
            seen.append((self.headers["host"], self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca.cert))) as client:
            url = httpx.URL(f"https://hooks.example.test:{port}/hook")
            request = pinned_request(client, url, "127.0.0.1", {}, method="POST", content=b'{"a":1}')
            response = await client.send(request)
    finally:
        server.shutdown()
    # Connected to the pinned address; the certificate was checked against the URL's name, Host kept it.
    assert response.status_code == 204
    assert seen == [(f"hooks.example.test:{port}", b'{"a":1}')]


# -- what is read from the receiver ------------------------------------------------------------------------


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting the body bytes it hands to the client."""

    def __init__(self) -> None:
        super().__init__()
        self.body_bytes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        inner = response.stream
        assert isinstance(inner, httpx.AsyncByteStream)
        response.stream = _Counted(inner, self)
        return response


class _Counted(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, owner: CountingTransport) -> None:
        self._inner = inner
        self._owner = owner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._owner.body_bytes += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class EndlessBody(BaseHTTPRequestHandler):
    """200 with a chunked body that never ends (until the client hangs up)."""

    protocol_version = "HTTP/1.1"
    sent = 0

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        block = b"x" * 65536
        try:
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                type(self).sent += len(block)
        except OSError:
            self.close_connection = True


class Redirecting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        type(self).hits.append(self.path)
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(307 if self.path == "/hook" else 200)
        self.send_header("location", "/internal-only")
        self.send_header("content-length", "0")
        self.end_headers()


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


async def test_endless_answer_is_cut_at_64_kib_without_growing_memory() -> None:
    server, base = serve(EndlessBody)
    transport = CountingTransport()
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            activities = WebhookActivities(settings(webhook_allow_private=True), client)
            tracemalloc.start()
            try:
                status = await asyncio.wait_for(deliver(activities, f"{base}/hook"), timeout=20)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        server.shutdown()
    assert status == 200
    # httpcore reads the socket 64 KiB at a time: at most one read beyond the limit reaches the activity.
    assert MAX_RESPONSE_BYTES <= transport.body_bytes <= MAX_RESPONSE_BYTES + 65536
    assert peak < 4 * 2**20, f"peak traced memory {peak} bytes"


async def test_redirects_are_not_followed(http: httpx.AsyncClient) -> None:
    server, base = serve(Redirecting)
    Redirecting.hits = []
    try:
        activities = WebhookActivities(settings(webhook_allow_private=True), http)
        with pytest.raises(ApplicationError) as failed:
            await deliver(activities, f"{base}/hook")
    finally:
        server.shutdown()
    assert failed.value.type == "WebhookFailed" and "redirects are not followed" in str(failed.value)
    assert Redirecting.hits == ["/hook"]


# -- signatures ------------------------------------------------------------------------------------------


def verifies_with(secret: str, hook: ReceivedWebhook) -> bool:
    """A Standard Webhooks receiver holding one secret: any `v1,` signature in the header may match."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{hook.headers['webhook-id']}.{hook.headers['webhook-timestamp']}.".encode() + hook.body_bytes
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    signatures = [s.split(",", 1) for s in hook.headers["webhook-signature"].split(" ")]
    return any(v == "v1" and hmac.compare_digest(sig, expected) for v, sig in signatures)


async def test_master_rotation_signs_with_the_tenant_secret_of_every_master(
    webhook_receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    new, old, other = (secret_of(bytes([n]) * 32) for n in (1, 2, 3))
    activities = WebhookActivities(settings(webhook_allow_private=True, webhook_secret=f"{new}, {old}"), http)
    assert await deliver(activities, webhook_receiver.url("/rotating")) == 200
    [hook] = webhook_receiver.received
    assert len(hook.headers["webhook-signature"].split(" ")) == 2
    assert verifies_with(tenant_secret(bytes([1]) * 32, "default", 0), hook)
    assert verifies_with(tenant_secret(bytes([2]) * 32, "default", 0), hook)
    # The masters themselves sign nothing: receivers never hold them.
    assert not any(verifies_with(secret, hook) for secret in (new, old, other))


@pytest.mark.parametrize("secret", [None, "", "  "])
async def test_no_secret_means_no_signature(
    secret: str | None, webhook_receiver: WebhookReceiver, http: httpx.AsyncClient
) -> None:
    activities = WebhookActivities(settings(webhook_allow_private=True, webhook_secret=secret), http)
    assert await deliver(activities, webhook_receiver.url("/unsigned")) == 200
    [hook] = webhook_receiver.received
    assert "webhook-signature" not in hook.headers and hook.headers["webhook-id"] == "msg_t-1_completed"
