import type { Kysely, Migration } from "kysely";
import * as initial from "./001-initial.js";

export type Dialect = "sqlite" | "postgres";

/** Migrations in order. Each is written once with Kysely's schema builder for both dialects. */
export function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    "001-initial": { up: (db: Kysely<unknown>) => initial.up(db, dialect) },
  };
}
