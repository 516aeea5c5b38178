import { AppError } from "../errors.js";

/** True when the driver refused a row because it breaks a unique constraint (SQLite or PostgreSQL). */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "23505";
}

const unavailableCodes = new Set([
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_IOERR",
  "SQLITE_FULL",
  "SQLITE_CANTOPEN",
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "55000", // the database is not accepting connections (ALTER DATABASE … ALLOW_CONNECTIONS false, maintenance)
  "3D000", // the database does not exist (yet: being restored or recreated)
  "08001", // client unable to establish connection
  "08004", // server rejected the connection
  "53300", // too_many_connections
  "08000",
  "08003",
  "08006",
  "40001", // serialization_failure: safe to retry
  "40P01", // deadlock_detected: safe to retry
]);

/** Text PostgreSQL cannot hold (U+0000, invalid UTF-8): the client's input, never a fault of the database. */
const unstorableTextCodes = new Set(["22021", "22P05"]);

/**
 * Turns a driver error into the project's own: a database that is busy or gone becomes a 503 with
 * Retry-After, so the service never shows driver details and clients know to try again.
 */
export function translateDbError(error: unknown): unknown {
  if (error instanceof AppError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && unstorableTextCodes.has(code)) {
    return new AppError("bad_request", "The request holds a character that cannot be stored (such as U+0000).", { cause: error });
  }
  const message = error instanceof Error ? error.message : "";
  if (
    (typeof code === "string" && unavailableCodes.has(code)) ||
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message)
  ) {
    return new AppError("database_unavailable", undefined, { headers: { "retry-after": "1" }, cause: error });
  }
  return error;
}
