import type { FastifyReply, FastifyRequest } from "fastify";
import { AppError } from "../errors.js";
import type { AccountsService, Principal } from "../services/accounts.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The caller, set by the authentication hook on protected routes. */
    principal?: Principal;
  }
}

const authorizationPattern = /^(?:token|bearer)[ \t]+(\S+)[ \t]*$/i;
const readMethods = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * `Authorization: Token <key>` (the scheme word in any case, as the original accepted) or
 * `Bearer <key>`. A `read` key may only read: GET/HEAD/OPTIONS, or a route that declares
 * `readsOnly` (a POST that changes nothing stored, such as creating a signed URL).
 */
export function authenticate(accounts: AccountsService, options: { readsOnly?: boolean } = {}) {
  return async function authenticateRequest(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const header = request.headers.authorization;
    const match = header === undefined ? null : authorizationPattern.exec(header);
    if (!match?.[1]) throw new AppError("unauthorized");
    const principal = await accounts.authenticate(match[1]);
    if (principal.scope === "read" && !options.readsOnly && !readMethods.has(request.method)) {
      throw new AppError("forbidden", "This access key is read-only.");
    }
    request.principal = principal;
  };
}

/** The principal of a request that passed `authenticate`. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError("unauthorized");
  return request.principal;
}
