import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { ImagesRepository } from "../db/repositories/images.js";
import type { Services } from "../services/index.js";

/** How long the stored-images totals (a count and a sum over the images table) are reused between scrapes. */
const totalsCacheMs = 10_000;

/**
 * Prometheus metrics at `GET /metrics`, in a registry of this app's own (tests build many apps in
 * one process): requests by route and status with their durations, bytes in and out, images and
 * bytes stored, the image work queue, the hot cache, transformed variants, and the process's
 * default metrics (memory, CPU, event loop lag, GC). Values that services already count are read
 * at scrape time, so no request pays for them.
 *
 * Called on the root instance before the routes, so its hooks see every request.
 */
export function registerMetrics(app: FastifyInstance, services: Services): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const labelNames = ["method", "route", "status_code"] as const;
  const requests = new Counter({ name: "imgvault_http_requests_total", help: "HTTP requests answered.", labelNames, registers: [registry] });
  const duration = new Histogram({
    name: "imgvault_http_request_duration_seconds",
    help: "Time from the request's arrival to its response's end.",
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const bytesIn = new Counter({
    name: "imgvault_http_request_bytes_total",
    help: "Request body bytes received, by declared Content-Length.",
    labelNames: ["method", "route"],
    registers: [registry],
  });
  const bytesOut = new Counter({
    name: "imgvault_http_response_bytes_total",
    help: "Response body bytes sent, by Content-Length.",
    labelNames: ["method", "route"],
    registers: [registry],
  });

  const imagesRepository = new ImagesRepository(services.database.db);
  let totals: { at: number; value: Promise<{ images: number; bytes: number }> } | undefined;
  const storedTotals = () => {
    const now = Date.now();
    if (!totals || now - totals.at > totalsCacheMs) {
      const value = imagesRepository.totals();
      totals = { at: now, value };
      // A failed count is not remembered: the next scrape asks again.
      value.catch(() => (totals = undefined));
    }
    return totals.value;
  };
  new Gauge({
    name: "imgvault_images_stored",
    help: "Images stored, all users.",
    registers: [registry],
    async collect() {
      this.set((await storedTotals()).images);
    },
  });
  new Gauge({
    name: "imgvault_image_bytes_stored",
    help: "Bytes of all stored images (before deduplication of identical content).",
    registers: [registry],
    async collect() {
      this.set((await storedTotals()).bytes);
    },
  });

  const { queue, hotCache, variants } = services;
  gauge(registry, "imgvault_work_queue_depth", "Image jobs (validation, transforms) waiting for a slot.", () => queue.depth);
  gauge(registry, "imgvault_work_queue_active", "Image jobs running.", () => queue.active);
  gauge(registry, "imgvault_work_queue_concurrency", "Image jobs that may run at once.", () => queue.concurrency);
  gauge(registry, "imgvault_hot_cache_bytes", "Bytes held by the in-memory cache of recently served images.", () => hotCache.stats.bytes);
  gauge(registry, "imgvault_hot_cache_entries", "Entries in the in-memory cache.", () => hotCache.stats.entries);
  monotonic(registry, "imgvault_hot_cache_hits_total", "Lookups answered from the in-memory cache.", () => hotCache.stats.hits);
  monotonic(registry, "imgvault_hot_cache_misses_total", "Lookups the in-memory cache could not answer.", () => hotCache.stats.misses);
  gauge(registry, "imgvault_variants_waiting", "Requests waiting for a transformed variant.", () => variants.waiting);
  new Counter({
    name: "imgvault_variants_total",
    help: "Transformed variants served, by where they came from: computed, memory (hot cache) or disk (variant cache).",
    labelNames: ["source"],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ source: "computed" }, variants.stats.computed);
      this.inc({ source: "memory" }, variants.stats.memoryHits);
      this.inc({ source: "disk" }, variants.stats.diskHits);
    },
  });

  app.addHook("onResponse", async (request: FastifyRequest, reply: FastifyReply) => {
    const route = request.routeOptions.url ?? "unmatched";
    const labels = { method: request.method, route, status_code: String(reply.statusCode) };
    requests.inc(labels);
    duration.observe(labels, reply.elapsedTime / 1000);
    const received = Number(request.headers["content-length"]);
    if (received > 0) bytesIn.inc({ method: request.method, route }, received);
    const sent = Number(reply.getHeader("content-length"));
    if (sent > 0 && request.method !== "HEAD" && reply.statusCode !== 304) bytesOut.inc({ method: request.method, route }, sent);
  });

  app.get("/metrics", {
    schema: {
      summary: "Prometheus metrics (text exposition format)",
      description: "Unauthenticated, like /healthz: expose it only where your scraper can reach it.",
      tags: ["operations"],
      produces: ["text/plain"],
    },
    handler: async (_request, reply) => {
      reply.header("content-type", registry.contentType).header("cache-control", "no-store");
      return registry.metrics();
    },
  });
  return registry;
}

function gauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** A counter whose value a service keeps (monotonic since start), read at scrape time. */
function monotonic(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}
