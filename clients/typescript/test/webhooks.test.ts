/** verifyWebhook on deliveries the stack really sent (captured by tests/test_typescript_sdk.py's receiver),
 * and on the same delivery re-signed as a rotation and as a stale replay by the service's own signer. */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { WebhookVerificationError, verifyWebhook, type WebhookFailure } from "../src/index.js";

interface Delivery {
  headers: Record<string, string>;
  body: string;
}

interface Deliveries {
  secret: string;
  real: Delivery;
  rotated: Delivery & { secrets: string[] };
  stale: Delivery;
}

const path = process.env.TS_SDK_WEBHOOK_DELIVERIES;
if (!path) throw new Error("TS_SDK_WEBHOOK_DELIVERIES is not set: these tests run from tests/test_typescript_sdk.py");
const deliveries = JSON.parse(readFileSync(path, "utf8")) as Deliveries;
const { secret, real } = deliveries;

function refused(reason: WebhookFailure) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof WebhookVerificationError, String(err));
    assert.equal(err.reason, reason);
    return true;
  };
}

describe("verifyWebhook", () => {
  test("a real delivery verifies and gives its payload", () => {
    const payload = verifyWebhook(real.headers, real.body, secret);
    assert.equal(payload.status, "completed");
    assert.equal(real.headers["webhook-id"], `msg_${payload.task_id}_completed`);
    assert.match(String(payload.result?.output), /^FAKE-LLM:/);
  });

  test("headers as fetch's Headers, and the body as bytes, verify too", () => {
    const payload = verifyWebhook(new Headers(real.headers), new TextEncoder().encode(real.body), secret);
    assert.equal(payload.status, "completed");
  });

  test("a tampered body or a wrong secret is refused", () => {
    const tampered = real.body.replace('"completed"', '"failed"');
    assert.notEqual(tampered, real.body);
    assert.throws(() => verifyWebhook(real.headers, tampered, secret), refused("signature"));
    const other = `whsec_${Buffer.from("another-secret-of-32-bytes-long!").toString("base64")}`;
    assert.throws(() => verifyWebhook(real.headers, real.body, other), refused("signature"));
  });

  test("a delivery older than the tolerance is refused even with a good signature", () => {
    const { stale } = deliveries;
    assert.throws(() => verifyWebhook(stale.headers, stale.body, secret), refused("timestamp"));
  });

  test("missing headers are refused", () => {
    const { ["webhook-signature"]: _dropped, ...unsigned } = real.headers;
    assert.throws(() => verifyWebhook(unsigned, real.body, secret), refused("missing_headers"));
  });

  test("during a rotation a delivery signed with both secrets verifies with either", () => {
    const { rotated } = deliveries;
    assert.equal(rotated.headers["webhook-signature"]?.split(" ").length, 2);
    for (const one of rotated.secrets) assert.equal(verifyWebhook(rotated.headers, rotated.body, one).status, "completed");
    // A receiver that holds both (comma-separated) verifies a delivery of the old one.
    const [newest] = rotated.secrets;
    assert.equal(verifyWebhook(real.headers, real.body, `${newest},${secret}`).status, "completed");
    assert.equal(verifyWebhook(real.headers, real.body, [newest ?? "", secret]).status, "completed");
  });
});
