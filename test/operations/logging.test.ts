import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import { redactUrl } from "../../src/http/logging.js";
import { buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";

/** Every line the app's logger writes, as pino writes it (JSON text). */
function captureLogs(): { stream: Writable; text(): string; lines(): Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const text = () => chunks.join("");
  return {
    stream,
    text,
    lines: () =>
      text()
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

describe("logs", () => {
  test("are JSON lines with the request id (taken from X-Request-Id and returned); keys, passwords and signatures never appear", async (t) => {
    const logs = captureLogs();
    const testApp = await buildTestApp(t, {}, { logger: { level: "trace", stream: logs.stream } });
    const { app } = testApp;
    const password = "correct horse battery staple";
    const key = await testApp.userKey("logged-user");
    const secrets = [password, key];

    const form = await app.inject({
      method: "POST",
      url: "/api/token/",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: `username=logged-user&password=${encodeURIComponent(password)}`,
    });
    assert.equal(form.statusCode, 200);
    secrets.push(form.json<{ token: string }>().token);
    const json = await app.inject({ method: "POST", url: "/api/token/", payload: { username: "logged-user", password } });
    assert.equal(json.statusCode, 200);
    secrets.push(json.json<{ token: string }>().token);
    const wrongPassword = "not-the-password-0123";
    secrets.push(wrongPassword);
    assert.equal((await app.inject({ method: "POST", url: "/api/token/", payload: { username: "logged-user", password: wrongPassword } })).statusCode, 400);

    const traced = await app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${key}`, "x-request-id": "trace-me-0042" } });
    assert.equal(traced.statusCode, 200);
    assert.equal(traced.headers["x-request-id"], "trace-me-0042", "the caller's request id is returned");
    const generated = await app.inject({ method: "GET", url: "/healthz" });
    assert.match(String(generated.headers["x-request-id"]), /^[0-9a-f-]{36}$/, "one is made up when none is given");

    assert.equal((await upload(app, key, fixture("valid/small.png").path, "a.png", { headers: { authorization: `Bearer ${key}` } })).statusCode, 201);
    const wrongKey = "ivk_this-key-does-not-exist-but-is-still-secret";
    secrets.push(wrongKey);
    assert.equal((await app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${wrongKey}` } })).statusCode, 401);
    const signature = "c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtbGVhaw";
    secrets.push(signature);
    await app.inject({ method: "GET", url: `/image/a.png/?w=10&exp=9999999999&kid=k1&sig=${signature}`, headers: { authorization: `Token ${key}` } });

    const text = logs.text();
    for (const secret of secrets) assert.equal(text.includes(secret), false, `a secret leaked into the logs: ${secret.slice(0, 8)}…`);
    const lines = logs.lines();
    assert.ok(lines.length > 10, "requests are logged");
    const tracedLines = lines.filter((line) => line.reqId === "trace-me-0042");
    assert.ok(tracedLines.some((line) => line.msg === "incoming request"));
    assert.ok(tracedLines.some((line) => line.msg === "request completed"));
    const incoming = tracedLines.find((line) => line.msg === "incoming request") as { req: { url: string; headers: Record<string, string> } };
    assert.equal(incoming.req.headers.authorization, "[redacted]", "that a key came is logged, never the key");
    const signed = lines.find((line) => (line.req as { url?: string } | undefined)?.url?.includes("exp=9999999999")) as { req: { url: string } };
    assert.match(signed.req.url, /sig=\[redacted\]/);
    assert.match(signed.req.url, /w=10/, "the rest of the URL stays");
  });

  test("objects logged by hand are redacted too", async (t) => {
    const logs = captureLogs();
    const { app } = await buildTestApp(t, {}, { logger: { level: "info", stream: logs.stream } });
    app.log.info({ password: "hunter2-secret", user: { password: "nested-secret", token: "token-secret" }, headers: { authorization: "Token abc-secret" } }, "by hand");
    const text = logs.text();
    for (const secret of ["hunter2-secret", "nested-secret", "token-secret", "abc-secret"]) assert.equal(text.includes(secret), false, secret);
    assert.match(text, /by hand/);
  });

  test("redactUrl hides credential-bearing query values and nothing else", () => {
    assert.equal(redactUrl("/image/a.png/"), "/image/a.png/");
    assert.equal(redactUrl("/i/x?w=1&sig=abc&Token=t&q=2"), "/i/x?w=1&sig=[redacted]&Token=[redacted]&q=2");
    assert.equal(redactUrl("/i/x?sig"), "/i/x?sig=[redacted]");
    assert.equal(redactUrl("/i/x?%73ig=abc"), "/i/x?%73ig=[redacted]");
  });
});
