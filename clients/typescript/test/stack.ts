/** What the tests get from tests/test_typescript_sdk.py, which starts the real stack and runs them. */

import { randomUUID } from "node:crypto";

import { TaskService, type ClientOptions, type TaskSubmission } from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: these tests run from tests/test_typescript_sdk.py (make test)`);
  return value;
}

export const API_URL = required("TASK_SERVICE_URL");
export const API_KEY = required("TASK_SERVICE_API_KEY");

export function client(options: ClientOptions = {}): TaskService {
  return new TaskService({ baseUrl: API_URL, apiKey: API_KEY, ...options });
}

/** A project of this run only, so listings see exactly this test's tasks. */
export function freshProject(name: string): string {
  return `ts-sdk-${name}-${randomUUID().slice(0, 8)}`;
}

/** A test_prompt task: the echo model answers `FAKE-LLM: ...`; `[[sleep=N]]` makes it take N seconds. */
export function prompt(projectId: string, text: string): TaskSubmission {
  return { project_id: projectId, task_type: "test_prompt", task_data: { prompt_template: text } };
}

/** A `fetch` that records each request's method and URL (and If-None-Match), to count what the SDK sends. */
export function recordingFetch(): { fetch: typeof fetch; calls: { method: string; url: URL; etag: string | null }[] } {
  const calls: { method: string; url: URL; etag: string | null }[] = [];
  const recording: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers);
    calls.push({ method: init?.method ?? "GET", url: new URL(String(input)), etag: headers.get("if-none-match") });
    return fetch(input, init);
  };
  return { fetch: recording, calls };
}
