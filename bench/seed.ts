/**
 * Fills a user's collection with many image rows at database speed, through the app's own
 * repositories and blob store: uploading 10,000 images over HTTP would take minutes and measure
 * nothing the upload benchmark does not. All rows share one blob, as duplicate uploads would.
 * Run while no server holds the data directory.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { loadConfig, type Config } from "../src/config.js";
import { openDatabase, type OpenDatabase } from "../src/db/database.js";
import { inTransaction, repositories } from "../src/db/repositories/index.js";
import { probeImage } from "../src/processing/probe.js";
import type { BlobStore } from "../src/storage/blob-store.js";
import { createBlobStore } from "../src/storage/index.js";

export async function seedImages(options: { dataDir: string; username: string; count: number; file: string }): Promise<void> {
  const config = loadConfig({ IMGVAULT_DATA_DIR: options.dataDir });
  const database = await openDatabase(config.database);
  const blobs = createBlobStore(config.storage);
  try {
    const user = await repositories(database.db).users.findByUsername(options.username);
    if (!user) throw new Error(`seed: no user "${options.username}"`);
    await seedRows(database, blobs, config, user.id, options.count, options.file);
  } finally {
    await blobs.close();
    await database.close();
  }
}

/** `count` rows of `userId` sharing the blob of `file`, inserted in transactions of 1000. */
export async function seedRows(database: OpenDatabase, blobs: BlobStore, config: Config, userId: number, count: number, file: string): Promise<void> {
  const bytes = await readFile(file);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const info = await probeImage(file, { maxPixels: config.maxPixels, maxFrames: config.maxFrames });
  const start = Date.now() - count * 1000;
  await repositories(database.db).blobs.touch(sha256, bytes.length, new Date(start).toISOString());
  await blobs.putFile(file, sha256, bytes.length);
  for (let from = 0; from < count; from += 1000) {
    await inTransaction(database.db, async (trx) => {
      for (let index = from; index < Math.min(count, from + 1000); index += 1) {
        const at = new Date(start + index * 1000).toISOString();
        await trx.images.insert({
          user_id: userId,
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
  }
}
