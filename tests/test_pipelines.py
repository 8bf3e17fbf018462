"""Pipelines end to end: API → PipelineWorkflow → child TaskWorkflows on the real workers (tiny models).

Every test uses prompts and lines of its own, so no test sees another's render-cache entries.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer
from typer.testing import CliRunner

from activities.audio.files import ffmpeg_exe
from taskservice.payloads import DATA_CONVERTER
from taskservice_client import AsyncTaskServiceClient, ref
from taskservice_client.cli import app
from tests.support.file_server import StaticFileServer
from tests.support.stack import API_KEYS, OTHER_KEYS, TENANT_WEBHOOK_SECRET, Stack
from tests.support.tasks import count_workflows
from tests.support.webhook_receiver import WebhookReceiver
from workflows.pipeline import PipelineWorkflow
from workflows.pipeline_plan import PipelinePlanWorkflow

PROJECT = "pipeline_project"
TERMINAL = {"completed", "failed", "cancelled"}


def _ref(step: str, path: str = "result.media_url") -> dict[str, str]:
    return {"from": step, "path": path}


def _scene(tag: str, line1: str, **extra: Any) -> dict[str, Any]:
    """The README's scene at test sizes: a frame, a video from it, two voice lines, their mix, the clip of
    the video with the mix under it (media seeded: the cache reuses media only with an explicit seed)."""
    return {
        "project_id": PROJECT,
        "name": f"scene {tag}",
        "steps": [
            {
                "id": "frame",
                "task_type": "generate_image",
                "task_data": {
                    "prompt": f"alley {tag}",
                    "resolution": "64x64",
                    "num_inference_steps": 2,
                    "seed": 3,
                },
            },
            {
                "id": "video",
                "task_type": "generate_video",
                "task_data": {
                    "storyboard_images": [_ref("frame")],
                    "scene_description": f"walk {tag}",
                    "duration": 1,
                    "fps": 8,
                    "resolution": "64x64",
                    "num_inference_steps": 1,
                    "seed": 3,
                },
            },
            {"id": "line1", "task_type": "generate_character_voice", "task_data": {"text": line1, "seed": 1}},
            {
                "id": "line2",
                "task_type": "generate_character_voice",
                "task_data": {"text": f"Then you know why. {tag}", "seed": 1},
            },
            {
                "id": "mix",
                "task_type": "process_audio",
                "task_data": {"tracks": [{"url": _ref("line1")}, {"url": _ref("line2"), "offset_s": 0.5}]},
            },
            {
                "id": "clip",
                "task_type": "assemble_clip",
                "task_data": {"video": _ref("video"), "tracks": [{"url": _ref("mix")}], "loudness_lufs": -16},
            },
        ],
        **extra,
    }


async def _submit(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/api/v1/pipelines", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _ended(api: httpx.AsyncClient, pipeline_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await api.get(f"/api/v1/pipelines/{pipeline_id}", params={"wait": 20})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in TERMINAL:
            return body
    raise AssertionError(f"pipeline {pipeline_id} did not end in {timeout}s")


def _streams(path: Path) -> str:
    """The stream lines `ffmpeg -i` prints (imageio-ffmpeg ships no ffprobe)."""
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True)
    return "\n".join(re.findall(r"Stream #.*", done.stderr.decode("utf-8", "replace")))


def _steps(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in body["steps"]}


async def test_the_scene_completes_and_a_changed_line_rerenders_only_its_path(
    api: httpx.AsyncClient, temporal_client: Client, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    hook = webhook_receiver.url(f"/pipeline-{tag}")
    answer = await _submit(api, _scene(tag, f"I've been expecting you. {tag}", callback_url=hook))
    pipeline_id = answer["pipeline_id"]
    assert [s["id"] for s in answer["steps"]] == ["frame", "video", "line1", "line2", "mix", "clip"]
    assert {s["will"] for s in answer["steps"]} == {"render"}
    assert answer["estimated_duration_s"] > 0
    done = await _ended(api, pipeline_id)
    steps = _steps(done)
    assert done["status"] == "completed" and done["progress"] == 1.0, done
    assert all(s["status"] == "completed" and not s["cache_hit"] for s in steps.values()), steps
    # Each output fed the next: the video's task ran with the frame's URL, the mix with both lines'.
    video = (await api.get(f"/api/v1/tasks/{steps['video']['task_id']}")).json()
    assert video["pipeline_id"] == pipeline_id and video["step_id"] == "video"
    mix_status = (await api.get(f"/api/v1/tasks/{steps['mix']['task_id']}/status")).json()
    assert mix_status["step_id"] == "mix"
    assert 1.0 < steps["mix"]["result"]["metadata"]["duration"]
    # One playable file: H.264 picture and AAC sound, as long as the video.
    clip = steps["clip"]["result"]["metadata"]
    assert abs(clip["duration"] - steps["video"]["result"]["metadata"]["duration"]) < 0.2, clip
    path = tmp_path / "clip.mp4"
    path.write_bytes((await api.get(steps["clip"]["result"]["media_url"])).content)
    streams = _streams(path)
    assert "Video: h264" in streams and "Audio: aac" in streams, streams
    assert steps["video"]["result"]["media_url"] != steps["frame"]["result"]["media_url"]
    listed = (await api.get(f"/api/v1/projects/{PROJECT}/tasks", params={"limit": 100})).json()["tasks"]
    assert {t["step_id"] for t in listed if t["pipeline_id"] == pipeline_id} == set(steps)
    # The steps are tasks in visibility, by pipeline.
    query = f'WorkflowType = "TaskWorkflow" AND PipelineId = "{pipeline_id}"'
    assert await count_workflows(temporal_client, query, 6) == 6

    # The pipeline's webhook arrived once, signed with the tenant's secret.
    [delivered] = webhook_receiver.wait_for(1, timeout=30)
    Webhook(TENANT_WEBHOOK_SECRET).verify(delivered.body_bytes, delivered.headers)
    assert delivered.json["task_id"] == pipeline_id and delivered.json["status"] == "completed"
    assert [s["id"] for s in delivered.json["result"]["steps"]] == list(steps)
    await asyncio.sleep(2)
    assert len([h for h in webhook_receiver.received if h.path.endswith(tag)]) == 1

    # One line of dialogue changed: the frame, the video and the other line are cache hits.
    again = await _submit(api, _scene(tag, f"I was not expecting you. {tag}"))
    # Known before anything runs: the render cache was looked up step by step.
    assert {s["id"]: s["will"] for s in again["steps"]} == {
        "frame": "cache",
        "video": "cache",
        "line1": "render",
        "line2": "cache",
        "mix": "render",
        "clip": "render",
    }
    rerendered = _steps(await _ended(api, again["pipeline_id"]))
    hits = {step: s["cache_hit"] for step, s in rerendered.items()}
    expected = {"frame": True, "video": True, "line1": False, "line2": True, "mix": False, "clip": False}
    assert hits == expected, rerendered


async def test_a_failed_step_skips_its_dependents_and_retry_reruns_only_that_path(
    api: httpx.AsyncClient, file_server: StaticFileServer
) -> None:
    tag = uuid.uuid4().hex[:8]
    profile = file_server.url(f"/voices/{tag}.json")  # 404 until put below
    body = {
        "project_id": PROJECT,
        "steps": [
            {
                "id": "bad",
                "task_type": "generate_character_voice",
                "task_data": {"text": f"bad {tag}", "character_voice_profile": profile},
            },
            {"id": "good", "task_type": "generate_character_voice", "task_data": {"text": f"good {tag}"}},
            {"id": "mix", "task_type": "process_audio", "task_data": {"tracks": [{"url": _ref("bad")}]}},
            {
                "id": "good_mix",
                "task_type": "process_audio",
                "task_data": {"tracks": [{"url": _ref("good")}]},
            },
        ],
    }
    first = await _ended(api, (await _submit(api, body))["pipeline_id"])
    statuses = {step: s["status"] for step, s in _steps(first).items()}
    assert first["status"] == "failed"
    assert statuses == {"bad": "failed", "good": "completed", "mix": "skipped", "good_mix": "completed"}
    assert "404" in _steps(first)["bad"]["error"]

    file_server.put(f"/voices/{tag}.json", json.dumps({"engine": "espeak-ng"}).encode(), "application/json")
    retried = await api.post(f"/api/v1/pipelines/{first['pipeline_id']}/retry")
    assert retried.status_code == 200, retried.text
    plan = {s["id"]: s["will"] for s in retried.json()["steps"]}
    assert plan == {"bad": "render", "good": "reuse", "mix": "render", "good_mix": "reuse"}
    assert retried.json()["retry_of"] == first["pipeline_id"]
    second = await _ended(api, retried.json()["pipeline_id"])
    steps = _steps(second)
    assert second["status"] == "completed", second
    assert steps["good"]["task_id"] == _steps(first)["good"]["task_id"] and steps["good"]["reused"]
    assert steps["bad"]["task_id"] != _steps(first)["bad"]["task_id"]


async def test_cancel_mid_video_stops_the_video_and_what_follows(api: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {
        "project_id": PROJECT,
        "steps": [
            {"id": "line", "task_type": "generate_character_voice", "task_data": {"text": f"hello {tag}"}},
            {
                "id": "video",
                "task_type": "generate_video",
                "task_data": {
                    "scene_description": f"long walk {tag}",
                    "duration": 6,
                    "fps": 12,
                    "resolution": "64x64",
                    "num_inference_steps": 4,
                },
                "after": ["line"],
            },
            {
                "id": "mix",
                "task_type": "process_audio",
                "task_data": {"tracks": [{"url": _ref("line")}]},
                "after": ["video"],
            },
        ],
    }
    pipeline_id = (await _submit(api, body))["pipeline_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = _steps((await api.get(f"/api/v1/pipelines/{pipeline_id}")).json())
        if steps["video"]["status"] == "processing":
            break
        await asyncio.sleep(0.2)
    assert steps["video"]["status"] == "processing", steps
    cancelled = await api.delete(f"/api/v1/pipelines/{pipeline_id}")
    assert cancelled.status_code == 200, cancelled.text
    body = await _ended(api, pipeline_id, timeout=60)
    statuses = {step: s["status"] for step, s in _steps(body).items()}
    assert body["status"] == "cancelled"
    assert statuses == {"line": "completed", "video": "cancelled", "mix": "cancelled"}, body
    assert _steps(body)["line"]["result"]["media_url"]
    video = (await api.get(f"/api/v1/tasks/{_steps(body)['video']['task_id']}/status")).json()
    assert video["status"] == "cancelled"


async def test_validation_names_the_step_and_field(api: httpx.AsyncClient) -> None:
    voice = {"text": "hi"}

    async def refused(steps: list[dict[str, Any]]) -> dict[str, Any]:
        response = await api.post("/api/v1/pipelines", json={"project_id": PROJECT, "steps": steps})
        assert response.status_code == 400, response.text
        body: dict[str, Any] = response.json()
        assert body["error"] == "validation_error"
        return body

    cycle = await refused(
        [
            {"id": "a", "task_type": "process_audio", "task_data": {"tracks": [{"url": _ref("b")}]}},
            {"id": "b", "task_type": "process_audio", "task_data": {"tracks": [{"url": _ref("a")}]}},
        ]
    )
    assert "cycle" in cycle["message"] and "steps.a" in cycle["details"]
    unknown = await refused(
        [{"id": "m", "task_type": "process_audio", "task_data": {"tracks": [{"url": _ref("x")}]}}]
    )
    assert list(unknown["details"]) == ["steps.m.task_data.tracks.0.url"]
    never = await refused(
        [
            {"id": "v", "task_type": "generate_character_voice", "task_data": voice},
            {
                "id": "m",
                "task_type": "process_audio",
                "task_data": {"tracks": [{"url": _ref("v", "result.text")}]},
            },
        ]
    )
    assert "no field 'text'" in never["details"]["steps.m.task_data.tracks.0.url"]
    mismatched = await refused(
        [
            {"id": "v", "task_type": "generate_character_voice", "task_data": voice},
            {
                "id": "m",
                "task_type": "process_audio",
                "task_data": {"tracks": [{"url": _ref("v", "result.cache")}]},
            },
        ]
    )
    assert list(mismatched["details"]) == ["steps.m.task_data.tracks.0.url"]
    too_many = await refused(
        [{"id": f"s{i}", "task_type": "generate_character_voice", "task_data": voice} for i in range(51)]
    )
    assert "MAX_PIPELINE_STEPS" in too_many["message"]
    quoted = await api.post(
        "/api/v1/pipelines/quote",
        json={
            "project_id": PROJECT,
            "steps": [{"id": "v", "task_type": "generate_character_voice", "task_data": voice}],
        },
    )
    assert quoted.status_code == 200 and quoted.json()["pipeline_id"] is None, quoted.text


async def test_another_tenant_finds_no_pipeline(api: httpx.AsyncClient, stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {
        "project_id": PROJECT,
        "steps": [{"id": "v", "task_type": "generate_character_voice", "task_data": {"text": f"mine {tag}"}}],
    }
    pipeline_id = (await _submit(api, body))["pipeline_id"]
    missing = f"pl-{uuid.uuid4()}"
    async with httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": OTHER_KEYS[0]}) as other:
        for method, path, payload in (
            ("GET", "/api/v1/pipelines/{id}", None),
            ("GET", "/api/v1/pipelines/{id}?wait=5", None),
            ("DELETE", "/api/v1/pipelines/{id}", None),
            ("POST", "/api/v1/pipelines/{id}/retry", None),
            ("POST", "/api/v1/pipelines/{id}/rerun", {"changes": {}}),
        ):
            theirs = await other.request(method, path.format(id=pipeline_id), json=payload)
            nothing = await other.request(method, path.format(id=missing), json=payload)
            assert theirs.status_code == nothing.status_code == 404, theirs.text
            assert theirs.json()["error"] == "pipeline_not_found"
            assert theirs.text.replace(pipeline_id, "<id>") == nothing.text.replace(missing, "<id>")
        listed = await other.get(f"/api/v1/projects/{PROJECT}/pipelines")
        assert listed.status_code == 200 and pipeline_id not in listed.text
    done = await _ended(api, pipeline_id)
    assert done["status"] == "completed"  # the other tenant's cancel changed nothing
    mine = await api.get(
        f"/api/v1/projects/{PROJECT}/pipelines", params={"status": "completed", "limit": 100}
    )
    assert pipeline_id in {p["pipeline_id"] for p in mine.json()["pipelines"]}


async def _pipeline_events(api: httpx.AsyncClient, pipeline_id: str, seconds: float) -> list[dict[str, Any]]:
    """The stream's `pipeline` events until `end` (or `seconds`)."""
    events: list[dict[str, Any]] = []
    async with (
        asyncio.timeout(seconds),
        api.stream("GET", f"/api/v1/pipelines/{pipeline_id}/events") as response,
    ):
        assert response.status_code == 200
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "pipeline":
                events.append(json.loads(line[6:]))
            elif name == "end":
                break
    return events


