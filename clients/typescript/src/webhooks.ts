/** Verifying the service's webhooks, signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`), with the `standardwebhooks` package. */

import { Webhook } from "standardwebhooks";

import type { TaskState } from "./types.js";

/** Standard Webhooks' tolerance: a delivery whose timestamp is further from now is refused (replays). */
export const WEBHOOK_TOLERANCE_S = 5 * 60;

/** What a delivery carries (seed 001's success and failure payloads; `event` on start/progress events). */
export interface WebhookPayload {
  task_id: string;
  project_id: string;
  task_type?: string;
  status: TaskState;
  event?: "started" | "progress";
  progress?: number;
  current_step?: string | null;
  result?: Record<string, unknown> | null;
  processing_time?: number | null;
  completed_at?: string | null;
  error?: string | null;
  traceback?: string | null;
  failed_at?: string | null;
  cancelled_at?: string | null;
  metadata?: Record<string, unknown>;
  [field: string]: unknown;
}

/** Why a delivery was refused: headers missing, timestamp outside the tolerance, or no signature matched. */
export type WebhookFailure = "missing_headers" | "timestamp" | "signature";

export class WebhookVerificationError extends Error {
  override name = "WebhookVerificationError";
  constructor(
    readonly reason: WebhookFailure,
    message: string,
  ) {
    super(message);
  }
}

/** Headers as fetch/Next.js (`Headers`) or Node/Express (`IncomingHttpHeaders`) hand them over. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

const REQUIRED = ["webhook-id", "webhook-timestamp", "webhook-signature"] as const;

function signedHeaders(headers: WebhookHeaders): Record<(typeof REQUIRED)[number], string> {
  const read = (name: string): string | undefined => {
    if (headers instanceof Headers) return headers.get(name) ?? undefined;
    const found = Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
    return Array.isArray(found) ? found.join(" ") : found;
  };
  const [id, timestamp, signature] = REQUIRED.map(read);
  if (!id || !timestamp || !signature) {
    throw new WebhookVerificationError("missing_headers", `A signed delivery has ${REQUIRED.join(", ")}`);
  }
  return { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature };
}

function secretsOf(secret: string | readonly string[]): string[] {
  const all = (typeof secret === "string" ? secret.split(",") : [...secret]).map((s) => s.trim()).filter(Boolean);
  if (all.length === 0) throw new Error("verifyWebhook needs a secret (whsec_...)");
  return all;
}

/**
 * The delivery's payload once its signature checks out, else a `WebhookVerificationError`.
 *
 * @param headers the request's headers (`req.headers` of Next.js/fetch or Node).
 * @param rawBody the body exactly as received (`await req.text()`), before any JSON parsing.
 * @param secret your tenant's webhook secret (`whsec_...`, from `getWebhookSecret()` or
 *   `GET /api/v1/webhooks/secret`; each tenant's deliveries verify with its own only); during a rotation
 *   several, comma-separated or as an array: a delivery signed with any of them verifies.
 */
export function verifyWebhook(
  headers: WebhookHeaders,
  rawBody: string | Uint8Array,
  secret: string | readonly string[],
): WebhookPayload {
  const signed = signedHeaders(headers);
  const timestamp = Number(signed["webhook-timestamp"]);
  if (!Number.isInteger(timestamp) || Math.abs(Date.now() / 1000 - timestamp) > WEBHOOK_TOLERANCE_S) {
    throw new WebhookVerificationError(
      "timestamp",
      `webhook-timestamp is more than ${WEBHOOK_TOLERANCE_S} s from now (a replay, or a wrong clock)`,
    );
  }
  const body = typeof rawBody === "string" ? rawBody : new TextDecoder().decode(rawBody);
  // Built before trying any: a malformed secret is an error of its own, not a failed match.
  const webhooks = secretsOf(secret).map((one) => new Webhook(one));
  for (const webhook of webhooks) {
    try {
      return webhook.verify(body, signed) as WebhookPayload;
    } catch {
      // Not this secret's signature (the library's only refusal left once headers and time are checked).
    }
  }
  throw new WebhookVerificationError("signature", "No webhook-signature matches the secret");
}
