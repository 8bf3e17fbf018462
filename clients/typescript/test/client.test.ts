/** The SDK against the real stack: submit, status, waiting, abort, the event stream, listing, batches,
 * idempotency, cancel and retry, and the typed error of each documented error body. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  AuthenticationError,
  IdempotencyConflictError,
  InvalidTaskStateError,
  PayloadTooLargeError,
  RateLimitedError,
  TaskCancelledError,
  TaskFailedError,
  TaskNotFoundError,
  TaskServiceError,
  ValidationError,
  WaitTimeoutError,
  isFinished,
  ref,
  type TaskEvent,
  type TaskStatus,
} from "../src/index.js";
import { API_URL, client, freshProject, prompt, recordingFetch } from "./stack.js";

const tasks = client();

describe("seed 001's TaskService methods", () => {
  test("submitTask, getTaskStatus and pollTaskUntilComplete with progress", async () => {
    const project = freshProject("poll");
    const submitted = await tasks.submitTask(prompt(project, "Create a character"));
    assert.equal(submitted.project_id, project);
    assert.equal(submitted.replayed, false);
    const status = await tasks.getTaskStatus(submitted.task_id);
    assert.equal(status.task_id, submitted.task_id);
    const seen: TaskStatus[] = [];
    const done = await tasks.pollTaskUntilComplete(submitted.task_id, (s) => seen.push(s), 500);
    assert.equal(done.status, "completed");
    assert.match(String(done.result?.output), /^FAKE-LLM: Create a character/);
    assert.equal(seen.at(-1)?.status, "completed");
  });

  test("pollTaskUntilComplete rejects with the task's error when it fails, as the seed's did", async () => {
    // The echo model answers 400: an upstream client error, not retried.
    const { task_id } = await tasks.submitTask(prompt(freshProject("fail"), "refused [[status=400]]"));
    await assert.rejects(tasks.pollTaskUntilComplete(task_id), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.taskStatus.status, "failed");
      assert.equal(err.message, err.taskStatus.error);
      return true;
    });
  });
});

describe("waiting", () => {
  test("waitForCompletion waits on the server: waiting reads with the last ETag", async () => {
    const recorder = recordingFetch();
    const recorded = client({ fetch: recorder.fetch });
    const { task_id } = await tasks.submitTask(prompt(freshProject("wait"), "slow [[sleep=2]]"));
    const done = await recorded.waitForCompletion(task_id, { timeoutMs: 120_000 });
    assert.equal(done.status, "completed");
    const reads = recorder.calls.filter((c) => c.url.pathname.endsWith("/status"));
    assert.ok(reads.length >= 1 && reads.length <= 4, `one read per change of status, got ${reads.length}`);
    assert.ok(reads.every((r) => r.url.searchParams.get("wait") === "60.00"));
    assert.ok(reads.slice(1).every((r) => r.etag !== null), "each read after the first sends the ETag it got");
  });

  test("submitTask with waitSeconds answers with the finished task (Prefer: wait)", async () => {
    const result = await tasks.submitTask(prompt(freshProject("prefer"), "quick"), { waitSeconds: 30 });
    assert.ok(isFinished(result), `expected the finished status, got ${JSON.stringify(result)}`);
    assert.equal(result.status, "completed");
    assert.match(String(result.result?.output), /^FAKE-LLM: quick/);
  });

  test("an AbortSignal stops waiting at once; timeoutMs gives a WaitTimeoutError", async () => {
    const { task_id } = await tasks.submitTask(prompt(freshProject("abort"), "slow [[sleep=30]]"));
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const started = Date.now();
      await assert.rejects(tasks.waitForCompletion(task_id, { signal: controller.signal }), { name: "AbortError" });
      assert.ok(Date.now() - started < 5000, "the abort ends the waiting read, not the server's wait");
      await assert.rejects(tasks.waitForCompletion(task_id, { timeoutMs: 700 }), (err: unknown) => {
        assert.ok(err instanceof WaitTimeoutError);
        assert.equal(err.taskId, task_id);
        assert.ok(err.lastStatus && !["completed", "failed", "cancelled"].includes(err.lastStatus.status));
        return true;
      });
    } finally {
      await tasks.cancelTask(task_id);
    }
    await assert.rejects(tasks.waitForCompletion(task_id, { timeoutMs: 30_000 }), TaskCancelledError);
  });
});

describe("event stream", () => {
  test("streamTask yields typed status events up to the terminal one", async () => {
    const { task_id } = await tasks.submitTask(prompt(freshProject("stream"), "streamed [[sleep=1]]"));
    const events: TaskEvent[] = [];
    for await (const event of tasks.streamTask(task_id)) events.push(event);
    assert.ok(events.length >= 2, `several events, got ${events.length}`);
    assert.ok(events.every((e) => e.task_id === task_id));
    assert.equal(events.at(-1)?.status, "completed");
    assert.ok(events.slice(0, -1).every((e) => e.status !== "completed"));
  });

  test("a tenant's streams beyond its limit are refused with 429 and retryAfter", async () => {
    const { task_id } = await tasks.submitTask(prompt(freshProject("streams"), "held open [[sleep=30]]"));
    const controller = new AbortController();
    const open: AsyncGenerator<unknown>[] = [];
    try {
      // MAX_STREAMS_PER_TENANT (20) streams, each read to its first event so that it holds its slot.
      for (let i = 0; i < 20; i++) {
        const stream = tasks.streamTask(task_id, { signal: controller.signal });
        await stream.next();
        open.push(stream);
      }
      const refused = client({ maxRetries: 0 }).streamTask(task_id);
      await assert.rejects(refused.next(), (err: unknown) => {
        assert.ok(err instanceof RateLimitedError, String(err));
        assert.equal(err.status, 429);
        assert.equal(err.error, "rate_limited");
        assert.ok(typeof err.retryAfter === "number" && err.retryAfter > 0);
        return true;
      });
    } finally {
      controller.abort();
      await Promise.allSettled(open.map((stream) => stream.return(undefined)));
      await tasks.cancelTask(task_id);
    }
  });
});

describe("listing and batches", () => {
  test("submitBatch: each item on its own; listProjectTasks iterates the pages", async () => {
    const project = freshProject("list");
    const bad = { project_id: project, task_type: "test_prompt", task_data: {} } as never;
    const batch = await tasks.submitBatch([prompt(project, "one"), bad, prompt(project, "two"), prompt(project, "three")]);
    assert.equal(batch.created, 3);
    assert.equal(batch.failed, 1);
    assert.equal(batch.results[1]?.error?.error, "validation_error");
    const ids = batch.results.flatMap((r) => (r.task ? [r.task.task_id] : []));
    // Listings read Temporal's visibility, which records a start a moment after the submit answered.
    for (let tries = 0; (await tasks.getProjectTasksPage(project, 1)).pagination.total < 3; tries++) {
      assert.ok(tries < 100, "the batch's tasks are listed within 10 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const pages = [];
    for await (const page of tasks.listProjectTasks(project, { pageSize: 2 })) pages.push(page);
    assert.equal(pages.length, 2);
    assert.deepEqual(pages.map((p) => p.tasks.length), [2, 1]);
    assert.deepEqual(new Set(pages.flatMap((p) => p.tasks.map((t) => t.task_id))), new Set(ids));
    assert.equal(pages[0]?.pagination.total, 3);
  });
});

describe("idempotency, cancel, retry, deadlines", () => {
  test("an Idempotency-Key repeat returns the same task; another body with it is a conflict", async () => {
    const project = freshProject("idem");
    const key = `ts-sdk-${Date.now()}-${Math.random()}`;
    const first = await tasks.submitTask(prompt(project, "once"), { idempotencyKey: key });
    const again = await tasks.submitTask(prompt(project, "once"), { idempotencyKey: key });
    assert.equal(again.task_id, first.task_id);
    assert.equal(again.replayed, true);
    await assert.rejects(tasks.submitTask(prompt(project, "another"), { idempotencyKey: key }), (err: unknown) => {
      assert.ok(err instanceof IdempotencyConflictError);
      assert.equal(err.status, 422);
      assert.equal(err.taskId, first.task_id);
      return true;
    });
  });

  test("cancelTask, then retryTask runs it again; cancelling a finished task is InvalidTaskStateError", async () => {
    const { task_id } = await tasks.submitTask(prompt(freshProject("cancel"), "to cancel [[sleep=30]]"));
    const cancelled = await tasks.cancelTask(task_id);
    assert.equal(cancelled.status, "cancelled");
    const retried = await tasks.retryTask(task_id);
    assert.equal(retried.original_task_id, task_id);
    await tasks.cancelTask(retried.new_task_id);
    const { task_id: quick } = await tasks.submitTask(prompt(freshProject("cancel"), "quick"));
    await tasks.waitForCompletion(quick, { timeoutMs: 60_000 });
    await assert.rejects(tasks.cancelTask(quick), (err: unknown) => {
      assert.ok(err instanceof InvalidTaskStateError && err instanceof ValidationError);
      assert.equal(err.error, "invalid_task_state");
      return true;
    });
  });

  test("cancelAfter sends Cancel-After: a task past its deadline ends cancelled", async () => {
    const { task_id } = await tasks.submitTask(prompt(freshProject("deadline"), "too slow [[sleep=20]]"), {
      cancelAfter: "2s",
    });
    const final = await tasks.waitForEnd(task_id, { timeoutMs: 30_000 });
    assert.equal(final.status, "cancelled");
    assert.match(String(final.error), /^DeadlineExceeded/);
  });
});

describe("typed errors", () => {
  test("401: a wrong key is an AuthenticationError", async () => {
    const stranger = client({ apiKey: "not-a-key" });
    await assert.rejects(stranger.getTaskStatus("anything"), (err: unknown) => {
      assert.ok(err instanceof AuthenticationError && err instanceof TaskServiceError);
      assert.equal(err.status, 401);
      assert.equal(err.error, "authentication_failed");
      return true;
    });
  });

  test("404: an unknown task is a TaskNotFoundError", async () => {
    await assert.rejects(tasks.getTaskStatus("no-such-task-0000"), (err: unknown) => {
      assert.ok(err instanceof TaskNotFoundError);
      assert.equal(err.status, 404);
      assert.equal(err.error, "task_not_found");
      return true;
    });
  });

  test("400: invalid task_data is a ValidationError with details by dotted path", async () => {
    const wrong = { project_id: "p", task_type: "generate_video", task_data: { scene_description: "x", duration: "long" } };
    await assert.rejects(tasks.submitTask(wrong as never), (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.status, 400);
      assert.equal(err.error, "validation_error");
      assert.ok("task_data.duration" in err.details, JSON.stringify(err.details));
      return true;
    });
  });

  test("413: a body over the limit is a PayloadTooLargeError with limitBytes", async () => {
    const huge = prompt("p", "x".repeat(2 * 1024 * 1024));
    await assert.rejects(tasks.submitTask(huge), (err: unknown) => {
      assert.ok(err instanceof PayloadTooLargeError);
      assert.equal(err.status, 413);
      assert.ok(typeof err.limitBytes === "number" && err.limitBytes > 0);
      return true;
    });
  });

  test("an unreachable API is a ServiceConnectionError, not a hang", async () => {
    const nowhere = client({ baseUrl: "http://127.0.0.1:9", maxRetries: 0, timeoutMs: 5000 });
    await assert.rejects(nowhere.getTaskStatus("x"), { name: "ServiceConnectionError" });
    assert.ok(API_URL.startsWith("http"));
  });
});

describe("pipelines", () => {
  test("submit, wait, rerun: a step fed by another's output, the unchanged one reused", async () => {
    const project = freshProject("pipeline");
    const submitted = await tasks.pipelines.submit({
      project_id: project,
      steps: [
        { id: "idea", task_type: "test_prompt", task_data: { prompt_template: "A detective" } },
        { id: "scene", task_type: "test_prompt", task_data: { prompt_template: ref("idea", "result.output") } },
      ],
    });
    assert.ok(submitted.pipeline_id?.startsWith("pl-"));
    const done = await tasks.pipelines.wait(submitted.pipeline_id ?? "", { timeoutMs: 120_000 });
    assert.equal(done.status, "completed");
    assert.match(String(done.steps[1]?.result?.output), /^FAKE-LLM: FAKE-LLM: A detective/);
    const rerun = await tasks.pipelines.rerun(done.pipeline_id, { scene: { prompt_template: "Another" } });
    assert.deepEqual(rerun.steps.map((s) => s.will), ["reuse", "render"]);
    const again = await tasks.pipelines.wait(rerun.pipeline_id ?? "", { timeoutMs: 120_000 });
    assert.equal(again.steps[0]?.task_id, done.steps[0]?.task_id);
    await assert.rejects(tasks.pipelines.get("pl-00000000-0000-4000-8000-000000000000"), { status: 404 });
  });
});
