import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { translateFsError } from "../storage/fs-blob-store.js";

/** An upload written to local disk, hashed on the way, not yet part of the collection. */
export interface StagedFile {
  path: string;
  sha256: string;
  size: number;
  /** Removes the file; safe to call more than once. */
  dispose(): Promise<void>;
}

const prefix = "upload-";

/**
 * The node-local scratch directory where uploads land while they are validated. Nothing here is
 * visible to readers; files are removed when their request ends, and leftovers of a crash are
 * swept at start-up.
 */
export class StagingArea {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /**
   * Streams `source` to a new file, hashing it on the way. If the source fails (too large, client
   * gone) the file is removed and the error rethrown.
   */
  async stage(source: Readable): Promise<StagedFile> {
    const path = join(this.dir, `${prefix}${randomBytes(12).toString("hex")}`);
    const hash = createHash("sha256");
    let size = 0;
    const dispose = () => rm(path, { force: true });
    const sink = createWriteStream(path, { flags: "wx" });
    try {
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        sink,
      );
    } catch (error) {
      // A source that fails at once leaves the file's open pending: removing the file before the
      // stream has closed would let that open create it afterwards, a leftover nobody removes.
      if (!sink.closed) await new Promise<void>((resolve) => sink.once("close", () => resolve()));
      await dispose();
      throw translateFsError(error);
    }
    return { path, sha256: hash.digest("hex"), size, dispose };
  }

  /** Staged files older than `olderThanMs`: left behind by a crash. */
  async leftovers(olderThanMs: number, now = Date.now()): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const stale: string[] = [];
    for (const name of names.filter((entry) => entry.startsWith(prefix))) {
      const info = await stat(join(this.dir, name)).catch(() => undefined);
      if (info && now - info.mtimeMs >= olderThanMs) stale.push(join(this.dir, name));
    }
    return stale;
  }
}
