import { copyFile, link, mkdir, open, readdir, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { randomBytes } from "node:crypto";
import { AppError } from "../errors.js";
import { assertSha256, type BlobInfo, type BlobStore, type ByteRange } from "./blob-store.js";

/**
 * Blobs as files under `root/ab/cd/<sha256>`: two levels of fan-out keep directories small.
 * A blob appears by an atomic rename of a fsynced file, followed by a fsync of its directory, so
 * a crash leaves either the whole blob or none under its name.
 */
export class FsBlobStore implements BlobStore {
  readonly description: string;

  constructor(private readonly root: string) {
    this.description = `fs:${root}`;
  }

  private pathOf(sha256: string): string {
    assertSha256(sha256);
    return join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async putFile(localPath: string, sha256: string, _size: number): Promise<void> {
    const target = this.pathOf(sha256);
    const directory = dirname(target);
    const staged = `${target}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      await mkdir(directory, { recursive: true });
      try {
        // A hard link is free and leaves the caller's file in place for a retry.
        await link(localPath, staged);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EXDEV") throw error;
        await copyFile(localPath, staged);
      }
      await fsyncPath(staged);
      await rename(staged, target);
      await fsyncPath(directory);
    } catch (error) {
      await rm(staged, { force: true }).catch(() => undefined);
      throw translateFsError(error);
    }
  }

  async read(sha256: string, range?: ByteRange): Promise<Readable> {
    const path = this.pathOf(sha256);
    try {
      // Opening first turns a missing blob into a rejection before any byte is streamed.
      const handle = await open(path, "r");
      return handle.createReadStream({ start: range?.start, end: range?.end });
    } catch (error) {
      throw translateFsError(error);
    }
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    try {
      const info = await stat(this.pathOf(sha256));
      return { sha256, size: info.size, modifiedAt: info.mtime };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw translateFsError(error);
    }
  }

  async delete(sha256: string): Promise<void> {
    try {
      await unlink(this.pathOf(sha256));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw translateFsError(error);
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    for (const first of await readdirIfExists(this.root)) {
      for (const second of await readdirIfExists(join(this.root, first))) {
        for (const name of await readdirIfExists(join(this.root, first, second))) {
          if (!/^[0-9a-f]{64}$/.test(name)) continue;
          const info = await this.stat(name);
          if (info) yield info;
        }
      }
    }
  }

  /** Leftovers of a put interrupted by a crash. */
  async *listTemporaryFiles(): AsyncIterable<string> {
    for (const first of await readdirIfExists(this.root)) {
      for (const second of await readdirIfExists(join(this.root, first))) {
        for (const name of await readdirIfExists(join(this.root, first, second))) {
          if (name.endsWith(".tmp")) yield join(this.root, first, second, name);
        }
      }
    }
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
      const probe = join(this.root, `.probe-${randomBytes(6).toString("hex")}`);
      await writeFile(probe, "");
      await rm(probe, { force: true });
    } catch (error) {
      throw translateFsError(error);
    }
  }

  // Nothing is held open between calls.
  async close(): Promise<void> {}
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readdirIfExists(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return [];
    throw translateFsError(error);
  }
}

/** Maps filesystem errors onto the catalogue at the edge of the store. */
export function translateFsError(error: unknown): unknown {
  if (error instanceof AppError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return new AppError("not_found", "No blob with that hash.", { cause: error });
    case "ENOSPC":
    case "EDQUOT":
      return new AppError("insufficient_storage", undefined, { cause: error });
    case "EACCES":
    case "EPERM":
    case "EIO":
    case "EROFS":
    case "EMFILE":
    case "ENFILE":
    case "EBUSY":
      return new AppError("storage_unavailable", undefined, { headers: { "retry-after": "5" }, cause: error });
    default:
      return error;
  }
}
