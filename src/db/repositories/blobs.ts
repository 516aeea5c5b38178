import { sql } from "kysely";
import type { Db } from "../database.js";
import type { BlobRow } from "../schema.js";

/**
 * The bookkeeping row of each stored blob. Together with image rows it makes garbage collection
 * safe across nodes. An upload first claims the blob (`touch`: the row is live and recently
 * touched), then writes the bytes, then commits the image row. A collector marks a blob
 * `deleting` only while no image references it and nobody touched it within the grace period,
 * then removes the bytes, then the row. An upload that meets a `deleting` row waits for the
 * collector to finish and claims afresh, so it never commits a reference to vanishing bytes.
 *
 * Across nodes the row lock decides, not the clock: an upload commits its image row in a
 * transaction that first takes the blob row's lock (`claimLive`), and a collector takes the same
 * lock (`lockCollectable`) before it looks for references. Whoever comes second waits, then sees
 * the other's outcome: the collector sees the new reference, or the upload sees `deleting` and
 * stores the bytes again. Removing bytes holds the lock of the `deleting` row (`lockDeleting`)
 * until the row is gone, so two collectors never both remove, and an upload of the same bytes
 * waits in `touch` instead of writing bytes a collector is about to delete.
 */
export class BlobsRepository {
  constructor(private readonly db: Db) {}

  /**
   * Claims the blob for an upload: creates its row live, or refreshes `touched_at` of a live row.
   * Resolves `live`, or `deleting` when a collector is removing it and the caller must retry.
   */
  async touch(sha256: string, size: number, now: string): Promise<"live" | "deleting"> {
    await this.db
      .insertInto("blobs")
      .values({ sha256, size, state: "live", created_at: now, touched_at: now })
      .onConflict((oc) => oc.column("sha256").doUpdateSet({ touched_at: now }).where("blobs.state", "=", "live"))
      .execute();
    const row = await this.db.selectFrom("blobs").select("state").where("sha256", "=", sha256).executeTakeFirst();
    return row?.state === "live" ? "live" : "deleting";
  }

  /**
   * Refreshes a live blob's `touched_at` and so takes its row lock until the transaction ends.
   * Resolves false when the blob is `deleting` or gone: its bytes cannot be relied on.
   */
  async claimLive(sha256: string, now: string): Promise<boolean> {
    const result = await this.db
      .updateTable("blobs")
      .set({ touched_at: now })
      .where("sha256", "=", sha256)
      .where("state", "=", "live")
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /**
   * Takes the row lock of a live blob not touched after `touchedBefore` (the lock `claimLive`
   * takes), waiting for an upload committing a reference to it. Resolves whether there is such a blob.
   */
  async lockCollectable(sha256: string, touchedBefore: string): Promise<boolean> {
    const result = await this.db
      .updateTable("blobs")
      .set({ state: "live" })
      .where("sha256", "=", sha256)
      .where("state", "=", "live")
      .where("touched_at", "<=", touchedBefore)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Takes the row lock of a `deleting` blob; resolves false when no such row exists (any more). */
  async lockDeleting(sha256: string): Promise<boolean> {
    const result = await this.db
      .updateTable("blobs")
      .set({ state: "deleting" })
      .where("sha256", "=", sha256)
      .where("state", "=", "deleting")
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /**
   * Marks the blob `deleting` when no image references it and it was not touched after
   * `touchedBefore`; resolves whether it did. One statement, so the check and the mark are atomic.
   */
  async markDeletingIfUnreferenced(sha256: string, touchedBefore: string): Promise<boolean> {
    const result = await this.db
      .updateTable("blobs")
      .set({ state: "deleting" })
      .where("sha256", "=", sha256)
      .where("state", "=", "live")
      .where("touched_at", "<=", touchedBefore)
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom("images").select(sql.lit(1).as("one")).where("images.sha256", "=", sha256))),
      )
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async remove(sha256: string): Promise<void> {
    await this.db.deleteFrom("blobs").where("sha256", "=", sha256).where("state", "=", "deleting").execute();
  }

  find(sha256: string): Promise<BlobRow | undefined> {
    return this.db.selectFrom("blobs").selectAll().where("sha256", "=", sha256).executeTakeFirst();
  }

  /** Blobs left `deleting` by a collector that stopped half-way; the next collection finishes them. */
  listDeleting(): Promise<BlobRow[]> {
    return this.db.selectFrom("blobs").selectAll().where("state", "=", "deleting").execute();
  }

  /** Live blobs no image references and nobody touched after `touchedBefore`: collection candidates. */
  listUnreferenced(touchedBefore: string): Promise<BlobRow[]> {
    return this.db
      .selectFrom("blobs")
      .selectAll()
      .where("state", "=", "live")
      .where("touched_at", "<=", touchedBefore)
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom("images").select(sql.lit(1).as("one")).whereRef("images.sha256", "=", "blobs.sha256"))),
      )
      .execute();
  }

  async *iterateAll(batchSize = 1000): AsyncGenerator<BlobRow> {
    let after = "";
    for (;;) {
      const rows = await this.db
        .selectFrom("blobs")
        .selectAll()
        .where("sha256", ">", after)
        .orderBy("sha256")
        .limit(batchSize)
        .execute();
      yield* rows;
      const last = rows.at(-1);
      if (!last || rows.length < batchSize) return;
      after = last.sha256;
    }
  }
}
