/** Names for the generated OpenAPI types (schema.ts), as Aladdin's code and seed 001 call them. */

import type { components } from "./schema.js";

type Schemas = components["schemas"];

/** A submit body: `task_data` is typed by `task_type` (a union discriminated on it). */
export type TaskSubmission = Schemas["SubmitTaskRequest"];
/** One task type's name, e.g. `"generate_video"`. */
export type TaskType = TaskSubmission["task_type"];
/** The `task_data` of one task type: `TaskData<"generate_video">`. */
export type TaskData<T extends TaskType> = Extract<TaskSubmission, { task_type: T }>["task_data"];
/** The value of a task's `status`. */
export type TaskState = Schemas["TaskStatus"];
/** `priority`: 1-3 (1 first) or a name. */
export type TaskPriority = NonNullable<TaskSubmission["priority"]>;
/** `cache`: the render cache mode (`auto`, `reuse`, `refresh`, `off`). */
export type CacheMode = Schemas["CacheMode"];
/** `result.cache` of a finished task that had a render-cache key. */
export interface ResultCache {
  hit: boolean;
  key: string;
  source_task_id?: string;
  saved_seconds?: number;
  coalesced?: boolean;
}

/** Whether a finished task's result came from the render cache (an earlier task's, or a shared render). */
export function isCacheHit(status: { result?: { [key: string]: unknown } | null }): boolean {
  const cache = status.result?.["cache"] as ResultCache | undefined;
  return cache?.hit === true;
}
/** The answer of `POST /api/v1/tasks/submit` while the task runs on. */
export type TaskResponse = Schemas["SubmitTaskResponse"];
/** The answer of a submit with `waitSeconds` whose task finished in time: its final status. */
export type FinishedTaskResponse = Schemas["FinishedSubmitResponse"];
/** The answer of `GET /api/v1/tasks/{id}/status`. */
export type TaskStatus = Schemas["TaskStatusResponse"];
export type CancelTaskResponse = Schemas["CancelTaskResponse"];
export type RetryTaskResponse = Schemas["RetryTaskResponse"];
/** Your tenant's own webhook secret (and, during a rotation, the previous one and until when it signs). */
export type WebhookSecret = Schemas["WebhookSecretResponse"];
/** One page of `GET /api/v1/projects/{id}/tasks`. */
export type ProjectTasksPage = Schemas["ProjectTasksResponse"];
export type ProjectTaskItem = Schemas["ProjectTaskItem"];
export type BatchSubmitResponse = Schemas["BatchSubmitResponse"];
export type BatchItemResult = Schemas["BatchItemResult"];
/** The body of every error answer. */
export type ErrorResponse = Schemas["ErrorResponse"];
export type HealthResponse = Schemas["HealthResponse"];

/** What `submitTask` resolves to: the submit answer (or, with `waitSeconds`, possibly the finished status),
 * and whether an `Idempotency-Key` repeat returned an existing task. */
export type SubmitResult = (TaskResponse | FinishedTaskResponse) & { replayed: boolean };

/** One `event: task` of `GET /api/v1/tasks/{id}/events`: the status fields and when they changed. */
export type TaskEvent = Omit<TaskStatus, "created_at"> & {
  created_at: string | null;
  updated_at: string | null;
};

const TERMINAL: ReadonlySet<TaskState> = new Set<TaskState>(["completed", "failed", "cancelled"]);

export function isTerminal(status: TaskState): boolean {
  return TERMINAL.has(status);
}

/** True when a `submitTask` with `waitSeconds` answered with the finished task. */
export function isFinished(result: SubmitResult): result is FinishedTaskResponse & { replayed: boolean } {
  return "progress" in result && isTerminal(result.status);
}
