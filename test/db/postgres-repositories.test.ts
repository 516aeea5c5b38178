/**
 * The repositories contract on a real PostgreSQL: a freshly created database per run, migrated by
 * openDatabase like production, dropped afterwards. TEST_DATABASE_URL names the server (any
 * database on it: it is used only to create and drop the test database).
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { openDatabase } from "../../src/db/database.js";
import { repositoriesContract } from "../contracts/repositories.contract.js";

const adminUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`PostgreSQL at ${redact(adminUrl)} is unreachable (set TEST_DATABASE_URL): ${String(error)}`, { cause: error });
  }
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

repositoriesContract("PostgreSQL", async () => {
  const name = `imgvault_test_${process.pid}_${randomBytes(4).toString("hex")}`;
  await admin((client) => client.query(`CREATE DATABASE "${name}"`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const dropDatabase = () => admin((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
  try {
    const database = await openDatabase({ kind: "postgres", url: url.toString(), poolSize: 8 });
    return {
      database,
      async dispose() {
        await database.close();
        await dropDatabase();
      },
    };
  } catch (error) {
    await dropDatabase();
    throw error;
  }
});
