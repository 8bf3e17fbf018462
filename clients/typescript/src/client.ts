/** `TaskService`: seed 001's class of the same name (`submitTask`, `getTaskStatus`, `pollTaskUntilComplete`)
 * over the generated types, plus cancel, retry, listing, waiting, the event stream and batches. */

import { TaskServiceError, errorFromResponse } from "./errors.js";
import { readEvents } from "./events.js";
import { type ClientOptions, HttpCore, type RequestOptions } from "./http.js";
import { Pipelines } from "./pipelines.js";
import type {
  BatchSubmitResponse,
  CancelTaskResponse,
  ProjectTasksPage,
  RetryTaskResponse,
  WebhookSecret,
  SubmitResult,
  TaskEvent,
  TaskState,
  TaskStatus,
  TaskSubmission,
  TaskType,
} from "./types.js";
import { LONG_POLL_MAX_S, type WaitOptions, follow, waitForCompletion } from "./waiting.js";

export interface SubmitOptions extends RequestOptions {
  /** A repeat with the same key (and body) returns the same task (`replayed: true`); the same key with
   * another body throws `IdempotencyConflictError`. */
  idempotencyKey?: string;
  /** `Cancel-After`: a deadline from now (`90`, `90s`, `5m`, `1h30m`); the task is cancelled when it passes. */
  cancelAfter?: string | number;
  /** `Prefer: wait=N` (N <= 60): if the task ends within N seconds the answer is its final status
   * (see `isFinished`), else the usual submit answer after N seconds. */
  waitSeconds?: number;
}

export interface ListOptions extends RequestOptions {
  status?: TaskState;
  taskType?: TaskType;
  /** Tasks per page (1-100, default 100). */
  pageSize?: number;
}

export interface StreamOptions extends RequestOptions {}

export class TaskService {
  private readonly http: HttpCore;
  /** Pipelines: a whole scene in one request (`submit`, `get`, `wait`, `cancel`, `retry`, `rerun`). */
  readonly pipelines: Pipelines;

  constructor(options: ClientOptions = {}) {
    this.http = new HttpCore(options);
    this.pipelines = new Pipelines(this.http);
  }

  get baseUrl(): string {
    return this.http.baseUrl;
  }

  /** Start a task (`POST /api/v1/tasks/submit`). */
  async submitTask(taskData: TaskSubmission, options: SubmitOptions = {}): Promise<SubmitResult> {
    const wait = options.waitSeconds;
    const response = await this.http.request({
      method: "POST",
      path: "/api/v1/tasks/submit",
      body: taskData,
      headers: {
        "Idempotency-Key": options.idempotencyKey,
        "Cancel-After": options.cancelAfter === undefined ? undefined : String(options.cancelAfter),
        Prefer: wait === undefined ? undefined : `wait=${wait}`,
      },
      extraTimeoutMs: wait === undefined ? 0 : Math.min(wait, LONG_POLL_MAX_S) * 1000,
      signal: options.signal,
    });
    const replayed = response.headers.get("idempotent-replayed")?.toLowerCase() === "true";
    return { ...((await response.json()) as Omit<SubmitResult, "replayed">), replayed } as SubmitResult;
  }

  /** Up to 100 submit bodies at once; each item succeeds or fails on its own (`results[i]`). */
  async submitBatch(tasks: TaskSubmission[], options: RequestOptions = {}): Promise<BatchSubmitResponse> {
    return this.http.json({ method: "POST", path: "/api/v1/tasks/batch", body: { tasks }, signal: options.signal });
  }

  /** The task's status, progress, step, result or error. */
  async getTaskStatus(taskId: string, options: RequestOptions = {}): Promise<TaskStatus> {
    return this.http.json({ method: "GET", path: this.taskPath(taskId, "/status"), signal: options.signal });
  }

  /** Cancel a queued or running task (a cancelled one is fine; a finished one throws `InvalidTaskStateError`). */
  async cancelTask(taskId: string, options: RequestOptions = {}): Promise<CancelTaskResponse> {
    return this.http.json({ method: "DELETE", path: this.taskPath(taskId), signal: options.signal });
  }

  /** Run a finished task again as a new task (`new_task_id`). */
  async retryTask(taskId: string, options: RequestOptions = {}): Promise<RetryTaskResponse> {
    return this.http.json({ method: "POST", path: this.taskPath(taskId, "/retry"), signal: options.signal });
  }

