import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { link, mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ConfigError } from "../config.js";
import { AppError } from "../errors.js";
import { systemClock, type Clock } from "./clock.js";

/** One HMAC secret and the id URLs name it by. */
export interface SigningKey {
  id: string;
  secret: Buffer;
}

/**
 * The keys that verify signed URLs. New URLs are signed with `current`; URLs signed before a
 * rotation keep working as long as their key stays among `previous`.
 */
export interface KeyRing {
  current: SigningKey;
  previous: SigningKey[];
}

/** The longest a signed URL may live (the limit). */
export const maxSignedUrlLifetimeSeconds = 7 * 24 * 60 * 60;

/**
 * Query parameters a signed URL adds. Transform parsing ignores them (unknown parameters are
 * ignored), so they never enter canonical transform strings.
 */
export const signingParameterNames = ["exp", "kid", "sig", "v"] as const;

export interface SignInput {
  /**
   * What the URL names, as the route will see it again (e.g. `/s/<owner>/<name>`): it must identify
   * the owner too, since a signed request carries no key.
   */
  resource: string;
  /** `canonicalTransformParams(spec)`; empty for the original. */
  params: string;
  /** 1..7 days. */
  expiresInSeconds: number;
  /**
   * A prefix (8..64 lower-case hex) of the content's SHA-256. The URL then names these exact
   * bytes, so its response may be cached as immutable; the route answers 404 once they are replaced.
   */
  contentVersion?: string | undefined;
}

/** The query parameters of a signed URL, in the order they are appended. */
export interface SignedParams {
  exp: string;
  kid: string;
  v?: string;
  sig: string;
}

export interface SignedUrl {
  /** Parameters to append to the URL. */
  params: SignedParams;
  /** `exp=…&kid=…&sig=…`, ready to append after the transform parameters. */
  query: string;
  expiresAt: Date;
}

export interface VerifyInput {
  resource: string;
  /** `canonicalTransformParams` of the request's own transform parameters. */
  params: string;
  /** The request's query as Fastify parsed it. */
  query: Record<string, unknown>;
}

export interface VerifiedUrl {
  keyId: string;
  expiresAt: Date;
  /** Whole seconds until expiry, at least 1: the `max-age` a public cache may keep the response. */
  secondsLeft: number;
  /** The content-hash prefix the URL was signed for, if any. */
  contentVersion: string | undefined;
}

const keyIdPattern = /^[A-Za-z0-9_-]{1,32}$/;
const expiryPattern = /^\d{1,12}$/;
/** HMAC-SHA256 is 32 bytes: 43 base64url characters without padding. */
const signaturePattern = /^[A-Za-z0-9_-]{43}$/;
const contentVersionPattern = /^[0-9a-f]{8,64}$/;

/** True when the request carries signing parameters: the route then verifies instead of asking for a key. */
export function hasSignature(query: Record<string, unknown>): boolean {
  return query.sig !== undefined;
}

/**
 * Signs and verifies URLs with HMAC-SHA256 over the resource, the canonical transform parameters,
 * the expiry, the key id and the optional content version. Verification takes constant time in
 * the signature and checks the signature before the expiry, so an expired-URL answer only ever
 * confirms a URL we issued.
 */
export class UrlSigner {
  private readonly keys: Map<string, SigningKey>;

  constructor(
    private readonly ring: KeyRing,
    private readonly clock: Clock = systemClock,
  ) {
    this.keys = new Map([ring.current, ...ring.previous].map((key) => [key.id, key]));
  }

