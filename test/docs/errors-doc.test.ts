import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { errorCatalogue } from "../../src/errors.js";

test("docs/errors.md tables every code of the catalogue with its status, and nothing else", async () => {
  const doc = await readFile(new URL("../../docs/errors.md", import.meta.url), "utf8");
  const documented = new Map<string, number>();
  for (const match of doc.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)) documented.set(match[1]!, Number(match[2]));
  const catalogue = new Map(Object.entries(errorCatalogue).map(([code, entry]) => [code, entry.status]));
  assert.deepEqual([...documented].sort(), [...catalogue].sort());
});
