import { sql } from "kysely";
import type { Db } from "../database.js";
import { isUniqueViolation } from "../errors.js";
import type { ImageRow, NewImage } from "../schema.js";

/** The content fields that change together when an image's bytes are replaced. */
export type ImageContent = Pick<
  ImageRow,
  "sha256" | "content_type" | "format" | "width" | "height" | "pages" | "bytes" | "has_gps" | "metadata"
>;

export class NameTakenError extends Error {
  constructor() {
    super("name taken");
    this.name = "NameTakenError";
  }
}

/** Image rows, one namespace of names per user. */
export class ImagesRepository {
  constructor(private readonly db: Db) {}

  /** Inserts an image; throws `NameTakenError` when the user already has that name. */
  async insert(image: NewImage): Promise<ImageRow> {
    try {
      return await this.db.insertInto("images").values(image).returningAll().executeTakeFirstOrThrow();
    } catch (error) {
      if (isUniqueViolation(error)) throw new NameTakenError();
      throw error;
    }
  }

  findByName(userId: number, name: string): Promise<ImageRow | undefined> {
    if (holdsNul(name)) return Promise.resolve(undefined);
    return this.db
      .selectFrom("images")
      .selectAll()
      .where("user_id", "=", userId)
      .where("name", "=", name)
      .executeTakeFirst();
  }

  /** Names of the user's images of the form `<stem><anything><suffix>`, for choosing a free name. */
  async namesLike(userId: number, stem: string, suffix: string): Promise<string[]> {
    const escape = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);
    const pattern = `${escape(stem)}%${escape(suffix)}`;
    const rows = await this.db
      .selectFrom("images")
      .select("name")
      .where("user_id", "=", userId)
      .where(sql<boolean>`name like ${pattern} escape '\\'`)
      .execute();
    // SQLite's LIKE ignores ASCII case and PostgreSQL's does not; names are case-sensitive data, so
    // LIKE only narrows the rows and this exact test decides, the same on both dialects.
    return rows
      .map((row) => row.name)
      .filter((name) => name.length >= stem.length + suffix.length && name.startsWith(stem) && name.endsWith(suffix));
  }

  /** One page of the user's images, newest first, strictly older than `beforeId` when given. */
  listPage(userId: number, limit: number, beforeId?: number): Promise<ImageRow[]> {
    let query = this.db.selectFrom("images").selectAll().where("user_id", "=", userId);
    if (beforeId !== undefined) query = query.where("id", "<", beforeId);
    return query.orderBy("id", "desc").limit(limit).execute();
  }

  /** How many images the user has: a count over the (user_id, id) index, for list pages. */
  async countImages(userId: number): Promise<number> {
    const row = await this.db
      .selectFrom("images")
      .select((eb) => eb.fn.countAll<number | string>().as("images"))
      .where("user_id", "=", userId)
      .executeTakeFirstOrThrow();
    return Number(row.images);
  }

  async countForUser(userId: number): Promise<{ images: number; bytes: number }> {
    const row = await this.db
      .selectFrom("images")
      .select((eb) => [eb.fn.countAll<number | string>().as("images"), eb.fn.sum<number | string | null>("bytes").as("bytes")])
      .where("user_id", "=", userId)
      .executeTakeFirstOrThrow();
    return { images: Number(row.images), bytes: Number(row.bytes ?? 0) };
  }

  /**
   * Points the image at new content. With `expectedSha256`, only when the image still holds that
   * content (If-Match). Resolves the updated row, or undefined when no row matched.
   */
  updateContent(id: number, content: ImageContent, now: string, expectedSha256?: string): Promise<ImageRow | undefined> {
    let query = this.db.updateTable("images").set({ ...content, updated_at: now }).where("id", "=", id);
    if (expectedSha256 !== undefined) query = query.where("sha256", "=", expectedSha256);
    return query.returningAll().executeTakeFirst();
  }

  /** Renames; throws `NameTakenError` when the user already has `newName`. */
  async rename(id: number, newName: string, now: string): Promise<ImageRow | undefined> {
    try {
      return await this.db
        .updateTable("images")
        .set({ name: newName, updated_at: now })
        .where("id", "=", id)
        .returningAll()
        .executeTakeFirst();
    } catch (error) {
      if (isUniqueViolation(error)) throw new NameTakenError();
      throw error;
    }
  }

  /** Deletes the user's image by name (only if it still holds `expectedSha256`, when given). */
  delete(userId: number, name: string, expectedSha256?: string): Promise<ImageRow | undefined> {
    if (holdsNul(name)) return Promise.resolve(undefined);
    let query = this.db.deleteFrom("images").where("user_id", "=", userId).where("name", "=", name);
    if (expectedSha256 !== undefined) query = query.where("sha256", "=", expectedSha256);
    return query.returningAll().executeTakeFirst();
  }

  async *iterateAll(batchSize = 1000): AsyncGenerator<ImageRow> {
    let after = 0;
    for (;;) {
      const rows = await this.db
        .selectFrom("images")
        .selectAll()
        .where("id", ">", after)
        .orderBy("id")
        .limit(batchSize)
        .execute();
      yield* rows;
      const last = rows.at(-1);
      if (!last || rows.length < batchSize) return;
      after = last.id;
    }
  }

  async totals(): Promise<{ images: number; bytes: number }> {
    const row = await this.db
      .selectFrom("images")
      .select((eb) => [eb.fn.countAll<number | string>().as("images"), eb.fn.sum<number | string | null>("bytes").as("bytes")])
      .executeTakeFirstOrThrow();
    return { images: Number(row.images), bytes: Number(row.bytes ?? 0) };
  }
}

/**
 * No stored name holds U+0000: names refuse control characters, and PostgreSQL text cannot hold
 * it at all (it rejects the query). So a look-up of such a name finds nothing, on every dialect.
 */
export function holdsNul(text: string): boolean {
  return text.includes("\u0000");
}
