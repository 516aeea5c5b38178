import { access } from "node:fs/promises";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply } from "fastify";
import { AppError } from "../../errors.js";

/** web/dist, built by `npm run build:web`; the same relative place from src/ (tsx) and dist/ (node). */
export const defaultWebRoot = fileURLToPath(new URL("../../../web/dist/", import.meta.url));

/**
 * The page's Content-Security-Policy. Scripts and styles come only from our own origin (no inline
 * code, no eval); images also from blob: (pictures fetched with the key) and data: (thumbhash
 * placeholders); the page talks only to its own API; HTML sinks are closed by Trusted Types; and
 * nobody may frame it or point forms or <base> elsewhere.
 */
export const pageContentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

const pageHeaders: Record<string, string> = {
  "content-security-policy": pageContentSecurityPolicy,
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
};

/** esbuild names bundles `<name>-<HASH>.<ext>`: such a file never changes under its name. */
const contentHashedName = /-[A-Z0-9]{8}\.(?:js|css)$/;

export interface WebRoutesOptions {
  /** Directory holding the built page (index.html and assets/). Defaults to web/dist. */
  root?: string;
}

function cacheControlFor(fileName: string): string {
  // index.html is always revalidated, so a new build's bundle names are seen at once.
  if (fileName === "index.html") return "no-cache";
  return contentHashedName.test(fileName) ? "public, max-age=31536000, immutable" : "public, max-age=3600";
}

function setPageHeaders(reply: FastifyReply): void {
  for (const [name, value] of Object.entries(pageHeaders)) reply.header(name, value);
}

/**
 * The management page: `GET /` (index.html) and `GET /assets/*` (bundles, content-hashed). Only
 * these routes get the page's security headers; the API's routes keep their own. The page is
 * same-origin with the API, so no CORS is needed or added.
 */
export async function webRoutes(app: FastifyInstance, options: WebRoutesOptions = {}): Promise<void> {
  const root = options.root ?? defaultWebRoot;
  const indexFile = join(root, "index.html");

  await app.register(fastifyStatic, {
    root: join(root, "assets"),
    prefix: "/assets/",
    wildcard: true,
    index: false,
    dotfiles: "ignore",
    cacheControl: false,
    // A page build that is missing is reported at `GET /`, not as a start-up warning.
    suppressWarning: true,
    setHeaders: (reply, path) => {
      setPageHeaders(reply);
      reply.header("cache-control", cacheControlFor(basename(path)));
    },
  });

  app.get("/", { schema: { hide: true } }, async (_request, reply) => {
    try {
      await access(indexFile);
    } catch {
      throw new AppError("service_unavailable", "The web page has not been built; run `npm run build`.");
    }
    return reply.sendFile("index.html", root);
  });
}
