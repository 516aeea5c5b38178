import { randomUUID } from "node:crypto";
import formbody from "@fastify/formbody";
import multipart from "@fastify/multipart";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { Config } from "./config.js";
import { errorBodySchema, registerErrorHandling, sendError, toAppError } from "./http/error-handler.js";
import { imageObjectSchema } from "./http/presenters.js";
import { documentMultipartBodies } from "./http/schemas.js";
import { loggerOptions } from "./http/logging.js";
import { registerMetrics } from "./http/metrics.js";
import { healthRoutes } from "./http/routes/health.js";
import { imageRoutes } from "./http/routes/images.js";
import { signedUrlRoutes } from "./http/routes/signed.js";
import { tokenRoutes } from "./http/routes/tokens.js";
import { keyRoutes } from "./http/routes/keys.js";
import { registerLoginRateLimit, registerUploadConcurrencyCap, serverTimeouts } from "./http/rate-limit.js";
import { webRoutes } from "./http/routes/web.js";
import { createServices, type ServiceOverrides, type Services } from "./services/index.js";

declare module "fastify" {
  interface FastifyInstance {
    services: Services;
  }
}

export interface BuildOptions extends ServiceOverrides {
  /** Pino logger options, or false for silence (tests). */
  logger?: FastifyServerOptions["logger"];
}

/**
 * The whole HTTP application over freshly opened services. Tests build it and call `inject()`;
 * `server.ts` builds it and listens. Closing the app closes the database.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const services = await createServices(config, options);
  const app = Fastify({
    logger: loggerOptions(config.logLevel, options.logger),
    // Clients of the original send both `/image/x.png/` and `/image/x.png`.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 2048 },
    requestIdHeader: "x-request-id",
    genReqId: () => randomUUID(),
    bodyLimit: 1024 * 1024,
    ...serverTimeouts(config.timeouts),
    // URLs the router cannot decode (bad percent-encoding) are refused before routing: from the catalogue too.
    frameworkErrors: (error, _request, reply) => void sendError(reply, toAppError(error)),
  });
  app.decorate("services", services);
  scheduleHousekeeping(app, services);
  app.addHook("onClose", () => services.close());
  app.addHook("onSend", async (request, reply) => {
    reply.header("x-request-id", request.id);
    reply.header("x-content-type-options", "nosniff");
  });

  registerErrorHandling(app);
  registerMetrics(app, services);
  app.addSchema(errorBodySchema);
  app.addSchema(imageObjectSchema);
  await app.register(formbody);
  await app.register(multipart, {
    limits: {
      fileSize: config.maxUploadBytes,
      files: 5,
      fields: 20,
      fieldSize: 64 * 1024,
      parts: 30,
      headerPairs: 100,
    },
  });
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "imgvault",
        version: "0.1.0",
        description: "Store, list, render, replace and delete images. Every call carries `Authorization: Token <key>`.",
      },
      components: {
        securitySchemes: {
          token: { type: "apiKey", in: "header", name: "Authorization", description: "`Token <key>` or `Bearer <key>`" },
        },
      },
      security: [{ token: [] }],
    },
    transform: documentMultipartBodies,
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => (json.$id as string | undefined) ?? `def-${index}` },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes, { services });
  await registerLoginRateLimit(app, {
    perAddress: config.abuse.loginPerAddress,
    perUsername: config.abuse.loginPerUsername,
    windowMs: config.abuse.loginWindowMs,
    redis: services.redis,
  });
  registerUploadConcurrencyCap(app, config.abuse.uploadsPerKey);
  await app.register(tokenRoutes, { services });
  await app.register(keyRoutes, { services });
  await app.register(imageRoutes, { services });
  await app.register(signedUrlRoutes, { services });
  await app.register(webRoutes);
  return app;
}

/**
 * Collects unreferenced bytes and crash leftovers at start and then periodically. The timer does
 * not keep the process alive and stops when the app closes.
 */
function scheduleHousekeeping(app: FastifyInstance, services: Services): void {
  const { gcIntervalMs } = services.config;
  const run = () => {
    services.housekeeping().catch((error: unknown) => app.log.warn({ err: error }, "housekeeping failed"));
  };
  let timer: NodeJS.Timeout | undefined;
  app.addHook("onReady", async () => {
    run();
    if (gcIntervalMs > 0) {
      timer = setInterval(run, gcIntervalMs);
      timer.unref();
    }
  });
  app.addHook("onClose", async () => clearInterval(timer));
}
