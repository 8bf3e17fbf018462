/** Following a task to its end with waiting reads: `GET /status?wait=N` with the `ETag` of the last answer,
 * which the server holds until the task changes (304 when the wait ends without a change). A server that
 * answers without an `ETag` does not wait: the SDK then polls every `pollIntervalMs`. */

import { TaskCancelledError, TaskFailedError, WaitTimeoutError } from "./errors.js";
import { type HttpCore, sleep } from "./http.js";
import { isTerminal, type TaskStatus } from "./types.js";

/** The longest a waiting read waits on the server (its own cap), and the time its answer gets on top. */
export const LONG_POLL_MAX_S = 60;
const LONG_POLL_GRACE_MS = 15_000;

export interface WaitOptions {
  /** Aborting it stops the wait: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Give up after this long with a `WaitTimeoutError` (default 600 000 ms; `Infinity`: never). */
  timeoutMs?: number;
  /** Called with every new status (state, progress, step, attempt or error changed), the final one last. */
  onProgress?: (status: TaskStatus) => unknown;
  /** With `onProgress`, a waiting read ends after this long so that progress shows (default 1000 ms); it
   * is also the polling interval against a server without waiting reads. */
  pollIntervalMs?: number;
  /** `false`: poll `/status` instead of waiting reads. */
  useLongPoll?: boolean;
}

class Follower {
  readonly deadline: number;
  last: TaskStatus | undefined;
  private lastKey: string | undefined;

  constructor(
    readonly taskId: string,
    readonly options: WaitOptions,
  ) {
    this.deadline = Date.now() + (options.timeoutMs ?? 600_000);
  }

  remainingMs(): number {
    return this.deadline - Date.now();
  }

  checkTime(): void {
    if (this.remainingMs() <= 0) throw new WaitTimeoutError(this.taskId, this.options.timeoutMs ?? 600_000, this.last);
  }

  /** Hand a status to `onProgress` if it is new; true when the task has ended. */
  async offer(status: TaskStatus): Promise<boolean> {
    const key = JSON.stringify([status.status, status.progress, status.current_step, status.attempt, status.error]);
    if (key !== this.lastKey || isTerminal(status.status)) {
      this.lastKey = key;
      this.last = status;
      await this.options.onProgress?.(status);
    }
    return isTerminal(status.status);
  }
}

/** The task's terminal status, whatever it is. */
export async function follow(http: HttpCore, taskId: string, options: WaitOptions): Promise<TaskStatus> {
  const follower = new Follower(taskId, options);
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const waitS = options.onProgress ? pollIntervalMs / 1000 : LONG_POLL_MAX_S;
  let etag: string | undefined;
  let waiting = options.useLongPoll ?? true;
  for (;;) {
    follower.checkTime();
    const wait = Math.max(0.05, Math.min(waitS, LONG_POLL_MAX_S, follower.remainingMs() / 1000));
    const response = await http.request({
      method: "GET",
      path: `/api/v1/tasks/${encodeURIComponent(taskId)}/status`,
      query: waiting ? { wait: wait.toFixed(2) } : undefined,
      headers: waiting && etag ? { "If-None-Match": etag } : undefined,
      accept: [304],
      extraTimeoutMs: waiting ? wait * 1000 + LONG_POLL_GRACE_MS : 0,
      signal: options.signal,
    });
    if (response.status === 304) continue;
    const status = (await response.json()) as TaskStatus;
    if (await follower.offer(status)) return status;
    etag = response.headers.get("etag") ?? undefined;
    if (waiting && etag === undefined) waiting = false; // an older server: it answered at once
    if (!waiting) {
      follower.checkTime();
      await sleep(Math.max(0, Math.min(pollIntervalMs, follower.remainingMs())), options.signal);
    }
  }
}

/** The task's status once it completed; `TaskFailedError` / `TaskCancelledError` when it ended so. */
export async function waitForCompletion(http: HttpCore, taskId: string, options: WaitOptions): Promise<TaskStatus> {
  const final = await follow(http, taskId, options);
  if (final.status === "failed") throw new TaskFailedError(final);
  if (final.status === "cancelled") throw new TaskCancelledError(final);
  return final;
}
