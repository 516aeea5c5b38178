import type { ColumnDefinitionBuilder, Kysely } from "kysely";

/** Users, access keys, content-addressed blobs and images, written once for SQLite and PostgreSQL. */
export async function up(db: Kysely<unknown>, dialect: "sqlite" | "postgres"): Promise<void> {
  const serial = (builder: ColumnDefinitionBuilder) =>
    dialect === "sqlite" ? builder.primaryKey().autoIncrement() : builder.primaryKey().generatedAlwaysAsIdentity();
  const idType = dialect === "sqlite" ? "integer" : "bigint";

  await db.schema
    .createTable("users")
    .addColumn("id", idType, serial)
    .addColumn("username", "text", (c) => c.notNull().unique())
    .addColumn("password_hash", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("access_keys")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("user_id", idType, (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("key_hash", "text", (c) => c.notNull().unique())
    .addColumn("display_prefix", "text", (c) => c.notNull())
    .addColumn("label", "text", (c) => c.notNull())
    .addColumn("scope", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("last_used_at", "text")
    .addColumn("expires_at", "text")
    .addColumn("revoked_at", "text")
    .execute();
  await db.schema.createIndex("access_keys_user").on("access_keys").column("user_id").execute();

  await db.schema
    .createTable("blobs")
    .addColumn("sha256", "text", (c) => c.primaryKey())
    .addColumn("size", "bigint", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull().defaultTo("live"))
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("touched_at", "text", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("images")
    .addColumn("id", idType, serial)
    .addColumn("user_id", idType, (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("sha256", "text", (c) => c.notNull().references("blobs.sha256"))
    .addColumn("content_type", "text", (c) => c.notNull())
    .addColumn("format", "text", (c) => c.notNull())
    .addColumn("width", "integer", (c) => c.notNull())
    .addColumn("height", "integer", (c) => c.notNull())
    .addColumn("pages", "integer", (c) => c.notNull())
    .addColumn("bytes", "bigint", (c) => c.notNull())
    .addColumn("has_gps", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("metadata", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addUniqueConstraint("images_user_name", ["user_id", "name"])
    .execute();
  // Keyset pagination walks (user_id, id) backwards; blob references are checked by garbage collection.
  await db.schema.createIndex("images_user_id").on("images").columns(["user_id", "id"]).execute();
  await db.schema.createIndex("images_sha256").on("images").column("sha256").execute();
}
