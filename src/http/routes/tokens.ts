import type {} from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { AppError } from "../../errors.js";
import type { Services } from "../../services/index.js";
import { errorResponses } from "../schemas.js";

interface Credentials {
  username?: unknown;
  password?: unknown;
}

/** `POST /api/token/`: exchange a username and password for a new access key, as the original did. */
export async function tokenRoutes(app: FastifyInstance, { services }: { services: Services }): Promise<void> {
  app.post<{ Body: Credentials | undefined }>("/api/token/", {
    schema: {
      summary: "Log in: exchange username and password for an access key",
      description: "Form-urlencoded or JSON `username` and `password`. Each call returns a new key.",
      tags: ["keys"],
      consumes: ["application/x-www-form-urlencoded", "application/json"],
      body: {
        type: "object",
        properties: { username: { type: "string" }, password: { type: "string" } },
      },
      response: {
        200: { type: "object", required: ["token"], properties: { token: { type: "string" } } },
        ...errorResponses(400, 429),
      },
    },
    handler: async (request) => {
      const { username, password } = request.body ?? {};
      if (typeof username !== "string" || typeof password !== "string" || username === "" || password === "") {
        throw new AppError("invalid_credentials", "Both \"username\" and \"password\" are required.");
      }
      const user = await services.accounts.checkCredentials(username, password);
      const { key } = await services.accounts.issueKey(user.id, { label: "login" });
      return { token: key };
    },
  });
}
