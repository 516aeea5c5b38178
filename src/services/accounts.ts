import { createHash, randomBytes } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { Db } from "../db/database.js";
import { repositories, type Repositories } from "../db/repositories/index.js";
import type { AccessKeyRow, KeyScope, UserRow } from "../db/schema.js";
import { AppError } from "../errors.js";
import type { Clock } from "./clock.js";
import { decoyPasswordHash, hashPassword, verifyPassword } from "./passwords.js";

/** Who is calling: resolved from an access key on every request. */
export interface Principal {
  userId: number;
  username: string;
  keyId: string;
  scope: KeyScope;
}

export interface IssuedKey {
  /** The secret, shown once and never stored. */
  key: string;
  row: AccessKeyRow;
}

export interface KeyOptions {
  label?: string;
  scope?: KeyScope;
  expiresAt?: Date | null;
}

/** Keys look like `ivk_…` so that secret scanners and people can recognise them. */
const keyPrefix = "ivk_";
const usernamePattern = /^[\p{L}\p{N}_.@+-]{1,150}$/u;

export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

interface CachedPrincipal {
  principal: Principal;
  expiresAt: number | null;
}

/**
 * Users, passwords and access keys. Key lookups are cached for a few seconds because every
 * request needs one; revocation on this node drops the cache entry at once, other nodes follow
 * within `principalCacheMs`.
 */
