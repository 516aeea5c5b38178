import type { Db } from "../database.js";
import type { AccessKeyRow } from "../schema.js";

/** Access keys, stored by the SHA-256 of their secret. */
export class AccessKeysRepository {
  constructor(private readonly db: Db) {}

  async insert(row: AccessKeyRow): Promise<void> {
    await this.db.insertInto("access_keys").values(row).execute();
  }

  findByHash(keyHash: string): Promise<AccessKeyRow | undefined> {
    return this.db.selectFrom("access_keys").selectAll().where("key_hash", "=", keyHash).executeTakeFirst();
  }

  findById(userId: number, id: string): Promise<AccessKeyRow | undefined> {
    return this.db
      .selectFrom("access_keys")
      .selectAll()
      .where("user_id", "=", userId)
      .where("id", "=", id)
      .executeTakeFirst();
  }

  listForUser(userId: number): Promise<AccessKeyRow[]> {
    return this.db
      .selectFrom("access_keys")
      .selectAll()
      .where("user_id", "=", userId)
      .orderBy("created_at", "desc")
      .orderBy("id")
      .execute();
  }

  /** Marks a live key revoked; resolves false when the user has no such live key. */
  async revoke(userId: number, id: string, now: string): Promise<boolean> {
    const result = await this.db
      .updateTable("access_keys")
      .set({ revoked_at: now })
      .where("user_id", "=", userId)
      .where("id", "=", id)
      .where("revoked_at", "is", null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async touch(id: string, now: string): Promise<void> {
    await this.db.updateTable("access_keys").set({ last_used_at: now }).where("id", "=", id).execute();
  }
}
