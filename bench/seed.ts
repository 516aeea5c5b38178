/**
 * Fills a user's collection with many image rows at database speed, through the app's own
 * repositories and blob store: uploading 10,000 images over HTTP would take minutes and measure
 * nothing the upload benchmark does not. All rows share one blob, as duplicate uploads would.
 * Run while no server holds the data directory.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { loadConfig } from "../src/config.js";
import { openDatabase } from "../src/db/database.js";
import { inTransaction, repositories } from "../src/db/repositories/index.js";
import { probeImage } from "../src/processing/probe.js";
import { createBlobStore } from "../src/storage/index.js";

export async function seedImages(options: { dataDir: string; username: string; count: number; file: string }): Promise<void> {
  const config = loadConfig({ IMGVAULT_DATA_DIR: options.dataDir });
  const database = await openDatabase(config.database);
  const blobs = createBlobStore(config.storage);
  try {
    const repos = repositories(database.db);
    const user = await repos.users.findByUsername(options.username);
    if (!user) throw new Error(`seed: no user "${options.username}"`);
    const bytes = await readFile(options.file);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const info = await probeImage(options.file, { maxPixels: config.maxPixels, maxFrames: config.maxFrames });
    const start = Date.now() - options.count * 1000;
    await repos.blobs.touch(sha256, bytes.length, new Date(start).toISOString());
    await blobs.putFile(options.file, sha256, bytes.length);
    await inTransaction(database.db, async (trx) => {
      for (let index = 0; index < options.count; index += 1) {
        const at = new Date(start + index * 1000).toISOString();
        await trx.images.insert({
          user_id: user.id,
          name: `seed-${String(index).padStart(5, "0")}.png`,
          sha256,
          content_type: info.contentType,
          format: info.format,
          width: info.width,
          height: info.height,
          pages: info.pages,
          bytes: bytes.length,
          has_gps: 0,
          metadata: null,
          created_at: at,
          updated_at: at,
        });
      }
    });
  } finally {
    await blobs.close();
    await database.close();
  }
}
