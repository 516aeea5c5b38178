import { resolve } from "node:path";

/**
 * Everything imgvault can be told, read once at start-up. This module is the only reader of
 * `process.env`; the rest of the code receives a `Config`. Every problem is reported at once.
 */
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  logLevel: string;
  /** Largest upload accepted, checked while streaming. */
  maxUploadBytes: number;
  /** Largest width × height accepted, read from the header before any decode. */
  maxPixels: number;
  /** Most frames (animation) or pages (TIFF) accepted. */
  maxFrames: number;
  /** Bytes of recently served images kept in memory; 0 turns the cache off. */
  hotCacheBytes: number;
  /** Images larger than this are always streamed from storage, never cached in memory. */
  hotCacheMaxItemBytes: number;
  /** Concurrent image decodes/encodes; the rest wait in a bounded queue. */
  imageConcurrency: number;
  /** Image jobs allowed to wait; beyond that the answer is 503 with Retry-After. */
  imageQueueLimit: number;
  /** Unreferenced bytes younger than this are spared by collection: an upload may be committing them. */
  gcGraceMs: number;
  /** How often unreferenced bytes are swept; 0 turns the periodic sweep off. */
  gcIntervalMs: number;
  /** How long a resolved access key is trusted without asking the database again. */
  principalCacheMs: number;
  /**
   * How long the server waits for slow clients (ms; 0 turns one off). `headersMs` bounds the request
   * line and headers, `requestMs` the whole request body included: a client trickling a byte a
   * second is answered 408 and cut off. `idleMs` closes a socket with no traffic either way.
   */
  timeouts: { headersMs: number; requestMs: number; keepAliveMs: number; idleMs: number };
  /** Abuse limits (0 turns one off); docs/security.md explains each. */
  abuse: {
    /** Uploads (POST/PATCH with a file) one access key may have in flight at once; beyond it 429. */
    uploadsPerKey: number;
    /** `POST /api/token/` attempts per client address, and per username, within `loginWindowMs`. */
    loginPerAddress: number;
    loginPerUsername: number;
    loginWindowMs: number;
  };
  /** Headers on responses that carry image bytes; an empty string leaves the header out. */
  imageHeaders: { contentSecurityPolicy: string; crossOriginResourcePolicy: string };
  /** Image transforms (query parameters of `GET /image/<name>/`). */
  transform: {
    /** Largest output a transform may produce, width × height × frames; beyond it 400 `output_too_large`. */
    maxOutputPixels: number;
    /**
     * Encoder CPU effort per format. Higher efforts give slightly smaller files at a steep price
     * (a 300 px AVIF costs ~10× the CPU at sharp's default effort 4 as at 1); bench/transform.ts measures them.
     */
    avifEffort: number;
    webpEffort: number;
    gifEffort: number;
  };
  /** Disk cache of transformed variants: per node, disposable, least recently used evicted first. */
  variantCache: { dir: string; maxBytes: number };
  /**
   * Keys that sign URLs, the current one first; the others still verify URLs signed before a
   * rotation. Undefined: a key is generated into `<dataDir>/signing-keys.json` on first start.
   */
  signingKeys: Array<{ id: string; secret: string }> | undefined;
  /**
   * Shared state for many nodes (`REDIS_URL`): login rate-limit counters and, when `signingKeys`
   * is unset, the signing key ring live in Redis under `keyPrefix`, so every node agrees.
   * Undefined: each node counts alone and keeps its keys in its data directory.
   */
  redis: { url: string; keyPrefix: string } | undefined;
  /**
   * SQLite: `busyTimeoutMs` is how long a write waits for another process's lock before the request
   * answers 503 `database_unavailable` (better-sqlite3 waits synchronously, so keep it short).
   */
  database:
    | { kind: "sqlite"; file: string; busyTimeoutMs?: number }
    /** PostgreSQL: `connectTimeoutMs` bounds a connection attempt, so an unreachable server answers 503 instead of hanging. */
    | { kind: "postgres"; url: string; poolSize: number; connectTimeoutMs?: number };
  storage:
    | { kind: "fs"; dir: string }
    | {
        kind: "s3";
        endpoint: string | undefined;
        region: string;
        bucket: string;
        accessKeyId: string | undefined;
        secretAccessKey: string | undefined;
        forcePathStyle: boolean;
        prefix: string;
      };
}

