/** `tasks.pipelines`: a whole scene in one request, each step a task fed by earlier steps' outputs
 * (`submit`, `get`, `wait`, `cancel`, `retry`, `rerun`), over the generated types. */

import { WaitTimeoutError } from "./errors.js";
import type { HttpCore, RequestOptions } from "./http.js";
import type { components } from "./schema.js";

type Schemas = components["schemas"];

/** The body of `POST /api/v1/pipelines`. */
export type PipelineSubmission = Schemas["SubmitPipelineRequest"];
/** One step of a submission: a task whose `task_data` may hold references (`ref("frame")`). */
export type PipelineStepRequest = Schemas["PipelineStepRequest"];
/** What a submit (or retry, rerun, quote) answers: each step's task and what it `will` do. */
export type SubmittedPipeline = Schemas["SubmitPipelineResponse"];
/** `GET /api/v1/pipelines/{id}`: its status, progress and steps. */
export type Pipeline = Schemas["PipelineStatusResponse"];
export type PipelineStep = Schemas["PipelineStepStatus"];

/** A reference to an earlier step's output, to stand anywhere in a step's `task_data`. */
export function ref(step: string, path = "result.media_url"): { from: string; path: string } {
  return { from: step, path };
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
// One waiting read asks the server to hold it this long (it answers at once once the pipeline has ended).
const WAIT_CHUNK_S = 20;

export interface PipelineWaitOptions extends RequestOptions {
  /** Give up after this long with a `WaitTimeoutError` (default 600 000 ms). */
  timeoutMs?: number;
}

export class Pipelines {
  constructor(private readonly http: HttpCore) {}

  /** Start a pipeline; every step is checked before anything starts (`ValidationError` naming step and field). */
  async submit(body: PipelineSubmission, options: RequestOptions = {}): Promise<SubmittedPipeline> {
    return this.http.json({ method: "POST", path: "/api/v1/pipelines", body, signal: options.signal });
  }

  async get(pipelineId: string, options: RequestOptions = {}): Promise<Pipeline> {
    return this.http.json({ method: "GET", path: this.path(pipelineId), signal: options.signal });
  }

  /** The pipeline once it has ended, whatever its status (waiting on the server, a chunk at a time). */
  async wait(pipelineId: string, options: PipelineWaitOptions = {}): Promise<Pipeline> {
    const timeoutMs = options.timeoutMs ?? 600_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = Math.floor((deadline - Date.now()) / 1000);
      const wait = Math.max(0, Math.min(WAIT_CHUNK_S, left));
      const pipeline: Pipeline = await this.http.json({
        method: "GET",
        path: this.path(pipelineId),
        query: { wait },
        extraTimeoutMs: wait * 1000,
        signal: options.signal,
      });
      if (TERMINAL.has(pipeline.status)) return pipeline;
      if (left <= 1) throw new WaitTimeoutError(pipelineId, timeoutMs, undefined);
    }
  }

  /** Cancel its running and pending steps (finished ones keep their results). */
  async cancel(pipelineId: string, options: RequestOptions = {}): Promise<Pipeline> {
    return this.http.json({ method: "DELETE", path: this.path(pipelineId), signal: options.signal });
  }

  /** A new pipeline running the steps that did not complete; the completed ones are reused. */
  async retry(pipelineId: string, options: RequestOptions = {}): Promise<SubmittedPipeline> {
    return this.http.json({ method: "POST", path: this.path(pipelineId, "/retry"), signal: options.signal });
  }

  /** A new pipeline with `changes` (by step ID, task_data fields): the changed steps and those after them run. */
  async rerun(
    pipelineId: string,
    changes: Record<string, Record<string, unknown>>,
    options: RequestOptions = {},
  ): Promise<SubmittedPipeline> {
    const path = this.path(pipelineId, "/rerun");
    return this.http.json({ method: "POST", path, body: { changes }, signal: options.signal });
  }

  private path(pipelineId: string, suffix = ""): string {
    return `/api/v1/pipelines/${encodeURIComponent(pipelineId)}${suffix}`;
  }
}
