import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export type ReceivedWebhook = { headers: IncomingHttpHeaders; body: string; receivedAt: number; path: string };
export type Reply = { status: number; headers?: Record<string, string>; body?: string };

/**
 * A real HTTP receiver on loopback for webhook tests: records every request and answers with
 * `reply` (200 unless changed). It can go down and come back on the same port.
 */
export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  reply: (request: ReceivedWebhook) => Reply = () => ({ status: 200 });
  #server: Server | null = null;
  #port = 0;

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    await receiver.up();
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/hooks`;
  }

  /** Listens (again, on the same port once it had one). */
  async up(): Promise<void> {
    const server = createServer((request, response) => {
      const parts: Buffer[] = [];
      request.on("data", (part: Buffer) => parts.push(part));
      request.on("end", () => {
        const received = { headers: request.headers, body: Buffer.concat(parts).toString("utf8"), receivedAt: Date.now(), path: request.url ?? "" };
        this.received.push(received);
        const reply = this.reply(received);
        response.writeHead(reply.status, reply.headers ?? {}).end(reply.body ?? "");
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Stops listening: connections are refused until up() again. */
  async down(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Resolves with the deliveries once `predicate` holds for them, or fails after `timeoutMs`. */
  async waitFor(predicate: (received: ReceivedWebhook[]) => boolean, timeoutMs = 15_000): Promise<ReceivedWebhook[]> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.received)) {
      if (Date.now() > deadline) throw new Error(`webhook receiver: condition not met after ${timeoutMs} ms (${this.received.length} received)`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return this.received;
  }

  /** The deliveries of one event type, their bodies parsed. */
  ofType(type: string): (ReceivedWebhook & { event: { type: string; timestamp: string; data: { id: string; status: string } } })[] {
    return this.received
      .map((r) => ({ ...r, event: JSON.parse(r.body) as { type: string; timestamp: string; data: { id: string; status: string } } }))
      .filter((r) => r.event.type === type);
  }
}

/**
 * Checks a delivery with the `standardwebhooks` package, an implementation we did not write;
 * throws as it does when the signature, id or timestamp do not verify.
 */
export function verifyWebhook(secret: string, received: ReceivedWebhook): unknown {
  const headers: Record<string, string> = {};
  for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) headers[name] = String(received.headers[name] ?? "");
  return new Webhook(secret).verify(received.body, headers);
}