  sign(input: SignInput): SignedUrl {
    const { expiresInSeconds, contentVersion } = input;
    if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > maxSignedUrlLifetimeSeconds) {
      throw new AppError(
        "invalid_parameter",
        `Parameter "expires_in" must be an integer from 1 to ${maxSignedUrlLifetimeSeconds} seconds.`,
      );
    }
    if (contentVersion !== undefined && !contentVersionPattern.test(contentVersion)) {
      throw new TypeError("contentVersion must be 8 to 64 lower-case hex digits");
    }
    const exp = String(Math.floor(this.clock().getTime() / 1000) + expiresInSeconds);
    const key = this.ring.current;
    const sig = mac(key, input.resource, input.params, exp, contentVersion);
    const params: SignedParams =
      contentVersion === undefined ? { exp, kid: key.id, sig } : { exp, kid: key.id, v: contentVersion, sig };
    return {
      params,
      query: new URLSearchParams(Object.entries(params)).toString(),
      expiresAt: new Date(Number(exp) * 1000),
    };
  }

  /**
   * @throws AppError `signature_invalid` for a missing, malformed or wrong signature, an unknown
   *   key id, or any change to the resource, parameters, expiry or version; `signature_expired`
   *   for a genuine URL past its expiry.
   */
  verify(input: VerifyInput): VerifiedUrl {
    const single = (name: string): string | undefined => {
      const value = input.query[name];
      return typeof value === "string" ? value : undefined;
    };
    const exp = single("exp");
    const kid = single("kid");
    const sig = single("sig");
    const v = single("v");
    const invalid = () => new AppError("signature_invalid");
    if (exp === undefined || kid === undefined || sig === undefined) throw invalid();
    if (!expiryPattern.test(exp) || !keyIdPattern.test(kid) || !signaturePattern.test(sig)) throw invalid();
    if (input.query.v !== undefined && (v === undefined || !contentVersionPattern.test(v))) throw invalid();
    const key = this.keys.get(kid);
    if (!key) throw invalid();

    const expected = Buffer.from(mac(key, input.resource, input.params, exp, v), "base64url");
    const given = Buffer.from(sig, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid();

    const expiresAtMs = Number(exp) * 1000;
    const nowMs = this.clock().getTime();
    if (nowMs >= expiresAtMs) throw new AppError("signature_expired");
    return {
      keyId: kid,
      expiresAt: new Date(expiresAtMs),
      secondsLeft: Math.max(1, Math.floor((expiresAtMs - nowMs) / 1000)),
      contentVersion: v,
    };
  }
}

function mac(key: SigningKey, resource: string, params: string, exp: string, contentVersion: string | undefined): string {
  // A JSON array keeps the fields apart whatever characters they hold; the label keeps these MACs
  // from ever matching one made for another purpose with the same secret.
  const message = JSON.stringify(["imgvault-url-v1", key.id, resource, params, exp, contentVersion ?? ""]);
  return createHmac("sha256", key.secret).update(message).digest("base64url");
}

/** The file that holds generated keys when configuration gives none. */
export const signingKeysFileName = "signing-keys.json";

interface KeyFile {
  current: string;
  keys: Array<{ id: string; secret: string; created_at: string }>;
}

/**
 * The key ring: from configuration when it names keys (the first is current), otherwise from
 * `<dataDir>/signing-keys.json`, created with one random 256-bit key (mode 0600) on first start.
 * Several processes starting at once on one data directory end up with the same file.
 *
 * @throws ConfigError when the key file exists but is not a valid key file.
 */
export async function loadKeyRing(
  configured: Array<{ id: string; secret: string }> | undefined,
  dataDir: string,
  clock: Clock = systemClock,
): Promise<KeyRing> {
  if (configured !== undefined && configured.length > 0) {
    const [current, ...previous] = configured.map((key) => ({ id: key.id, secret: Buffer.from(key.secret, "utf8") }));
    return { current: current!, previous };
  }
  const path = join(dataDir, signingKeysFileName);
  let file = await readKeyFile(path);
  if (file === undefined) {
    await createKeyFile(path, { current: "", keys: [] }, clock);
    file = await readKeyFile(path);
    if (file === undefined) throw new ConfigError([`${path} vanished while it was being created`]);
  }
  return keyRingFromFile(file, path);
}

/**
 * Adds a fresh key to `<dataDir>/signing-keys.json` and makes it current; the old keys stay, so
 * URLs signed with them keep working until they expire (remove a key from the file after
 * `maxSignedUrlLifetimeSeconds` to retire it). Running servers pick it up on restart.
 */
export async function rotateKeyFile(dataDir: string, clock: Clock = systemClock): Promise<KeyRing> {
  const path = join(dataDir, signingKeysFileName);
  const existing = (await readKeyFile(path)) ?? { current: "", keys: [] };
  await createKeyFile(path, existing, clock, { replace: true });
  const file = await readKeyFile(path);
  return keyRingFromFile(file!, path);
}

async function readKeyFile(path: string): Promise<KeyFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as KeyFile;
  } catch {
    throw new ConfigError([`${path} is not valid JSON`]);
  }
}

function keyRingFromFile(file: KeyFile, path: string): KeyRing {
  const problems: string[] = [];
  if (!Array.isArray(file.keys) || file.keys.length === 0) problems.push(`${path} must list at least one key`);
  const keys: SigningKey[] = [];
  for (const entry of Array.isArray(file.keys) ? file.keys : []) {
    const secret = typeof entry.secret === "string" ? Buffer.from(entry.secret, "base64url") : Buffer.alloc(0);
    if (typeof entry.id !== "string" || !keyIdPattern.test(entry.id)) problems.push(`${path}: a key has an invalid id`);
    else if (secret.length < 32) problems.push(`${path}: key "${entry.id}" must have a secret of at least 32 bytes`);
    else keys.push({ id: entry.id, secret });
  }
  const current = keys.find((key) => key.id === file.current);
  if (!current && problems.length === 0) problems.push(`${path}: "current" must name one of its keys`);
  if (problems.length > 0 || !current) throw new ConfigError(problems);
  return { current, previous: keys.filter((key) => key !== current) };
}

