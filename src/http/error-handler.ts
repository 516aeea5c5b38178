import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError, errorCatalogue, isAppError, type ErrorCode } from "../errors.js";

/** The body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string };
}

export const errorBodySchema = {
  $id: "ErrorBody",
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: { code: { type: "string" }, message: { type: "string" } },
    },
  },
} as const;

// Errors raised by Fastify and its plugins, mapped onto the catalogue by their code.
const frameworkErrors: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_content_type",
  FST_INVALID_MULTIPART_CONTENT_TYPE: "unsupported_content_type",
  FST_ERR_CTP_BODY_TOO_LARGE: "payload_too_large",
  FST_REQ_FILE_TOO_LARGE: "payload_too_large",
  FST_PARTS_LIMIT: "malformed_multipart",
  FST_FILES_LIMIT: "malformed_multipart",
  FST_FIELDS_LIMIT: "malformed_multipart",
  FST_PROTO_VIOLATION: "malformed_multipart",
  FST_ERR_CTP_EMPTY_JSON_BODY: "bad_request",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "bad_request",
  FST_ERR_BAD_URL: "bad_request",
  FST_ERR_ASYNC_CONSTRAINT: "bad_request",
};

/** Turns anything thrown into an `AppError`; unknown errors become a 500 that shows nothing of them. */
export function toAppError(error: unknown): AppError {
  if (isAppError(error)) return error;
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown; validationContext?: string };
  if (fastifyError.validation) {
    const where = fastifyError.validationContext ?? "request";
    return new AppError("validation_failed", `Invalid ${where}: ${stripContext(fastifyError.message ?? "")}`);
  }
  const mapped = fastifyError.code ? frameworkErrors[fastifyError.code] : undefined;
  if (mapped) return new AppError(mapped, mapped === "payload_too_large" ? undefined : errorCatalogue[mapped].message, { cause: error });
  // Busboy's own parse errors ("Unexpected end of form", "Malformed part header", …) have no code.
  if (error instanceof Error && /multipart|boundary|end of form|part header/i.test(error.message)) {
    return new AppError("malformed_multipart", undefined, { cause: error });
  }
  if (error instanceof SyntaxError && (error as { statusCode?: number }).statusCode === 400) {
    return new AppError("bad_request", "The request body is not valid JSON.", { cause: error });
  }
  const status = fastifyError.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    return new AppError("bad_request", undefined, { cause: error });
  }
  return new AppError("internal_error", undefined, { cause: error });
}

function stripContext(message: string): string {
  return message.replace(/^(body|querystring|params|headers)\s*/, "");
}

export function sendError(reply: FastifyReply, error: AppError): FastifyReply {
  reply.code(error.status).headers(error.headers).type("application/json; charset=utf-8");
  if (error.status === 401) reply.header("www-authenticate", 'Token realm="imgvault"');
  const body: ErrorBody = { error: { code: error.code, message: error.message } };
  return reply.send(body);
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const appError = toAppError(error);
    if (appError.status >= 500) request.log.error({ err: error }, "request failed");
    else request.log.info({ code: appError.code }, appError.message);
    // A client that sent too much must not have the rest of its body read into the void.
    if (appError.status === 413) reply.header("connection", "close");
    return sendError(reply, appError);
  });
  app.setNotFoundHandler((request, reply) => {
    void request;
    return sendError(reply, new AppError("not_found", "No such endpoint."));
  });
}
