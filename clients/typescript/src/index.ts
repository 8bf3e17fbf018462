/** The task service's TypeScript SDK: `TaskService` (seed 001's method names), typed errors, the generated
 * OpenAPI types, and `verifyWebhook`. */

export { TaskService } from "./client.js";
export type { ListOptions, StreamOptions, SubmitOptions } from "./client.js";
export * from "./errors.js";
export type { ClientOptions, RequestOptions } from "./http.js";
export {
  Pipelines,
  ref,
  type Pipeline,
  type PipelineStep,
  type PipelineStepRequest,
  type PipelineSubmission,
  type PipelineWaitOptions,
  type SubmittedPipeline,
} from "./pipelines.js";
export type { components, operations, paths } from "./schema.js";
export * from "./types.js";
export type { WaitOptions } from "./waiting.js";
export {
  WEBHOOK_TOLERANCE_S,
  WebhookVerificationError,
  verifyWebhook,
  type WebhookFailure,
  type WebhookHeaders,
  type WebhookPayload,
} from "./webhooks.js";