/** `file` plus one new random 256-bit key, made current. */
function withNewCurrentKey(file: KeyFile, clock: Clock): KeyFile {
  const id = `k${clock().toISOString().slice(0, 10).replaceAll("-", "")}-${randomBytes(3).toString("hex")}`;
  return {
    current: id,
    keys: [{ id, secret: randomBytes(32).toString("base64url"), created_at: clock().toISOString() }, ...file.keys],
  };
}

/**
 * Writes `file` plus one new current key. The content goes to a private temporary file first and
 * is then linked into place: `link` fails when the target exists, so two processes creating the
 * file at once cannot overwrite each other, and a reader never sees half a file.
 */
async function createKeyFile(path: string, file: KeyFile, clock: Clock, options: { replace?: boolean } = {}): Promise<void> {
  const next = withNewCurrentKey(file, clock);
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(temporary, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  try {
    if (options.replace) {
      await rename(temporary, path);
      return;
    }
    await link(temporary, path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/**
 * The few Redis commands the shared key ring needs (an ioredis client has them). Keys are
 * relative to the client's own key prefix.
 */
export interface SharedKeyStore {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, mode: "NX"): Promise<"OK" | null>;
  watch(key: string): Promise<unknown>;
  unwatch(): Promise<unknown>;
  multi(): { set(key: string, value: string): unknown; exec(): Promise<unknown[] | null> };
}

/** Where the shared key ring lives in Redis (after the client's prefix); the value is the key file's JSON. */
export const sharedSigningKeysKey = "signing-keys";

/**
 * The key ring shared by every node through Redis, for deployments without configured keys: the
 * first node to start creates one random key (SET NX, so nodes starting at once agree on it) and
 * every node reads the same ring. Same format as `signing-keys.json`.
 *
 * @throws ConfigError when the stored value is not a valid key ring.
 */
export async function loadSharedKeyRing(store: SharedKeyStore, clock: Clock = systemClock): Promise<KeyRing> {
  const where = `Redis key "${sharedSigningKeysKey}"`;
  let text = await store.get(sharedSigningKeysKey);
  if (text === null) {
    await store.set(sharedSigningKeysKey, JSON.stringify(withNewCurrentKey({ current: "", keys: [] }, clock)), "NX");
    text = await store.get(sharedSigningKeysKey);
    if (text === null) throw new ConfigError([`${where} vanished while it was being created`]);
  }
  return keyRingFromFile(parseSharedKeys(text, where), where);
}

/**
 * Adds a fresh key to the shared ring and makes it current; old keys keep verifying (see
 * `rotateKeyFile`). Optimistic: retried when another node rotates at the same moment. Running
 * nodes pick the new key up on restart.
 */
export async function rotateSharedKeyRing(store: SharedKeyStore, clock: Clock = systemClock): Promise<KeyRing> {
  const where = `Redis key "${sharedSigningKeysKey}"`;
  for (let attempt = 0; attempt < 10; attempt += 1) {
    await store.watch(sharedSigningKeysKey);
    const text = await store.get(sharedSigningKeysKey);
    const existing = text === null ? { current: "", keys: [] } : parseSharedKeys(text, where);
    const next = withNewCurrentKey(existing, clock);
    const transaction = store.multi();
    transaction.set(sharedSigningKeysKey, JSON.stringify(next));
    // null: the key changed after WATCH (another node rotated); read again and retry.
    if ((await transaction.exec()) !== null) return keyRingFromFile(next, where);
  }
  await store.unwatch();
  throw new ConfigError([`${where} kept changing while being rotated`]);
}

function parseSharedKeys(text: string, where: string): KeyFile {
  try {
    return JSON.parse(text) as KeyFile;
  } catch {
    throw new ConfigError([`${where} is not valid JSON`]);
  }
}

/**
 * The key ring this node signs with: the configured keys when there are any, else the ring shared
 * through Redis when `REDIS_URL` is set, else `<dataDir>/signing-keys.json`.
 */
export function loadKeyRingFor(
  config: { signingKeys: Array<{ id: string; secret: string }> | undefined; dataDir: string },
  shared: SharedKeyStore | undefined,
  clock: Clock = systemClock,
): Promise<KeyRing> {
  if (config.signingKeys !== undefined && config.signingKeys.length > 0) return loadKeyRing(config.signingKeys, config.dataDir, clock);
  if (shared !== undefined) return loadSharedKeyRing(shared, clock);
  return loadKeyRing(undefined, config.dataDir, clock);
}