export class AccountsService {
  private readonly repos: Repositories;
  private readonly principals: LRUCache<string, CachedPrincipal>;
  private readonly lastTouched = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    principalCacheMs = 5_000,
  ) {
    this.repos = repositories(db);
    this.principals = new LRUCache({ max: 10_000, ttl: Math.max(1, principalCacheMs) });
  }

  private now(): string {
    return this.clock().toISOString();
  }

  static validateUsername(username: string): string {
    const normalised = username.normalize("NFC");
    if (!usernamePattern.test(normalised)) {
      throw new AppError(
        "validation_failed",
        "A username has 1 to 150 characters: letters, digits and @ . + - _ only.",
      );
    }
    return normalised;
  }

  static validatePassword(password: string): void {
    if (password.length === 0 || password.length > 1024) {
      throw new AppError("validation_failed", "A password has 1 to 1024 characters.");
    }
  }

  async createUser(username: string, password: string): Promise<UserRow> {
    const name = AccountsService.validateUsername(username);
    AccountsService.validatePassword(password);
    const user = await this.repos.users.create(name, await hashPassword(password), this.now());
    if (!user) throw new AppError("name_taken", `A user named "${name}" already exists.`);
    return user;
  }

  /** Returns the user, creating it with this password when it does not exist yet. */
  async ensureUser(username: string, password: string): Promise<{ user: UserRow; created: boolean }> {
    const name = AccountsService.validateUsername(username);
    AccountsService.validatePassword(password);
    const existing = await this.repos.users.findByUsername(name);
    if (existing) {
      if (!(await verifyPassword(password, existing.password_hash))) throw new AppError("invalid_credentials");
      return { user: existing, created: false };
    }
    const created = await this.repos.users.create(name, await hashPassword(password), this.now());
    // Another process created the same user between our look-up and insert: check against theirs.
    if (!created) return this.ensureUser(username, password);
    return { user: created, created: true };
  }

  async setPassword(username: string, password: string): Promise<void> {
    AccountsService.validatePassword(password);
    const user = await this.findUser(username);
    await this.repos.users.setPasswordHash(user.id, await hashPassword(password));
  }

  async findUser(username: string): Promise<UserRow> {
    const user = await this.repos.users.findByUsername(username.normalize("NFC"));
    if (!user) throw new AppError("not_found", `No user named "${username}".`);
    return user;
  }

  /** Checks a username and password in the same time whether or not the user exists. */
  async checkCredentials(username: string, password: string): Promise<UserRow> {
    const user = username ? await this.repos.users.findByUsername(username.normalize("NFC")) : undefined;
    const valid = await verifyPassword(password, user?.password_hash ?? (await decoyPasswordHash()));
    if (!user || !valid) throw new AppError("invalid_credentials");
    return user;
  }

  issueKey(userId: number, options: KeyOptions = {}): Promise<IssuedKey> {
    return this.insertKey(this.repos, userId, options);
  }

  private async insertKey(repos: Repositories, userId: number, options: KeyOptions): Promise<IssuedKey> {
    const key = keyPrefix + randomBytes(24).toString("base64url");
    const row: AccessKeyRow = {
      id: `key_${randomBytes(9).toString("base64url")}`,
      user_id: userId,
      key_hash: hashKey(key),
      display_prefix: key.slice(0, keyPrefix.length + 6),
      label: options.label ?? "",
      scope: options.scope ?? "read-write",
      created_at: this.now(),
      last_used_at: null,
      expires_at: options.expiresAt ? options.expiresAt.toISOString() : null,
      revoked_at: null,
    };
    await repos.accessKeys.insert(row);
    return { key, row };
  }

  /** Resolves the principal of a presented key, or throws 401 `unauthorized`. */
  async authenticate(key: string): Promise<Principal> {
    const keyHash = hashKey(key);
    const nowMs = this.clock().getTime();
    let cached = this.principals.get(keyHash);
    if (!cached) {
      const row = await this.repos.accessKeys.findByHash(keyHash);
      if (!row || row.revoked_at !== null) throw new AppError("unauthorized");
      const user = await this.repos.users.findById(row.user_id);
      if (!user) throw new AppError("unauthorized");
      cached = {
        principal: { userId: user.id, username: user.username, keyId: row.id, scope: row.scope },
        expiresAt: row.expires_at ? Date.parse(row.expires_at) : null,
      };
      this.principals.set(keyHash, cached);
    }
    if (cached.expiresAt !== null && cached.expiresAt <= nowMs) throw new AppError("unauthorized", "This access key has expired.");
    this.noteUse(cached.principal.keyId, nowMs);
    return cached.principal;
  }

  /** Records last use at most once a minute per key, off the request's critical path. */
  private noteUse(keyId: string, nowMs: number): void {
    const last = this.lastTouched.get(keyId);
    if (last !== undefined && nowMs - last < 60_000) return;
    this.lastTouched.set(keyId, nowMs);
    if (this.lastTouched.size > 100_000) this.lastTouched.clear();
    this.repos.accessKeys.touch(keyId, new Date(nowMs).toISOString()).catch(() => {
      // Last-use time is a courtesy; a busy database must not fail the request.
    });
  }

  listKeys(userId: number): Promise<AccessKeyRow[]> {
    return this.repos.accessKeys.listForUser(userId);
  }

  async revokeKey(userId: number, keyId: string): Promise<AccessKeyRow> {
    const row = await this.repos.accessKeys.findById(userId, keyId);
    if (!row || !(await this.repos.accessKeys.revoke(userId, keyId, this.now()))) throw new AppError("key_not_found");
    this.principals.delete(row.key_hash);
    return { ...row, revoked_at: this.now() };
  }

  /** Revokes the calling key and issues a new one with the same label, scope and expiry. */
  async rotateKey(principal: Principal): Promise<IssuedKey> {
    const current = await this.repos.accessKeys.findById(principal.userId, principal.keyId);
    if (!current) throw new AppError("unauthorized");
    return this.db.transaction().execute(async (trx) => {
      const repos = repositories(trx);
      if (!(await repos.accessKeys.revoke(principal.userId, principal.keyId, this.now()))) throw new AppError("unauthorized");
      const issued = await this.insertKey(repos, principal.userId, {
        label: current.label,
        scope: current.scope,
        expiresAt: current.expires_at ? new Date(current.expires_at) : null,
      });
      this.principals.delete(current.key_hash);
      return issued;
    });
  }
}
