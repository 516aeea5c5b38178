// How the app serves the page: its security headers (and only on the page's routes), caching of
// the content-hashed bundles with Subresource Integrity, no route clash with the API, and a build
// that matches the sources.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import Fastify from "fastify";
import { registerErrorHandling } from "../../src/http/error-handler.js";
import { pageContentSecurityPolicy, webRoutes } from "../../src/http/routes/web.js";
import { buildTestApp } from "../helpers/app.js";
import { assertWebBuilt } from "./harness.js";

test("web/dist was built from the sources as they are now", async () => {
  const info = await assertWebBuilt();
  assert.match(info.script, /^app-[A-Z0-9]{8}\.js$/);
  assert.match(info.stylesheet, /^app-[A-Z0-9]{8}\.css$/);
});

test("GET / serves the page with a strict Content-Security-Policy and no inline code", async (t) => {
  const { app } = await buildTestApp(t);
  const response = await app.inject({ method: "GET", url: "/" });
  assert.equal(response.statusCode, 200);
  assert.match(String(response.headers["content-type"]), /^text\/html; charset=utf-8/);
  const csp = String(response.headers["content-security-policy"]);
  assert.equal(csp, pageContentSecurityPolicy);
  assert.match(csp, /(^|; )default-src 'none'(;|$)/);
  assert.match(csp, /(^|; )script-src 'self'(;|$)/);
  assert.match(csp, /(^|; )frame-ancestors 'none'(;|$)/);
  assert.match(csp, /require-trusted-types-for 'script'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
  assert.equal(response.headers["x-frame-options"], "DENY");
  assert.equal(response.headers["referrer-policy"], "no-referrer");
  assert.equal(response.headers["x-content-type-options"], "nosniff");
  assert.equal(response.headers["cache-control"], "no-cache");
  assert.equal(response.headers["access-control-allow-origin"], undefined);

  const html = response.body;
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1);
  for (const [, attributes, body] of scripts) {
    assert.match(attributes ?? "", /src="\/assets\/app-[A-Z0-9]{8}\.js"/);
    assert.equal(body?.trim(), "", "no inline script");
  }
  assert.doesNotMatch(html, /<style\b|\sstyle=|\son[a-z]+=/i, "no inline styles or event handler attributes");

  const head = await app.inject({ method: "HEAD", url: "/" });
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers["content-security-policy"], pageContentSecurityPolicy);
});

test("the page's bundles are content-hashed, cached for good and pinned by Subresource Integrity", async (t) => {
  const { app } = await buildTestApp(t);
  const html = (await app.inject({ method: "GET", url: "/" })).body;
  const references = [...html.matchAll(/(?:src|href)="(\/assets\/app-[A-Z0-9]{8}\.(?:js|css))" integrity="(sha384-[^"]+)"/g)];
  assert.equal(references.length, 2, "one script and one stylesheet");
  for (const [, path, integrity] of references) {
    const asset = await app.inject({ method: "GET", url: path ?? "" });
    assert.equal(asset.statusCode, 200, path);
    assert.match(String(asset.headers["content-type"]), path?.endsWith(".js") ? /^(text|application)\/javascript/ : /^text\/css/);
    assert.equal(asset.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal(asset.headers["content-security-policy"], pageContentSecurityPolicy);
    assert.equal(integrity, `sha384-${createHash("sha384").update(asset.rawPayload).digest("base64")}`);
  }
  const icon = await app.inject({ method: "GET", url: "/assets/favicon.svg" });
  assert.equal(icon.statusCode, 200);
  assert.equal(icon.headers["cache-control"], "public, max-age=3600");
});

test("the page's routes do not shadow the API, and the API keeps its own headers", async (t) => {
  const { app, userKey } = await buildTestApp(t);
  const key = await userKey();

  const list = await app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${key}` } });
  assert.equal(list.statusCode, 200);
  assert.match(String(list.headers["content-type"]), /^application\/json/);
  assert.notEqual(list.headers["content-security-policy"], pageContentSecurityPolicy);
  assert.equal(list.headers["x-frame-options"], undefined);

  const anonymous = await app.inject({ method: "GET", url: "/image/" });
  assert.equal(anonymous.statusCode, 401);
  assert.equal(anonymous.json().error.code, "unauthorized");

  const health = await app.inject({ method: "GET", url: "/healthz" });
  assert.equal(health.statusCode, 200);
  assert.equal(health.headers["content-security-policy"], undefined);

  for (const url of ["/assets/missing.js", "/assets/", "/index.html", "/no-such-page"]) {
    const missing = await app.inject({ method: "GET", url });
    assert.equal(missing.statusCode, 404, url);
    assert.equal(missing.json().error.code, "not_found", url);
  }
  for (const url of ["/assets/../package.json", "/assets/%2e%2e/package.json", "/assets/..%2f..%2fpackage.json", "/assets/%2e%2e%2fbuild-info.json"]) {
    const escaped = await app.inject({ method: "GET", url });
    assert.ok(escaped.statusCode >= 400 && escaped.statusCode < 500, `${url} answered ${escaped.statusCode}`);
    assert.doesNotMatch(escaped.body, /"name": "imgvault"|sourcesDigest/, url);
  }
});

test("the API's CORS stays closed: a cross-origin page gets no permission", async (t) => {
  const { app, userKey } = await buildTestApp(t);
  const key = await userKey();
  const simple = await app.inject({
    method: "GET",
    url: "/image/",
    headers: { origin: "https://elsewhere.example", authorization: `Token ${key}` },
  });
  assert.equal(simple.headers["access-control-allow-origin"], undefined);
  const preflight = await app.inject({
    method: "OPTIONS",
    url: "/image/",
    headers: { origin: "https://elsewhere.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization" },
  });
  assert.equal(preflight.headers["access-control-allow-origin"], undefined);
  assert.equal(preflight.headers["access-control-allow-headers"], undefined);
});

test("a page that was never built answers 503 with a hint, not a stack trace", async (t) => {
  const emptyRoot = await mkdtemp(join(tmpdir(), "imgvault-web-"));
  const app = Fastify({ logger: false });
  registerErrorHandling(app);
  await app.register(webRoutes, { root: emptyRoot });
  t.after(async () => {
    await app.close();
    await rm(emptyRoot, { recursive: true, force: true });
  });
  const response = await app.inject({ method: "GET", url: "/" });
  assert.equal(response.statusCode, 503);
  assert.deepEqual(response.json(), {
    error: { code: "service_unavailable", message: "The web page has not been built; run `npm run build`." },
  });
});