export type ConfigOverrides = Partial<Pick<Config, "host" | "port" | "dataDir" | "logLevel">>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env, overrides: ConfigOverrides = {}): Config {
  const problems: string[] = [];

  const int = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = env[name]?.toLowerCase();
    if (raw === undefined || raw === "") return fallback;
    if (["1", "true", "yes", "on"].includes(raw)) return true;
    if (["0", "false", "no", "off"].includes(raw)) return false;
    problems.push(`${name} must be true or false, got "${env[name]}"`);
    return fallback;
  };
  const str = (name: string): string | undefined => (env[name] === "" ? undefined : env[name]);

  const dataDir = resolve(overrides.dataDir ?? str("IMGVAULT_DATA_DIR") ?? "data");
  const port = overrides.port ?? int("IMGVAULT_PORT", 8000, 0, 65535);
  if (overrides.port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    problems.push(`port must be an integer from 0 to 65535, got "${String(overrides.port)}"`);
  }

  const databaseUrl = str("DATABASE_URL");
  const sqliteBusyTimeoutMs = int("IMGVAULT_SQLITE_BUSY_TIMEOUT_MS", 5000, 0, 600_000);
  let database: Config["database"] = { kind: "sqlite", file: resolve(dataDir, "imgvault.sqlite"), busyTimeoutMs: sqliteBusyTimeoutMs };
  if (databaseUrl !== undefined) {
    if (/^postgres(ql)?:\/\//.test(databaseUrl)) {
      database = {
        kind: "postgres",
        url: databaseUrl,
        poolSize: int("DATABASE_POOL_SIZE", 10, 1, 1000),
        connectTimeoutMs: int("DATABASE_CONNECT_TIMEOUT_MS", 5000, 1, 600_000),
      };
    } else if (databaseUrl.startsWith("sqlite:")) {
      database = {
        kind: "sqlite",
        file: resolve(databaseUrl.slice("sqlite:".length).replace(/^\/\//, "")),
        busyTimeoutMs: sqliteBusyTimeoutMs,
      };
    } else {
      problems.push(`DATABASE_URL must start with postgres://, postgresql:// or sqlite:, got "${databaseUrl}"`);
    }
  }

  const storageKind = str("STORAGE") ?? "fs";
  let storage: Config["storage"] = { kind: "fs", dir: resolve(dataDir, "blobs") };
  if (storageKind === "s3") {
    const bucket = str("S3_BUCKET");
    if (bucket === undefined) problems.push("S3_BUCKET is required when STORAGE=s3");
    storage = {
      kind: "s3",
      endpoint: str("S3_ENDPOINT"),
      region: str("S3_REGION") ?? "us-east-1",
      bucket: bucket ?? "",
      accessKeyId: str("S3_ACCESS_KEY_ID"),
      secretAccessKey: str("S3_SECRET_ACCESS_KEY"),
      forcePathStyle: bool("S3_FORCE_PATH_STYLE", true),
      prefix: str("S3_PREFIX") ?? "",
    };
  } else if (storageKind !== "fs") {
    problems.push(`STORAGE must be "fs" or "s3", got "${storageKind}"`);
  }

  const signingKeys = parseSigningKeys(str("IMGVAULT_SIGNING_KEYS"), problems);

  const redisUrl = str("REDIS_URL");
  let redis: Config["redis"];
  if (redisUrl !== undefined) {
    if (/^rediss?:\/\//.test(redisUrl)) redis = { url: redisUrl, keyPrefix: str("REDIS_KEY_PREFIX") ?? "imgvault:" };
    else problems.push(`REDIS_URL must start with redis:// or rediss://, got "${redisUrl}"`);
  }

  const config: Config = {
    host: overrides.host ?? str("IMGVAULT_HOST") ?? "127.0.0.1",
    port,
    dataDir,
    logLevel: overrides.logLevel ?? str("LOG_LEVEL") ?? "info",
    maxUploadBytes: int("IMGVAULT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024, 1),
    maxPixels: int("IMGVAULT_MAX_PIXELS", 100_000_000, 1),
    maxFrames: int("IMGVAULT_MAX_FRAMES", 1000, 1),
    hotCacheBytes: int("IMGVAULT_HOT_CACHE_BYTES", 128 * 1024 * 1024, 0),
    hotCacheMaxItemBytes: int("IMGVAULT_HOT_CACHE_MAX_ITEM_BYTES", 4 * 1024 * 1024, 0),
    imageConcurrency: int("IMGVAULT_IMAGE_CONCURRENCY", 0, 0, 1024),
    imageQueueLimit: int("IMGVAULT_IMAGE_QUEUE_LIMIT", 64, 0),
    gcGraceMs: int("IMGVAULT_GC_GRACE_SECONDS", 600, 0) * 1000,
    gcIntervalMs: int("IMGVAULT_GC_INTERVAL_SECONDS", 600, 0) * 1000,
    principalCacheMs: int("IMGVAULT_KEY_CACHE_MS", 5000, 0),
    timeouts: {
      headersMs: int("IMGVAULT_HEADERS_TIMEOUT_MS", 20_000, 0),
      requestMs: int("IMGVAULT_REQUEST_TIMEOUT_MS", 300_000, 0),
      keepAliveMs: int("IMGVAULT_KEEP_ALIVE_TIMEOUT_MS", 72_000, 1),
      idleMs: int("IMGVAULT_IDLE_TIMEOUT_MS", 60_000, 0),
    },
    abuse: {
      uploadsPerKey: int("IMGVAULT_MAX_CONCURRENT_UPLOADS_PER_KEY", 8, 0),
      loginPerAddress: int("IMGVAULT_LOGIN_ATTEMPTS_PER_ADDRESS", 10, 0),
      loginPerUsername: int("IMGVAULT_LOGIN_ATTEMPTS_PER_USERNAME", 10, 0),
      loginWindowMs: int("IMGVAULT_LOGIN_WINDOW_SECONDS", 60, 1) * 1000,
    },
    imageHeaders: {
      contentSecurityPolicy: env.IMGVAULT_IMAGE_CSP ?? "default-src 'none'; sandbox",
      crossOriginResourcePolicy: env.IMGVAULT_IMAGE_CORP ?? "same-site",
    },
    transform: {
      maxOutputPixels: int("IMGVAULT_MAX_OUTPUT_PIXELS", 25_000_000, 1),
      avifEffort: int("IMGVAULT_AVIF_EFFORT", 1, 0, 9),
      webpEffort: int("IMGVAULT_WEBP_EFFORT", 4, 0, 6),
      gifEffort: int("IMGVAULT_GIF_EFFORT", 4, 1, 10),
    },
    variantCache: {
      dir: resolve(str("IMGVAULT_VARIANT_CACHE_DIR") ?? resolve(dataDir, "cache", "variants")),
      maxBytes: int("IMGVAULT_VARIANT_CACHE_BYTES", 1024 * 1024 * 1024, 0),
    },
    signingKeys,
    redis,
    database,
    storage,
  };
  const { headersMs, requestMs } = config.timeouts;
  if (requestMs > 0 && (headersMs === 0 || headersMs > requestMs)) {
    problems.push("IMGVAULT_HEADERS_TIMEOUT_MS must be from 1 to IMGVAULT_REQUEST_TIMEOUT_MS when a request timeout is set");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

const signingKeyIdPattern = /^[A-Za-z0-9_-]{1,32}$/;
/** Shorter secrets are guessable offline from one signed URL. */
const minSigningSecretLength = 32;

/** `IMGVAULT_SIGNING_KEYS="id:secret,id:secret"`, the current key first. */
function parseSigningKeys(raw: string | undefined, problems: string[]): Config["signingKeys"] {
  if (raw === undefined) return undefined;
  const keys: Array<{ id: string; secret: string }> = [];
  for (const entry of raw.split(",")) {
    const colon = entry.indexOf(":");
    const id = colon < 0 ? "" : entry.slice(0, colon).trim();
    const secret = colon < 0 ? "" : entry.slice(colon + 1).trim();
    if (!signingKeyIdPattern.test(id)) {
      problems.push("IMGVAULT_SIGNING_KEYS must be id:secret pairs separated by commas, ids of 1-32 letters, digits, _ or -");
    } else if (secret.length < minSigningSecretLength) {
      problems.push(`IMGVAULT_SIGNING_KEYS: the secret of key "${id}" must be at least ${minSigningSecretLength} characters`);
    } else if (keys.some((key) => key.id === id)) {
      problems.push(`IMGVAULT_SIGNING_KEYS names key "${id}" twice`);
    } else {
      keys.push({ id, secret });
    }
  }
  return keys;
}
