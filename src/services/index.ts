import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../config.js";
import { openDatabase, type OpenDatabase } from "../db/database.js";
import { WorkQueue } from "../processing/work-queue.js";
import type { BlobStore } from "../storage/blob-store.js";
import { createBlobStore } from "../storage/index.js";
import { AccountsService } from "./accounts.js";
import { systemClock, type Clock } from "./clock.js";
import { HotCache } from "./hot-cache.js";
import { ImagesService, type ImagesServiceHooks } from "./images.js";
import { closeRedis, connectRedis, type RedisClient } from "./redis.js";
import { loadKeyRingFor, UrlSigner } from "./signing.js";
import { StagingArea } from "./staging.js";
import { VariantCache } from "./variant-cache.js";
import { VariantService } from "./variants.js";

/** Everything a running imgvault holds: the backends and the services over them. */
export interface Services {
  config: Config;
  database: OpenDatabase;
  blobs: BlobStore;
  staging: StagingArea;
  queue: WorkQueue;
  hotCache: HotCache;
  accounts: AccountsService;
  images: ImagesService;
  /** Disk cache of transformed variants (per node); closed with the services. */
  variantCache: VariantCache;
  variants: VariantService;
  /** Signs and verifies keyless image URLs; created once, with the key ring loaded at start. */
  signer: UrlSigner;
  /** The Redis nodes share state through (`REDIS_URL`), or undefined: each node keeps its own. */
  redis: RedisClient | undefined;
  clock: Clock;
  /** Collects unreferenced blobs past their grace period and removes stale staged uploads. */
  housekeeping(): Promise<void>;
  close(): Promise<void>;
}

/** Staged uploads older than this belong to no live request: they were left by a crash. */
const stagedLeftoverAgeMs = 60 * 60 * 1000;

export interface ServiceOverrides {
  clock?: Clock;
  /** Replaces the configured store, e.g. to inject faults in tests. */
  blobs?: BlobStore;
  onBackgroundError?: (error: unknown) => void;
  /** Test seams of the images service (cross-node race tests). */
  imageHooks?: ImagesServiceHooks;
}

export async function createServices(config: Config, overrides: ServiceOverrides = {}): Promise<Services> {
  const clock = overrides.clock ?? systemClock;
  const database = await openDatabase(config.database);
  let redis: RedisClient | undefined;
  try {
    redis = config.redis === undefined ? undefined : await connectRedis(config.redis);
    const blobs = overrides.blobs ?? createBlobStore(config.storage);
    const staging = new StagingArea(join(config.dataDir, "tmp"));
    await staging.init();
    const queue = new WorkQueue(config.imageConcurrency, config.imageQueueLimit);
    const hotCache = new HotCache(config.hotCacheBytes, config.hotCacheMaxItemBytes);
    const accounts = new AccountsService(database.db, clock, config.principalCacheMs);
    const images = new ImagesService(database.db, blobs, queue, hotCache, clock, {
      limits: { maxPixels: config.maxPixels, maxFrames: config.maxFrames },
      gcGraceMs: config.gcGraceMs,
      onBackgroundError: overrides.onBackgroundError,
      hooks: overrides.imageHooks,
    });
    const signer = new UrlSigner(await loadKeyRingFor(config, redis, clock), clock);
    const variantCache = await VariantCache.open({ ...config.variantCache, onError: overrides.onBackgroundError });
    const variants = new VariantService(variantCache, hotCache, queue, images, {
      limitInputPixels: config.maxPixels,
      maxOutputPixels: config.transform.maxOutputPixels,
      effort: { avif: config.transform.avifEffort, webp: config.transform.webpEffort, gif: config.transform.gifEffort },
    });
    return {
      config,
      database,
      blobs,
      staging,
      queue,
      hotCache,
      accounts,
      images,
      variantCache,
      variants,
      signer,
      redis,
      clock,
      async housekeeping() {
        await images.sweep();
        for (const path of await staging.leftovers(stagedLeftoverAgeMs)) await rm(path, { force: true });
      },
      async close() {
        await Promise.allSettled([database.close(), blobs.close(), variantCache.close(), redis && closeRedis(redis)]);
      },
    };
  } catch (error) {
    await database.close();
    if (redis) await closeRedis(redis);
    throw error;
  }
}
