import { sql } from "kysely";
import type { Db } from "../database.js";
import type { BlobState } from "../schema.js";

/** An image as a consistency report names it: whose it is and what it claims to hold. */
export interface ImageReference {
  id: number;
  username: string;
  name: string;
  sha256: string;
  bytes: number;
}

/** How many images reference one blob, and the sizes they claim for it. */
export interface BlobReferences {
  sha256: string;
  images: number;
  minBytes: number;
  maxBytes: number;
}

/**
 * The cross-table questions `imgvault fsck` asks (images against blobs) and the two bookkeeping
 * repairs it may make. Every query reads in pages or by a bounded list of hashes, so a check of a
 * large collection runs in constant memory beside a live server.
 */
export class IntegrityRepository {
  constructor(private readonly db: Db) {}

  /** Images whose blob has no bookkeeping row, or a row a collector is removing. */
  async imagesWithoutLiveBlob(limit = 10_000): Promise<Array<ImageReference & { blobState: BlobState | null }>> {
    const rows = await this.db
      .selectFrom("images")
      .leftJoin("blobs", "blobs.sha256", "images.sha256")
      .leftJoin("users", "users.id", "images.user_id")
      .select(["images.id", "images.name", "images.sha256", "images.bytes", "users.username", "blobs.state as blobState"])
      .where((eb) => eb.or([eb("blobs.sha256", "is", null), eb("blobs.state", "<>", "live")]))
      .orderBy("images.id")
      .limit(limit)
      .execute();
    return rows.map((row) => ({ ...row, username: row.username ?? "?" }));
  }

  /** For each of `sha256s` that some image references: how many, and the sizes they claim. */
  async referencesOf(sha256s: string[]): Promise<Map<string, BlobReferences>> {
    const found = new Map<string, BlobReferences>();
    if (sha256s.length === 0) return found;
    const rows = await this.db
      .selectFrom("images")
      .select((eb) => [
        "sha256",
        eb.fn.countAll<number | string>().as("images"),
        eb.fn.min<number | string>("bytes").as("minBytes"),
        eb.fn.max<number | string>("bytes").as("maxBytes"),
      ])
      .where("sha256", "in", sha256s)
      .groupBy("sha256")
      .execute();
    for (const row of rows) {
      found.set(row.sha256, { sha256: row.sha256, images: Number(row.images), minBytes: Number(row.minBytes), maxBytes: Number(row.maxBytes) });
    }
    return found;
  }

  /** Up to `limit` images that reference `sha256`, oldest first, for naming them in a report. */
  async imagesWithSha(sha256: string, limit = 20): Promise<ImageReference[]> {
    const rows = await this.db
      .selectFrom("images")
      .leftJoin("users", "users.id", "images.user_id")
      .select(["images.id", "images.name", "images.sha256", "images.bytes", "users.username"])
      .where("images.sha256", "=", sha256)
      .orderBy("images.id")
      .limit(limit)
      .execute();
    return rows.map((row) => ({ ...row, username: row.username ?? "?" }));
  }

  /** Which of `sha256s` have a bookkeeping row. */
  async blobRowsAmong(sha256s: string[]): Promise<Set<string>> {
    if (sha256s.length === 0) return new Set();
    const rows = await this.db.selectFrom("blobs").select("sha256").where("sha256", "in", sha256s).execute();
    return new Set(rows.map((row) => row.sha256));
  }

  /**
   * Gives stored bytes that no row tracks a live bookkeeping row dated `touchedAt` (their write
   * time), so ordinary collection decides their fate under the usual grace period. Does nothing
   * when a row exists: an upload claimed the bytes meanwhile. Resolves whether it adopted them.
   */
  async adopt(sha256: string, size: number, touchedAt: string): Promise<boolean> {
    const result = await this.db
      .insertInto("blobs")
      .values({ sha256, size, state: "live", created_at: touchedAt, touched_at: touchedAt })
      .onConflict((oc) => oc.column("sha256").doNothing())
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /**
   * Returns a `deleting` blob to `live` while an image still references it (a collection that
   * should never have started). Resolves whether it did.
   */
  async revive(sha256: string): Promise<boolean> {
    const result = await this.db
      .updateTable("blobs")
      .set({ state: "live" })
      .where("sha256", "=", sha256)
      .where("state", "=", "deleting")
      .where(({ exists, selectFrom }) => exists(selectFrom("images").select(sql.lit(1).as("one")).where("images.sha256", "=", sha256)))
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }
}