  /** Your tenant's webhook secret: verify deliveries with `verifyWebhook(headers, body, secret.secret)`. */
  async getWebhookSecret(options: RequestOptions = {}): Promise<WebhookSecret> {
    return this.http.json({ method: "GET", path: "/api/v1/webhooks/secret", signal: options.signal });
  }

  /** A new webhook secret; deliveries carry the previous one's signature too until `previous_valid_until`. */
  async rotateWebhookSecret(options: RequestOptions = {}): Promise<WebhookSecret> {
    return this.http.json({ method: "POST", path: "/api/v1/webhooks/secret/rotate", signal: options.signal });
  }

  /** One page of a project's tasks, newest first. */
  async getProjectTasksPage(
    projectId: string,
    page = 1,
    options: ListOptions = {},
  ): Promise<ProjectTasksPage> {
    return this.http.json({
      method: "GET",
      path: `/api/v1/projects/${encodeURIComponent(projectId)}/tasks`,
      query: { page, limit: options.pageSize ?? 100, status: options.status, task_type: options.taskType },
      signal: options.signal,
    });
  }

  /** Every page of a project's tasks, newest first, fetched as the iteration goes:
   * `for await (const page of tasks.listProjectTasks("demo")) for (const task of page.tasks) ...`. */
  async *listProjectTasks(projectId: string, options: ListOptions = {}): AsyncGenerator<ProjectTasksPage> {
    for (let page = 1; ; page++) {
      const result = await this.getProjectTasksPage(projectId, page, options);
      yield result;
      if (result.tasks.length === 0 || page >= result.pagination.total_pages) return;
    }
  }

  /** Seed 001's method: resolves with the status once the task completed, rejects with `TaskFailedError`
   * (message: the task's error) or `TaskCancelledError`. `onProgress` gets every new status; each waiting
   * read lasts at most `pollInterval` ms, so progress shows. */
  async pollTaskUntilComplete(
    taskId: string,
    onProgress?: (status: TaskStatus) => void,
    pollInterval = 2000,
  ): Promise<TaskStatus> {
    const options: WaitOptions = { pollIntervalMs: pollInterval, timeoutMs: Infinity };
    // Without a callback there is nothing to show between changes: wait on the server up to a minute a read.
    if (onProgress) options.onProgress = onProgress;
    return waitForCompletion(this.http, taskId, options);
  }

  /** The task's status once it completed (one waiting read per change of status by default). Throws
   * `TaskFailedError` / `TaskCancelledError` when it ended so, `WaitTimeoutError` after `timeoutMs`, and the
   * signal's reason when `signal` aborts. */
  async waitForCompletion(taskId: string, options: WaitOptions = {}): Promise<TaskStatus> {
    return waitForCompletion(this.http, taskId, options);
  }

  /** The task's final status, whatever it is (no error for failed or cancelled). */
  async waitForEnd(taskId: string, options: WaitOptions = {}): Promise<TaskStatus> {
    return follow(this.http, taskId, options);
  }

  /** The task's events (`GET /api/v1/tasks/{id}/events`): its status at every change, the terminal one
   * last; a dropped connection is reopened. Leaving the loop (`break`) closes the stream. */
  async *streamTask(taskId: string, options: StreamOptions = {}): AsyncGenerator<TaskEvent> {
    let lastId: string | undefined;
    for (;;) {
      const response = await this.openEventStream(taskId, options.signal);
      let ended = false;
      try {
        for await (const event of readEvents(response.body as ReadableStream<Uint8Array>)) {
          if (event.event === "end") return;
          if (event.event !== "task" || (event.id !== undefined && event.id === lastId)) continue;
          lastId = event.id;
          const data = JSON.parse(event.data) as TaskEvent;
          ended = data.status === "completed" || data.status === "failed" || data.status === "cancelled";
          yield data;
        }
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (err instanceof TaskServiceError) throw err;
        // The connection dropped mid-stream: reopen it below.
      }
      if (ended) return;
    }
  }

  private async openEventStream(taskId: string, signal?: AbortSignal): Promise<Response> {
    const response = await this.http.fetch(
      this.http.url(this.taskPath(taskId, "/events")),
      { headers: this.http.headers({ Accept: "text/event-stream", "Cache-Control": "no-cache" }) },
      this.http.timeoutMs,
      signal,
      true,
    );
    if (!response.ok || response.body === null) throw errorFromResponse(response, await response.text());
    return response;
  }

  private taskPath(taskId: string, suffix = ""): string {
    return `/api/v1/tasks/${encodeURIComponent(taskId)}${suffix}`;
  }
}
