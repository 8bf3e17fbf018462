"""The Temporal Web UI as an operator sees it, in a real headless Chromium: the task list filtered by the
README's saved-view filter, and one task's page with its summary, details and current step.

Needs Debian's `chromium` (`.ci/run` installs it) and Playwright's Python client (dev extras); Playwright's
own browser downloads are never used. Screenshots are kept under the test's tmp dir (the paths are printed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.support.console import shown_when
from tests.support.processes import ServiceProcess, TemporalDevServer, free_port, wait_http_ok
from tests.support.stack import API_KEYS, NAMESPACES, Stack, wait_for_pollers
from tests.support.tasks import submit, wait_status
from tests.support.webhook_receiver import WebhookReceiver

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's saved view "a tenant's running tasks".
RUNNING_OF_TENANT = 'TaskOwner = "default" AND ExecutionStatus = "Running"'
# The columns docs/operations.md has operators add to the list (Configure Columns).
LIST_COLUMNS = ("TaskType", "ProjectId", "TaskOwner", "TaskStatus")


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """A dev server of its own with the Web UI on (the session's runs headless)."""
    server = TemporalDevServer(
        tmp_path_factory.mktemp("ui"), namespaces=NAMESPACES, ui_port=free_port()
    ).start()
    wait_http_ok(server.ui_url)
    yield server
    server.stop()


@dataclass
class UIStack:
    server: TemporalDevServer
    api: httpx.AsyncClient


@pytest.fixture(scope="module")
async def ui_stack(stack: Stack, ui_server: TemporalDevServer) -> AsyncIterator[UIStack]:
    """A default-queue worker and an API on the UI's server."""
    worker: ServiceProcess = stack.spawn(
        "worker-ui", ["workers", "default"], TEMPORAL_ADDRESS=ui_server.address
    )
    api_process = None
    try:
        api_process, url = stack.start_api("api-ui", TEMPORAL_ADDRESS=ui_server.address)
        await wait_for_pollers(ui_server.address, "default", ["default"])
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as api:
            yield UIStack(ui_server, api)
    finally:
        if api_process is not None:
            api_process.stop()
        worker.stop()


async def _shoot(page: Page, path: Path) -> None:
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


async def test_an_operator_finds_a_task_its_summary_details_and_step(
    ui_stack: UIStack, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium; .ci/run does)"
    lines = [{"text": "Hello there."}, {"text": "Goodbye. [[sleep=60]]"}]
    task_id = await submit(
        ui_stack.api,
        "translate_dialogue",
        {"lines": lines, "target_language": "fr"},
        project_id="ui_project",
        callback_url=webhook_receiver.url(),
        webhook_events_filter=["progress"],
    )
    await shown_when(ui_stack.server.address, "default", task_id, lambda s: "translating 2/2" in s.current)
    ui = ui_stack.server.ui_url
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            page = await browser.new_page(viewport={"width": 1920, "height": 1000})

            await page.goto(f"{ui}/namespaces/default/workflows?query={quote(RUNNING_OF_TENANT)}")
            row = page.get_by_role("row").filter(has_text=task_id)
            await expect(row).to_be_visible(timeout=30_000)
            # The list has no summary column in this UI: the operator adds the task's search attributes.
            await page.get_by_role("button", name="Configure Columns").click()
            for column in LIST_COLUMNS:
                await page.get_by_role("button", name=f"Add {column} column").click()
            await page.get_by_role("button", name="Remove Run ID column").click()
            await page.get_by_role("button", name="Close Workflows Table configuration").click()
            await expect(page.get_by_text("Configure Workflows Table")).to_be_hidden()
            for value in ("translate_dialogue", "ui_project", "processing"):
                await expect(row.get_by_text(value, exact=True)).to_be_visible()
            await _shoot(page, tmp_path / "workflow-list.png")

            await page.goto(f"{ui}/namespaces/default/workflows/{task_id}")
            # The timeline names the attempt by its summary.
            await expect(
                page.get_by_text("translate_dialogue on default: into fr, 2 lines").first
            ).to_be_visible(timeout=30_000)
            await _shoot(page, tmp_path / "task-timeline.png")
            await page.get_by_text("User Metadata", exact=True).click()
            # Summary, Details and Current Details, each rendered from its Markdown in a frame of its own.
            summary, details, current = (page.frame_locator("iframe").nth(i) for i in range(3))
            # (the UI's Markdown prints the quotes around the text as typographic ones)
            text = "translate_dialogue · ui_project · default · “Goodbye. [[sleep=60]]”"
            await expect(summary.locator("body")).to_have_text(text, timeout=30_000)
            await expect(details.locator("body")).to_contain_text("for project ui_project of tenant default")
            await expect(details.locator("body")).to_contain_text("target_language: “fr”")
            await expect(current.locator("body")).to_contain_text("translating 2/2 · 50%", timeout=30_000)
            await expect(current.locator("strong")).to_have_text("Processing")
            await _shoot(page, tmp_path / "task-user-metadata.png")
            await browser.close()
    finally:
        await ui_stack.api.delete(f"/api/v1/tasks/{task_id}")
    await wait_status(ui_stack.api, task_id, "cancelled", 30)
