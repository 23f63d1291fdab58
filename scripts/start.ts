// `npm start`: the API and one worker against the configured services (env, with local defaults).
// Stop with Ctrl-C; both finish what they have in hand first.
import { API_MAIN, startProcess, stopProcess, WORKER_MAIN } from "./processes.ts";

const services = [startProcess("api", API_MAIN, {}), startProcess("worker", WORKER_MAIN, {})];
let stopping = false;

async function stopAll(code: number): Promise<never> {
  stopping = true;
  await Promise.all(services.map((service) => stopProcess(service)));
  process.exit(code);
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void stopAll(0));
for (const service of services) {
  void service.exited.then((code) => {
    if (stopping) return;
    console.error(`${service.name} exited with code ${code}; stopping the others`);
    void stopAll(code ?? 1);
  });
}
