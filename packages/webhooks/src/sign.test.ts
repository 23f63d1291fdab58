import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { generateSecret, signatureHeader, webhookHeaders } from "./sign.ts";

const body = JSON.stringify({ type: "job.completed", data: { jobId: "job_123" } });

function headersNow(secrets: string[], payload = body) {
  return webhookHeaders({ messageId: "msg_1", timestampSeconds: Math.floor(Date.now() / 1000), body: payload, secrets });
}

describe("signing", () => {
  it("generates whsec_ secrets of 32 random bytes", () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(secret.slice(6), "base64")).toHaveLength(32);
    expect(generateSecret()).not.toBe(secret);
  });

  it("matches the example signature of the Standard Webhooks spec", () => {
    const header = signatureHeader(
      ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
      "msg_p5jXN8AQM9LWM0D4loKWxJek",
      1614265330,
      '{"test": 2432232314}',
    );
    expect(header).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });

  it("gives headers that the standardwebhooks library verifies", () => {
    const secret = generateSecret();
    const headers = headersNow([secret]);
    expect(headers).toMatchObject({ "webhook-id": "msg_1", "content-type": "application/json" });
    expect(headers["user-agent"]).toMatch(/^Coalesce-Webhooks\/\d+\.\d+\.\d+$/);
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
  });

  it("signs with both secrets during a rotation, so either verifies", () => {
    const [oldSecret, newSecret] = [generateSecret(), generateSecret()];
    const headers = headersNow([oldSecret, newSecret]);
    expect(headers["webhook-signature"]?.split(" ")).toHaveLength(2);
    expect(new Webhook(oldSecret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(new Webhook(newSecret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow("No matching signature found");
  });

  it("fails verification when the body or the id is changed", () => {
    const secret = generateSecret();
    const headers = headersNow([secret]);
    expect(() => new Webhook(secret).verify(body.replace("123", "124"), headers)).toThrow("No matching signature found");
    expect(() => new Webhook(secret).verify(body, { ...headers, "webhook-id": "msg_2" })).toThrow("No matching signature found");
  });

  it("refuses to sign without a secret, with a malformed one, or with a fractional timestamp", () => {
    expect(() => signatureHeader([], "msg_1", 1, body)).toThrow("at least one secret");
    expect(() => signatureHeader(["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "msg_1", 1, body)).toThrow('"whsec_" followed by base64');
    expect(() => signatureHeader(["whsec_not base64!"], "msg_1", 1, body)).toThrow('"whsec_" followed by base64');
    expect(() => signatureHeader([generateSecret()], "msg_1", 1.5, body)).toThrow("whole seconds");
  });
});
