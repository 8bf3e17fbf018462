/** Errors of the SDK: one class per documented error body of the API, plus the outcomes of waiting. */

import type { ErrorResponse, TaskStatus } from "./types.js";

/** Base of every API error: the error body's fields, and the HTTP status (undefined when none came). */
export class TaskServiceError extends Error {
  override name = "TaskServiceError";
  /** The body's machine-readable `error` code, e.g. `validation_error`. */
  readonly error: string;
  readonly status: number | undefined;
  /** `validation_error`: a message per dotted field path (`task_data.duration`). */
  readonly details: Readonly<Record<string, string>>;
  /** `rate_limited`, `service_unavailable`: seconds to wait (the `Retry-After` header, else the body's). */
  readonly retryAfter: number | undefined;
  readonly body: ErrorResponse | undefined;

  constructor(
    message: string,
    init: { error: string; status?: number; details?: Record<string, string>; retryAfter?: number; body?: ErrorResponse },
  ) {
    super(message);
    this.error = init.error;
    this.status = init.status;
    this.details = { ...(init.details ?? {}) };
    this.retryAfter = init.retryAfter;
    this.body = init.body;
  }
}

/** The API could not be reached (connection refused, DNS, request timeout). */
export class ServiceConnectionError extends TaskServiceError {
  override name = "ServiceConnectionError";
}
/** 401 `authentication_failed`: no valid `X-API-Key` or Bearer token. */
export class AuthenticationError extends TaskServiceError {
  override name = "AuthenticationError";
}
/** 403 `forbidden`: the credential may not do this. */
export class ForbiddenError extends TaskServiceError {
  override name = "ForbiddenError";
}
/** 404 `task_not_found` (another tenant's task reads the same), or `not_found` for a path that is no route. */
export class NotFoundError extends TaskServiceError {
  override name = "NotFoundError";
}
/** 404 `task_not_found`. */
export class TaskNotFoundError extends NotFoundError {
  override name = "TaskNotFoundError";
}
/** 400 `validation_error`: `details` names each bad field by its dotted path. */
export class ValidationError extends TaskServiceError {
  override name = "ValidationError";
}
/** 400 `invalid_task_state`: e.g. cancelling a completed task, retrying an unfinished one. */
export class InvalidTaskStateError extends ValidationError {
  override name = "InvalidTaskStateError";
}
/** 413 `payload_too_large`: `limitBytes` is the most the service accepts. */
export class PayloadTooLargeError extends TaskServiceError {
  override name = "PayloadTooLargeError";
  get limitBytes(): number | undefined {
    return this.body?.limit_bytes ?? undefined;
  }
}
/** 422 `idempotency_key_reused`: the key was used with another body; `taskId` is the task it made. */
export class IdempotencyConflictError extends TaskServiceError {
  override name = "IdempotencyConflictError";
  get taskId(): string | undefined {
    return this.body?.task_id ?? undefined;
  }
}
/** 429 `rate_limited`: see `retryAfter`. */
export class RateLimitedError extends TaskServiceError {
  override name = "RateLimitedError";
}
/** 5xx other than 503. */
export class ServerError extends TaskServiceError {
  override name = "ServerError";
}
/** 503 `service_unavailable`: Temporal is unreachable or overloaded; see `retryAfter`. */
export class ServiceUnavailableError extends ServerError {
  override name = "ServiceUnavailableError";
}

/** Waiting: the task ended `failed`; `taskStatus` is its final status (`message` is its error, as the seed's). */
export class TaskFailedError extends TaskServiceError {
  override name = "TaskFailedError";
  constructor(readonly taskStatus: TaskStatus) {
    super(taskStatus.error ?? "Task failed", { error: "task_failed" });
  }
}
/** Waiting: the task ended `cancelled`. */
export class TaskCancelledError extends TaskServiceError {
  override name = "TaskCancelledError";
  constructor(readonly taskStatus: TaskStatus) {
    super("Task was cancelled", { error: "task_cancelled" });
  }
}
/** Waiting: the task did not end within the timeout; `lastStatus` is the last one seen. */
export class WaitTimeoutError extends TaskServiceError {
  override name = "WaitTimeoutError";
  constructor(
    readonly taskId: string,
    readonly timeoutMs: number,
    readonly lastStatus: TaskStatus | undefined,
  ) {
    const state = lastStatus ? ` (last status: ${lastStatus.status})` : "";
    super(`Task ${taskId} did not finish within ${timeoutMs} ms${state}`, { error: "wait_timeout" });
  }
}

type ErrorClass = new (message: string, init: ConstructorParameters<typeof TaskServiceError>[1]) => TaskServiceError;

const BY_STATUS: Readonly<Record<number, ErrorClass>> = {
  400: ValidationError,
  401: AuthenticationError,
  403: ForbiddenError,
  404: NotFoundError,
  413: PayloadTooLargeError,
  422: IdempotencyConflictError,
  429: RateLimitedError,
  503: ServiceUnavailableError,
};

// Codes whose class is narrower than their status's.
const BY_CODE: Readonly<Record<string, ErrorClass>> = {
  task_not_found: TaskNotFoundError,
  invalid_task_state: InvalidTaskStateError,
};

/** Seconds from a `Retry-After` header (seconds or an HTTP date), else from the body's `retry_after`. */
export function retryAfterSeconds(headers: Headers, body: ErrorResponse | undefined): number | undefined {
  const header = headers.get("retry-after");
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, seconds);
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.max(0, (date - Date.now()) / 1000);
  }
  return typeof body?.retry_after === "number" ? Math.max(0, body.retry_after) : undefined;
}

function asErrorBody(parsed: unknown): ErrorResponse | undefined {
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const body = parsed as Record<string, unknown>;
  return typeof body.error === "string" && typeof body.message === "string" ? (parsed as ErrorResponse) : undefined;
}

/** The error for an error answer of the API (its body already read as text). */
export function errorFromResponse(response: Response, text: string): TaskServiceError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const body = asErrorBody(parsed);
  const status = response.status;
  const cls = (body && BY_CODE[body.error]) ?? BY_STATUS[status] ?? (status >= 500 ? ServerError : TaskServiceError);
  const message = body?.message ?? `HTTP ${status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`;
  const init: ConstructorParameters<typeof TaskServiceError>[1] = { error: body?.error ?? `http_${status}`, status };
  if (body?.details) init.details = body.details;
  if (body) init.body = body;
  if (status === 429 || status === 503) {
    const retryAfter = retryAfterSeconds(response.headers, body);
    if (retryAfter !== undefined) init.retryAfter = retryAfter;
  }
  return new cls(message, init);
}
