import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/db/database.js";
import { repositoriesContract } from "../contracts/repositories.contract.js";

repositoriesContract("SQLite", async () => {
  const dir = await mkdtemp(join(tmpdir(), "imgvault-sqlite-"));
  const database = await openDatabase({ kind: "sqlite", file: join(dir, "imgvault.sqlite") });
  return {
    database,
    async dispose() {
      await database.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
