import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import SQLite from "better-sqlite3";
import { LRUCache } from "lru-cache";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, type SqliteDatabase } from "kysely";
import pg from "pg";
import type { Config } from "../config.js";
import { migrations, type Dialect } from "./migrations/index.js";
import { TranslatingDialect } from "./translating-dialect.js";
import type { Database } from "./schema.js";

export type Db = Kysely<Database>;

export interface OpenDatabase {
  db: Db;
  dialect: Dialect;
  close(): Promise<void>;
}

// PostgreSQL returns int8 as strings to protect values past 2^53; our ids and byte counts stay far below.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10));

/** Opens the configured database and brings its schema up to date. */
export async function openDatabase(config: Config["database"]): Promise<OpenDatabase> {
  let db: Db;
  let dialect: Dialect;
  if (config.kind === "sqlite") {
    mkdirSync(dirname(config.file), { recursive: true });
    const sqlite = new SQLite(config.file);
    // WAL lets readers (the CLI, fsck, backup) run beside the server; NORMAL is durable in WAL mode
    // across process crashes, and FULL extends that to power loss, which an image store promises.
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("synchronous = FULL");
    sqlite.pragma("foreign_keys = ON");
    sqlite.pragma(`busy_timeout = ${Math.trunc(config.busyTimeoutMs ?? 5000)}`);
    db = new Kysely<Database>({ dialect: new TranslatingDialect(new SqliteDialect({ database: withStatementCache(sqlite) })) });
    dialect = "sqlite";
  } else {
    const pool = new pg.Pool({ connectionString: config.url, max: config.poolSize, connectionTimeoutMillis: config.connectTimeoutMs ?? 5000 });
    // An idle client that loses its connection must not crash the process; the pool replaces it.
    pool.on("error", () => {});
    // A client in use when its server goes away both rejects its query (answered as 503) and emits
    // `error`, which the pool listens for only on idle clients; unheard, it would crash the process.
    pool.on("connect", (client) => client.on("error", () => {}));
    db = new Kysely<Database>({ dialect: new TranslatingDialect(new PostgresDialect({ pool })) });
    dialect = "postgres";
  }
  try {
    await migrate(db, dialect);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return { db, dialect, close: () => db.destroy() };
}

async function migrate(db: Db, dialect: Dialect): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations(dialect)) },
  });
  const { error } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
}

/**
 * Kysely asks better-sqlite3 to prepare every query afresh, which was a seventh of a cached image
 * GET (bench/run.ts profile). Statements are reusable as long as none is iterated while another
 * runs it, and Kysely only ever calls `all` or `run` on them (no streaming queries here).
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const statements = new LRUCache<string, SQLite.Statement>({ max: 500 });
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let statement = statements.get(sql);
      if (!statement) {
        statement = sqlite.prepare(sql);
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}
