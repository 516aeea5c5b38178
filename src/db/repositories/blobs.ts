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
