import { LRUCache } from "lru-cache";
import sharp from "sharp";
import type { ImageRow } from "../db/schema.js";
import { negotiateFormat, outputContentTypes } from "../processing/output-format.js";
import { canonicalTransformParams, variantParams, type OutputFormat, type TransformSpec } from "../processing/transform-params.js";
import { assertOutputWithinLimit, transformImage, type OutputSize, type TransformOptions } from "../processing/transform.js";
import type { WorkQueue } from "../processing/work-queue.js";
import type { HotCache } from "./hot-cache.js";
import { sourceImageOf } from "./image-metadata.js";
import type { ImagesService } from "./images.js";
import { variantKey, type VariantCache, type VariantResult } from "./variant-cache.js";

/** One variant of one stored image, decided without touching any pixel. */
export interface VariantPlan {
  /** Cache key and strong ETag: names these exact bytes (source, parameters, encoder). */
  key: string;
  format: OutputFormat;
  contentType: string;
  /** The format was chosen from the Accept header: the response must carry `Vary: Accept`. */
  varyAccept: boolean;
  size: OutputSize;
}

/** A validated transform request with its canonical string (see `canonicalTransformParams`). */
export interface ParsedTransform {
  spec: TransformSpec;
  canonical: string;
}

export function parsedTransform(spec: TransformSpec): ParsedTransform {
  return { spec, canonical: canonicalTransformParams(spec) };
}

/** Where variants came from since start: computed, or served from memory or disk. Monotonic counters. */
export interface VariantStats {
  computed: number;
  memoryHits: number;
  diskHits: number;
}

/**
 * Transformed variants of stored images: planned and refused cheaply first (format negotiation,
 * output limit), then served from memory (the hot cache), from the disk cache, or computed once in
 * the bounded work queue, however many requests ask at the same moment.
 */
export class VariantService {
  readonly stats: VariantStats = { computed: 0, memoryHits: 0, diskHits: 0 };
  private waitingRequests = 0;
  /**
   * Recent plans. A plan is a pure function of the source's content (its hash; `metadata` null or
   * not, for rows stored before metadata existed), the canonical parameters and Accept, so a
   * request for a variant already cached skips negotiation, planning and hashing.
   */
  private readonly plans = new LRUCache<string, VariantPlan>({ max: 10_000 });
  /**
   * Part of every key: a new libvips or another encoder effort may write other bytes for the same
   * parameters, and a strong ETag promises the same bytes (ranges of two encodings must never mix).
   */
  private readonly encoderFingerprint: string;

  constructor(
    private readonly cache: VariantCache,
    private readonly hot: HotCache,
    private readonly queue: WorkQueue,
    private readonly images: ImagesService,
    private readonly options: TransformOptions,
  ) {
    const { avif, webp, gif } = options.effort;
    this.encoderFingerprint = `libvips=${sharp.versions.vips};effort=${avif},${webp},${gif}`;
  }

  /** Requests waiting for a variant from the disk cache or a computation (their own or a shared one). */
  get waiting(): number {
    return this.waitingRequests;
  }

  /**
   * Decides the variant `spec` asks of `row` for a client that sends `accept`.
   * @throws AppError `output_too_large`
   */
  plan(row: ImageRow, transform: ParsedTransform, accept: string | undefined): VariantPlan {
    const memoKey = `${row.sha256}\n${row.metadata === null ? "-" : "+"}\n${transform.canonical}\n${accept ?? ""}`;
    const known = this.plans.get(memoKey);
    if (known) return known;
    const { spec } = transform;
    const source = sourceImageOf(row);
    const { format, varyAccept } = negotiateFormat(spec.format, source, accept);
    const size = assertOutputWithinLimit(source, spec, format, this.options.maxOutputPixels);
    const key = variantKey(row.sha256, `${variantParams(spec, format)}\n${this.encoderFingerprint}`);
    const plan: VariantPlan = { key, format, contentType: outputContentTypes[format], varyAccept, size };
    this.plans.set(memoKey, plan);
    return plan;
  }

  /**
   * The variant's bytes. Waiters on a variant being computed share that computation and take no
   * queue slot of their own.
   * @throws AppError `busy` (503, Retry-After) when the work queue is full, `image_not_found` when
   *   the source's bytes vanished meanwhile.
   */
  async produce(row: ImageRow, spec: TransformSpec, plan: VariantPlan): Promise<Buffer> {
    const inMemory = this.hot.get(plan.key);
    if (inMemory) {
      this.stats.memoryHits += 1;
      return inMemory;
    }
    const source = sourceImageOf(row);
    const compute = () =>
      this.queue.run(async () => {
        this.stats.computed += 1;
        // Read inside the slot: a waiting job holds no source bytes, so memory stays flat however long the queue.
        const body = await this.images.openContent(row);
        try {
          const input = body.kind === "buffer" ? body.bytes : body.stream;
          return (await transformImage(input, source, spec, plan.format, this.options)).data;
        } finally {
          if (body.kind === "stream") body.stream.destroy();
        }
      });
    this.waitingRequests += 1;
    let result: VariantResult;
    try {
      result = await this.cache.getOrCompute(plan.key, compute);
    } finally {
      this.waitingRequests -= 1;
    }
    if (result.cached) this.stats.diskHits += 1;
    if (this.hot.accepts(result.data.length)) this.hot.set(plan.key, result.data);
    return result.data;
  }
}