async def test_the_sdks_cli_and_stream_follow_a_pipeline(api: httpx.AsyncClient, stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    steps = [
        {
            "id": "line",
            "task_type": "generate_character_voice",
            "task_data": {"text": f"sdk {tag}", "seed": 2},
        },
        {"id": "mix", "task_type": "process_audio", "task_data": {"tracks": [{"url": ref("line")}]}},
    ]
    async with AsyncTaskServiceClient(stack.api_url, API_KEYS[0]) as client:
        submitted = await client.pipelines.submit(PROJECT, steps, name=f"sdk {tag}")
        assert submitted.pipeline_id is not None and [s.will for s in submitted.steps] == ["render", "render"]
        events = await _pipeline_events(api, submitted.pipeline_id, 120)
        done = await client.pipelines.wait(submitted.pipeline_id, timeout=60)
        assert done.status == "completed" and done.step("mix").result is not None
        assert events[-1]["status"] == "completed" and events[0]["status"] in {"queued", "processing"}
        order = [["queued", "processing", "completed"].index(e["status"]) for e in events]
        assert order == sorted(order), events
        rerun = await client.pipelines.rerun(submitted.pipeline_id, {"line": {"text": f"sdk again {tag}"}})
        assert [s.will for s in rerun.steps] == [
            "render",
            "render",
        ] and rerun.retry_of == submitted.pipeline_id
        again = await client.pipelines.wait(rerun.pipeline_id or "", timeout=120)
        assert again.status == "completed" and not again.step("mix").cache_hit
    args = ["--url", stack.api_url, "--api-key", API_KEYS[0], "pipeline"]
    shown = CliRunner().invoke(app, [*args, "status", again.pipeline_id])
    assert shown.exit_code == 0 and "completed" in shown.output and "mix" in shown.output, shown.output
    body = json.dumps({"project_id": PROJECT, "steps": steps[:1]})
    watched = CliRunner().invoke(app, ["--json", *args, "submit", "--data", body, "--wait"])
    assert watched.exit_code == 0, watched.output
    assert json.loads(watched.output.strip().splitlines()[-1])["status"] == "completed"


async def test_graphql_creates_and_reads_a_pipeline(api: httpx.AsyncClient, stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    create = """mutation($input: CreatePipelineInput!) {
        createPipeline(input: $input) { id estimatedDurationS steps { id taskId will } } }"""
    steps = [
        {"id": "idea", "taskType": "test_prompt", "taskData": {"prompt_template": f"gql {tag}"}},
        {
            "id": "more",
            "taskType": "test_prompt",
            "taskData": {"prompt_template": _ref("idea", "result.output")},
        },
    ]
    created = await api.post(
        "/graphql", json={"query": create, "variables": {"input": {"projectId": PROJECT, "steps": steps}}}
    )
    assert created.status_code == 200 and "errors" not in created.json(), created.text
    pipeline_id = created.json()["data"]["createPipeline"]["id"]
    await _ended(api, pipeline_id, timeout=60)
    read = "query($id: ID!) { pipeline(id: $id) { id status steps { id status result } } }"
    body = (await api.post("/graphql", json={"query": read, "variables": {"id": pipeline_id}})).json()
    pipeline = body["data"]["pipeline"]
    assert pipeline["status"] == "completed" and pipeline["steps"][1]["result"]["output"].endswith(
        f"gql {tag}"
    )
    async with httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": OTHER_KEYS[0]}) as other:
        theirs = (await other.post("/graphql", json={"query": read, "variables": {"id": pipeline_id}})).json()
    assert theirs["errors"][0]["extensions"]["code"] == "pipeline_not_found"


async def test_on_failure_stop_cancels_the_other_branches(
    api: httpx.AsyncClient, file_server: StaticFileServer
) -> None:
    tag = uuid.uuid4().hex[:8]
    missing = file_server.url(f"/voices/missing-{tag}.json")
    body = {
        "project_id": PROJECT,
        "on_failure": "stop",
        "steps": [
            {
                "id": "slow",
                "task_type": "test_prompt",
                "task_data": {"prompt_template": f"{tag} [[sleep=20]]"},
            },
            {
                "id": "bad",
                "task_type": "generate_character_voice",
                "task_data": {"text": f"bad {tag}", "character_voice_profile": missing},
                "after": [],
            },
            {
                "id": "after_slow",
                "task_type": "test_prompt",
                "task_data": {"prompt_template": "x"},
                "after": ["slow"],
            },
        ],
    }
    pipeline_id = (await _submit(api, body))["pipeline_id"]
    started = time.monotonic()
    response = await api.get(f"/api/v1/pipelines/{pipeline_id}", headers={"Prefer": "wait=60"})
    assert response.headers.get("Preference-Applied") == "wait=60"
    done = response.json()
    statuses = {step: s["status"] for step, s in _steps(done).items()}
    assert done["status"] == "failed", done
    assert statuses == {"slow": "cancelled", "bad": "failed", "after_slow": "cancelled"}, statuses
    assert time.monotonic() - started < 20, "the slow step was cancelled, not waited for"


async def test_step_events_send_each_steps_task_webhook_then_the_pipelines(
    api: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    hook = webhook_receiver.url(f"/steps-{tag}")
    step = {"id": "only", "task_type": "test_prompt", "task_data": {"prompt_template": f"step {tag}"}}
    body = {
        "project_id": PROJECT,
        "steps": [step],
        "callback_url": hook,
        "webhook_events_filter": ["completed", "step"],
    }
    done = await _ended(api, (await _submit(api, body))["pipeline_id"], timeout=60)
    deadline = time.monotonic() + 30
    while len(mine := [h for h in webhook_receiver.received if h.path.endswith(tag)]) < 2:
        assert time.monotonic() < deadline, mine
        await asyncio.sleep(0.1)
    by_type = {h.json["task_type"]: h for h in mine if h.json is not None}
    assert by_type["test_prompt"].json["task_id"] == done["steps"][0]["task_id"]
    assert by_type["pipeline"].json["task_id"] == done["pipeline_id"]
    for delivered in mine:
        Webhook(TENANT_WEBHOOK_SECRET).verify(delivered.body_bytes, delivered.headers)


async def test_a_result_too_large_for_the_memo_is_read_from_its_task(api: httpx.AsyncClient) -> None:
    """A step's result over STEP_RESULT_MEMO_LIMIT stays with its task: the status, a reference to it and a
    rerun that reuses it all still see it."""
    long = "word " * 2500  # the echo model answers it back: ~12.5 kB
    body = {
        "project_id": PROJECT,
        "steps": [
            {"id": "long", "task_type": "test_prompt", "task_data": {"prompt_template": long}},
            {
                "id": "echo",
                "task_type": "test_prompt",
                "task_data": {"prompt_template": _ref("long", "result.output")},
            },
        ],
    }
    first = await _ended(api, (await _submit(api, body))["pipeline_id"], timeout=60)
    assert first["status"] == "completed", first
    assert _steps(first)["long"]["result"]["output"].endswith(long)
    assert _steps(first)["echo"]["result"]["output"].endswith(long)
    rerun = await api.post(f"/api/v1/pipelines/{first['pipeline_id']}/rerun", json={"changes": {}})
    assert [s["will"] for s in rerun.json()["steps"]] == ["reuse", "reuse"], rerun.text
    retried = await api.post(
        f"/api/v1/pipelines/{first['pipeline_id']}/rerun", json={"changes": {"echo": {"temperature": 0.5}}}
    )
    assert [s["will"] for s in retried.json()["steps"]] == ["reuse", "render"], retried.text
    second = await _ended(api, retried.json()["pipeline_id"], timeout=60)
    assert second["status"] == "completed" and _steps(second)["echo"]["result"]["output"].endswith(long), (
        second
    )


async def test_the_sessions_pipeline_histories_replay(temporal_client: Client) -> None:
    """Every pipeline (and plan) this session ran replays without a non-determinism error (runs last here)."""
    histories = []
    query = 'WorkflowType IN ("PipelineWorkflow", "PipelinePlanWorkflow") AND ExecutionStatus != "Running"'
    async for execution in temporal_client.list_workflows(query, limit=100):
        histories.append(await temporal_client.get_workflow_handle(execution.id).fetch_history())
    assert {h.workflow_id.split("-")[0] for h in histories} >= {"pl", "pipeline"}, "pipelines and plans ran"

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=[PipelineWorkflow, PipelinePlanWorkflow], data_converter=DATA_CONVERTER)
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    assert not results.replay_failures, results.replay_failures


PIPELINE_HISTORIES = Path(__file__).parent / "data" / "histories" / "pipelines"
# The checked-in outcomes: a pipeline that completed (a reference resolved, per-step and final webhooks), one
# that failed (a dependent skipped), and the plan of a re-submitted one (a hit, a miss after it).
RECORDED = {"pipeline_completed", "pipeline_failed", "pipeline_plan"}


async def test_checked_in_pipeline_histories_still_replay() -> None:
    """Histories recorded by the pipeline workflows of their day: a change must keep replaying them (or be
    versioned with workflow.patched). Rewrite them on purpose: `-m record_histories`."""
    paths = sorted(PIPELINE_HISTORIES.glob("*.json"))
    assert {p.stem for p in paths} == RECORDED
    histories = [WorkflowHistory.from_json(p.stem, p.read_text()) for p in paths]

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=[PipelineWorkflow, PipelinePlanWorkflow], data_converter=DATA_CONVERTER)
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    assert not results.replay_failures, results.replay_failures


@pytest.mark.record_histories
async def test_record_pipeline_histories(
    api: httpx.AsyncClient, temporal_client: Client, webhook_receiver: WebhookReceiver
) -> None:
    """Writes tests/data/histories/pipelines/ from the current workflows."""
    tag = uuid.uuid4().hex[:8]
    line = {
        "id": "line",
        "task_type": "generate_character_voice",
        "task_data": {"text": f"rec {tag}", "seed": 1},
    }
    mix = {"id": "mix", "task_type": "process_audio", "task_data": {"tracks": [{"url": _ref("line")}]}}
    hook = {"callback_url": webhook_receiver.url("/recorded"), "webhook_events_filter": ["completed", "step"]}
    completed = (await _submit(api, {"project_id": PROJECT, "steps": [line, mix], **hook}))["pipeline_id"]
    bad = {**line, "task_data": {"text": "x", "character_voice_profile": "http://127.0.0.1:9/none.json"}}
    failed = (await _submit(api, {"project_id": PROJECT, "steps": [bad, mix]}))["pipeline_id"]
    for pipeline_id in (completed, failed):
        await _ended(api, pipeline_id, timeout=120)
    changed = {**line, "task_data": {"text": f"rec changed {tag}", "seed": 1}}
    await _submit(api, {"project_id": PROJECT, "steps": [line, changed | {"id": "other"}]})
    plans = [e async for e in temporal_client.list_workflows('WorkflowType = "PipelinePlanWorkflow"')]
    newest_plan = max(plans, key=lambda e: e.start_time)
    PIPELINE_HISTORIES.mkdir(parents=True, exist_ok=True)
    for name, workflow_id in (
        ("pipeline_completed", completed),
        ("pipeline_failed", failed),
        ("pipeline_plan", newest_plan.id),
    ):
        history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
        text = json.dumps(json.loads(history.to_json()), indent=1, sort_keys=True)
        (PIPELINE_HISTORIES / f"{name}.json").write_text(text + "\n")
