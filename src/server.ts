import type { FastifyInstance } from "fastify";
import { buildApp } from "./app.js";
import type { Config } from "./config.js";

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  stop(): Promise<void>;
}

/** How long in-flight requests may run after SIGTERM/SIGINT before the process exits anyway. */
const shutdownDeadlineMs = 10_000;

/**
 * The process: builds the app, listens, and on SIGTERM/SIGINT stops accepting, lets in-flight
 * requests finish (up to a deadline), closes the database and exits 0.
 */
export async function serve(config: Config): Promise<RunningServer> {
  const app = await buildApp(config);
  const url = await app.listen({ host: config.host, port: config.port });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= app.close();
    return stopping;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    app.log.info({ signal }, "shutting down");
    const deadline = setTimeout(() => {
      app.log.error("in-flight requests did not finish in time; exiting");
      process.exit(1);
    }, shutdownDeadlineMs);
    deadline.unref();
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        app.log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  return { app, url, stop };
}
