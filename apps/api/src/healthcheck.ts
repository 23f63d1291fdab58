// `node apps/api/dist/healthcheck.js`: the image's HEALTHCHECK. Asks this container's API for /healthz,
// over HTTPS when the API serves it natively (TLS_CERT_FILE), and exits 0 on a 200. The certificate is
// not verified: the check talks to its own process on the loopback, by address, not by the name the
// certificate was made for. No curl in the slim image, so Node does it.
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

const tls = Boolean(process.env.TLS_CERT_FILE);
const request = tls ? httpsRequest : httpRequest;
const timer = setTimeout(() => process.exit(1), 4_000);
request({ host: "127.0.0.1", port: Number(process.env.PORT ?? 3000), path: "/healthz", rejectUnauthorized: false }, (response) => {
  clearTimeout(timer);
  process.exit(response.statusCode === 200 ? 0 : 1);
})
  .on("error", () => process.exit(1))
  .end();
