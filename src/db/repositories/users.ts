import type { Db } from "../database.js";
import { isUniqueViolation } from "../errors.js";
import { holdsNul } from "./images.js";
import type { UserRow } from "../schema.js";

/** Users and their password hashes. */
export class UsersRepository {
  constructor(private readonly db: Db) {}

  /** Inserts a user; resolves undefined when the username is already taken. */
  async create(username: string, passwordHash: string, now: string): Promise<UserRow | undefined> {
    try {
      return await this.db
        .insertInto("users")
        .values({ username, password_hash: passwordHash, created_at: now })
        .returningAll()
        .executeTakeFirstOrThrow();
    } catch (error) {
      if (isUniqueViolation(error)) return undefined;
      throw error;
    }
  }

  findByUsername(username: string): Promise<UserRow | undefined> {
    if (holdsNul(username)) return Promise.resolve(undefined);
    return this.db.selectFrom("users").selectAll().where("username", "=", username).executeTakeFirst();
  }

  findById(id: number): Promise<UserRow | undefined> {
    return this.db.selectFrom("users").selectAll().where("id", "=", id).executeTakeFirst();
  }

  async setPasswordHash(id: number, passwordHash: string): Promise<void> {
    await this.db.updateTable("users").set({ password_hash: passwordHash }).where("id", "=", id).execute();
  }

  list(): Promise<UserRow[]> {
    return this.db.selectFrom("users").selectAll().orderBy("id").execute();
  }
}
