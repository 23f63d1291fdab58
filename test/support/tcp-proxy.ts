import { createServer, connect, type Server, type Socket } from "node:net";

/**
 * A TCP proxy on loopback that a test can take down and bring back, to play a Postgres or Redis
 * outage without touching the shared services: `down()` resets every open connection and refuses
 * new ones (as a stopped server does), `up()` accepts again on the same port. `stall()` plays a
 * silent network instead (a host gone without a reset, a partition): connections stay open and new
 * ones are accepted, but nothing passes either way; `up()` then resets them, as a peer that
 * rebooted would.
 */
export type TcpProxy = {
  port: number;
  /** Connections passed through since the start (a reconnect shows up here). */
  readonly accepted: number;
  down(): Promise<void>;
  /** Passes nothing more, in either direction, on open and new connections, and answers nothing. */
  stall(): void;
  up(): Promise<void>;
  close(): Promise<void>;
};

export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  let server: Server | null = null;
  let port = 0;
  let stalled = false;

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        accepted++;
        if (stalled) {
          // Accepted and then ignored: the connect succeeds, no answer ever comes.
          sockets.add(client);
          client.on("error", () => client.destroy()).on("close", () => sockets.delete(client));
          return;
        }
        const upstream = connect(targetPort, targetHost);
        sockets.add(client);
        sockets.add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        const address = s.address();
        port = typeof address === "object" && address ? address.port : port;
        server = s;
        resolve();
      });
    });

  const stop = async () => {
    const s = server;
    server = null;
    // resetAndDestroy: the peer sees ECONNRESET, as when a server process dies.
    for (const socket of sockets) socket.resetAndDestroy();
    sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  await listen();
  return {
    get port() {
      return port;
    },
    get accepted() {
      return accepted;
    },
    down: stop,
    stall() {
      stalled = true;
      for (const socket of sockets) {
        // Nothing read is passed on; what was in flight is dropped, as a dead link would.
        socket.unpipe();
        socket.pause();
      }
    },
    async up() {
      if (stalled) {
        stalled = false;
        for (const socket of sockets) socket.resetAndDestroy();
        sockets.clear();
      }
      if (!server) await listen();
    },
    close: stop,
  };
}
