/** The one place requests are made: URL and headers, per-request timeout, caller's AbortSignal, retries of
 * 429/503 honouring `Retry-After`, and the mapping of error answers to typed errors. */

import { ServiceConnectionError, errorFromResponse, retryAfterSeconds } from "./errors.js";
import type { ErrorResponse } from "./types.js";

export const DEFAULT_URL = "http://localhost:8001";
const RETRYABLE = new Set([429, 503]);

export interface ClientOptions {
  /** The API's URL; default `TASK_SERVICE_URL`, else `NEXT_PUBLIC_TASK_SERVICE_URL` (the seed's), else
   * `http://localhost:8001`. */
  baseUrl?: string;
  /** Sent as `X-API-Key`; default `TASK_SERVICE_API_KEY`, else `CELERY_TASK_API_KEY` (the seed's). */
  apiKey?: string;
  /** Sent as `Authorization: Bearer <token>` instead of a key (JWT, see README "Tenants"). */
  bearerToken?: string;
  /** Time for one request (a waiting read gets its wait on top); default 30 000 ms. */
  timeoutMs?: number;
  /** 429 and 503 answers are retried this often (default 3), never when the server asks for a wait
   * longer than `maxRetryWaitMs` (default 10 000): the error is thrown, with its `retryAfter`. */
  maxRetries?: number;
  maxRetryWaitMs?: number;
  /** A `fetch` of your own (default: the global one). */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
}

export interface Call {
  method: "GET" | "POST" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string | undefined>;
  /** Statuses answered as results rather than errors (e.g. 304 of a waiting read). */
  accept?: readonly number[];
  /** Extra time this call may take on the server (a waiting read's wait). */
  extraTimeoutMs?: number;
  signal?: AbortSignal | undefined;
}

function env(name: string): string | undefined {
  const value = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
  return value || undefined;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export class HttpCore {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  private readonly apiKey: string | undefined;
  private readonly bearerToken: string | undefined;
  private readonly maxRetries: number;
  private readonly maxRetryWaitMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const url = options.baseUrl ?? env("TASK_SERVICE_URL") ?? env("NEXT_PUBLIC_TASK_SERVICE_URL") ?? DEFAULT_URL;
    this.baseUrl = url.replace(/\/+$/, "");
    this.apiKey = options.apiKey ?? env("TASK_SERVICE_API_KEY") ?? env("CELERY_TASK_API_KEY");
    this.bearerToken = options.bearerToken;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxRetries = Math.max(0, options.maxRetries ?? 3);
    this.maxRetryWaitMs = options.maxRetryWaitMs ?? 10_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  url(path: string, query?: Call["query"]): string {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  headers(extra?: Record<string, string | undefined>): Record<string, string> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.bearerToken) headers.Authorization = `Bearer ${this.bearerToken}`;
    else if (this.apiKey) headers["X-API-Key"] = this.apiKey;
    for (const [name, value] of Object.entries(extra ?? {})) {
      if (value !== undefined) headers[name] = value;
    }
    return headers;
  }

  /** The answer of one fetch, or a ServiceConnectionError; the caller's abort is thrown as its reason.
   * `timeoutMs` covers the whole exchange, or only the arrival of the headers with `untilHeaders` (a stream). */
  async fetch(
    url: string,
    init: RequestInit,
    timeoutMs: number,
    signal?: AbortSignal,
    untilHeaders = false,
  ): Promise<Response> {
    // AbortSignal.timeout also covers reading the body (its timer does not keep a process alive); a
    // stream's body may last as long as it likes, so its timer is cleared once the headers are in.
    const headersTimeout = new AbortController();
    const timer = untilHeaders ? setTimeout(() => headersTimeout.abort(), timeoutMs) : undefined;
    const timeout = untilHeaders ? headersTimeout.signal : AbortSignal.timeout(timeoutMs);
    const signals = signal ? [timeout, signal] : [timeout];
    try {
      return await this.fetchImpl(url, { ...init, signal: AbortSignal.any(signals) });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const kind = timeout.aborted ? "timed out" : "failed";
      const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw new ServiceConnectionError(`Request to ${this.baseUrl} ${kind}: ${cause}`, { error: "connection_error" });
    } finally {
      clearTimeout(timer);
    }
  }

  /** One API call with its retries; throws the typed error of an error answer not in `accept`. */
  async request(call: Call): Promise<Response> {
    const init: RequestInit = { method: call.method };
    const extra: Record<string, string | undefined> = { ...call.headers };
    if (call.body !== undefined) {
      init.body = JSON.stringify(call.body);
      extra["Content-Type"] = "application/json";
    }
    init.headers = this.headers(extra);
    const url = this.url(call.path, call.query);
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetch(url, init, this.timeoutMs + (call.extraTimeoutMs ?? 0), call.signal);
      } catch (err) {
        // Only reads are retried after a transport error: a POST or DELETE may have reached the server.
        const delay = err instanceof ServiceConnectionError && call.method === "GET" ? this.backoff(attempt) : undefined;
        if (delay === undefined) throw err;
        await sleep(delay, call.signal);
        continue;
      }
      if (response.ok || call.accept?.includes(response.status)) return response;
      const text = await response.text();
      const delay = this.retryDelay(response, text, attempt);
      if (delay === undefined) throw errorFromResponse(response, text);
      await sleep(delay, call.signal);
    }
  }

  async json<T>(call: Call): Promise<T> {
    const response = await this.request(call);
    return (await response.json()) as T;
  }

  private backoff(attempt: number): number | undefined {
    return attempt < this.maxRetries ? Math.min(500 * 2 ** attempt, this.maxRetryWaitMs) : undefined;
  }

  private retryDelay(response: Response, text: string, attempt: number): number | undefined {
    if (!RETRYABLE.has(response.status) || attempt >= this.maxRetries) return undefined;
    let body: ErrorResponse | undefined;
    try {
      body = JSON.parse(text) as ErrorResponse;
    } catch {
      body = undefined;
    }
    const seconds = retryAfterSeconds(response.headers, body);
    const delay = seconds === undefined ? this.backoff(attempt) : seconds * 1000;
    return delay !== undefined && delay <= this.maxRetryWaitMs ? delay : undefined;
  }
}
