import type { Generated, Insertable, Selectable } from "kysely";

/** Table types shared by every dialect. Timestamps are ISO-8601 UTC strings so they sort as text. */
export interface Database {
  users: UsersTable;
  access_keys: AccessKeysTable;
  blobs: BlobsTable;
  images: ImagesTable;
}

export interface UsersTable {
  id: Generated<number>;
  username: string;
  password_hash: string;
  created_at: string;
}

export type KeyScope = "read" | "read-write";

export interface AccessKeysTable {
  /** Public identifier, safe to show and to use in URLs. */
  id: string;
  user_id: number;
  /** SHA-256 (hex) of the secret key; the secret itself is never stored. */
  key_hash: string;
  /** The first characters of the key, so a person can tell keys apart. */
  display_prefix: string;
  label: string;
  scope: KeyScope;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at: string | null;
}

export type BlobState = "live" | "deleting";

export interface BlobsTable {
  sha256: string;
  size: number;
  /** `deleting` while garbage collection removes the bytes; uploads wait for it to finish. */
  state: BlobState;
  created_at: string;
  /** Last time an upload claimed these bytes; collection spares blobs touched within its grace period. */
  touched_at: string;
}

export interface ImagesTable {
  id: Generated<number>;
  user_id: number;
  name: string;
  sha256: string;
  content_type: string;
  format: string;
  width: number;
  height: number;
  pages: number;
  bytes: number;
  has_gps: number;
  /** JSON text: the image's metadata highlights, or null. */
  metadata: string | null;
  created_at: string;
  updated_at: string;
}

export type UserRow = Selectable<UsersTable>;
export type AccessKeyRow = Selectable<AccessKeysTable>;
export type BlobRow = Selectable<BlobsTable>;
export type ImageRow = Selectable<ImagesTable>;
export type NewImage = Insertable<ImagesTable>;
