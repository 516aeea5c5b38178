// Access keys from the page: list, create (shown once, copied), revoke; signing out revokes the key
// the page's own sign-in minted; and the page hides key management on a server without it.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Page } from "playwright-core";
import { launchBrowser, password, screenshot, startServer, watchForProblems } from "./harness.js";

async function signIn(page: Page, baseUrl: string, username: string): Promise<string> {
  await page.goto(baseUrl + "/");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("heading", { name: "Your images" }).waitFor();
  const key = await page.evaluate(() => sessionStorage.getItem("imgvault.key"));
  assert.ok(key);
  return key;
}

test("a person lists, creates, copies and revokes access keys, and signing out revokes the page's key", async (t) => {
  const server = await startServer(t);
  const scriptKey = await server.keyFor("gina");
  const context = await launchBrowser(t);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.baseUrl });
  const page = await context.newPage();
  const problems = watchForProblems(page);
  const pageKey = await signIn(page, server.baseUrl, "gina");

  await page.getByRole("button", { name: "Access keys" }).click();
  const dialog = page.getByRole("dialog", { name: "Access keys" });
  await dialog.waitFor();
  const rows = dialog.locator("#key-rows > tr");
  await rows.filter({ hasText: "this tab" }).waitFor();
  assert.equal(await rows.count(), 2, "the key made for scripts and the page's own");
  assert.match(await rows.filter({ hasText: "this tab" }).innerText(), /login/);
  assert.doesNotMatch(await dialog.innerText(), new RegExp(pageKey.slice(12)), "no secret is shown");

  await dialog.getByLabel("Label").fill("backup script");
  await dialog.getByLabel("Scope").selectOption("read");
  await dialog.getByLabel("Expires").selectOption({ label: "After 1 day" });
  await dialog.getByRole("button", { name: "Create key" }).click();
  const secretField = dialog.getByLabel(/Your new key/);
  await secretField.waitFor();
  const secret = await secretField.inputValue();
  assert.match(secret, /^ivk_\S{20,}$/);
  await dialog.getByRole("button", { name: "Copy", exact: true }).click();
  await dialog.getByRole("status").filter({ hasText: "Key copied to the clipboard." }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
  await screenshot(page, "web-keys.png");

  const newRow = rows.filter({ hasText: "backup script" });
  await newRow.waitFor();
  assert.match(await newRow.innerText(), /Read only/);
  assert.equal((await server.request("/image/", { key: secret })).status, 200, "the new key reads");
  assert.equal((await server.request("/image/x.png/", { method: "DELETE", key: secret })).status, 403, "but may not write");
  const listed = (await (await server.request("/api/keys/", { key: scriptKey })).json()) as Array<{ label: string; expires_at: string | null }>;
  const backup = listed.find((key) => key.label === "backup script");
  const hoursLeft = (Date.parse(backup?.expires_at ?? "") - Date.now()) / 3_600_000;
  assert.ok(hoursLeft > 23 && hoursLeft <= 24, `expires in ${hoursLeft} hours`);

  await newRow.getByRole("button", { name: "Revoke backup script" }).click();
  await newRow.getByRole("button", { name: "Yes, revoke" }).click();
  await dialog.getByRole("status").filter({ hasText: "Revoked backup script." }).waitFor();
  await newRow.waitFor({ state: "detached" });
  assert.equal((await server.request("/image/", { key: secret })).status, 401, "the revoked key no longer works");

  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  assert.equal(await page.locator("#new-key-value").inputValue(), "", "the secret does not linger in the page");
  const revocation = page.waitForResponse((response) => response.url().includes("/api/keys/") && response.request().method() === "DELETE");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
  assert.equal((await revocation).status(), 200);
  assert.equal((await server.request("/image/", { key: pageKey })).status, 401, "signing out revoked the page's key");
  assert.equal((await server.request("/image/", { key: scriptKey })).status, 200, "other keys are untouched");
  assert.deepEqual(problems, []);
});

test("revoking the key the tab uses signs the page out", async (t) => {
  const server = await startServer(t);
  await server.keyFor("hugo");
  const context = await launchBrowser(t);
  const page = await context.newPage();
  const pageKey = await signIn(page, server.baseUrl, "hugo");
  await page.getByRole("button", { name: "Access keys" }).click();
  const own = page.locator("#key-rows > tr", { hasText: "this tab" });
  await own.getByRole("button", { name: /^Revoke/ }).click();
  await own.getByText("Revoke the key this tab uses? You will be signed out.").waitFor();
  await own.getByRole("button", { name: "Yes, revoke" }).click();
  await page.getByRole("alert").filter({ hasText: "The key this tab used was revoked." }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.equal((await server.request("/image/", { key: pageKey })).status, 401);
});

test("a key revoked elsewhere ends the session at the next request", async (t) => {
  const server = await startServer(t);
  const otherKey = await server.keyFor("ivy");
  const context = await launchBrowser(t);
  const page = await context.newPage();
  const pageKey = await signIn(page, server.baseUrl, "ivy");
  const keys = (await (await server.request("/api/keys/", { key: otherKey })).json()) as Array<{ id: string; prefix: string }>;
  const pageRecord = keys.find((key) => pageKey.startsWith(key.prefix));
  assert.ok(pageRecord);
  assert.equal((await server.request(`/api/keys/${pageRecord.id}/`, { method: "DELETE", key: otherKey })).status, 200);

  await page.getByLabel("Upload images").setInputFiles({ name: "late.png", mimeType: "image/png", buffer: Buffer.from("irrelevant") });
  await page.getByRole("alert").filter({ hasText: "Your access key is no longer valid. Sign in again." }).waitFor();
  await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
  assert.equal(await page.locator("#grid > li").count(), 0);
});

test("key management is hidden on a server without the keys API", async (t) => {
  const server = await startServer(t);
  const key = await server.keyFor("jane");
  const context = await launchBrowser(t);

  // The OpenAPI document says what the server offers.
  const described = await context.newPage();
  await described.route("**/openapi.json", (route) => route.fulfill({ json: { openapi: "3.1.0", paths: { "/image/": {} } } }));
  await described.goto(server.baseUrl + "/");
  await described.getByLabel("Access key", { exact: true }).fill(key);
  await described.getByRole("button", { name: "Use this key" }).click();
  await described.getByRole("heading", { name: "Your images" }).waitFor();
  assert.equal(await described.getByRole("button", { name: "Access keys" }).isVisible(), false);

  // Without that document, the button hides itself once the endpoint turns out to be missing.
  const undescribed = await context.newPage();
  await undescribed.route("**/openapi.json", (route) => route.fulfill({ status: 404, json: { error: { code: "not_found", message: "No such endpoint." } } }));
  await undescribed.route("**/api/keys/", (route) => route.fulfill({ status: 404, json: { error: { code: "not_found", message: "No such endpoint." } } }));
  await undescribed.goto(server.baseUrl + "/");
  await undescribed.getByLabel("Access key", { exact: true }).fill(key);
  await undescribed.getByRole("button", { name: "Use this key" }).click();
  const button = undescribed.getByRole("button", { name: "Access keys" });
  await button.waitFor();
  await button.click();
  await button.waitFor({ state: "hidden" });
  assert.equal(await undescribed.getByRole("dialog").count(), 0);
  await undescribed.locator("#announcer", { hasText: "This server does not offer key management." }).waitFor({ state: "attached" });
});
