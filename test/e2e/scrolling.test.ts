// A library larger than one page: the grid loads further pages as the person scrolls, fetches
// thumbnails only for cards that come into view, and reports counts honestly while partial.
import assert from "node:assert/strict";
import { test } from "node:test";
import sharp from "sharp";
import { launchBrowser, startServer, watchForProblems } from "./harness.js";

const imageCount = 60;

test("scrolling loads the next page of images and their thumbnails as they come into view", async (t) => {
  const server = await startServer(t);
  const key = await server.keyFor("kim");
  for (let index = 1; index <= imageCount; index += 1) {
    const bytes = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: (index * 37) % 256, g: (index * 91) % 256, b: 160 } } })
      .png()
      .toBuffer();
    const form = new FormData();
    form.append("image", new Blob([new Uint8Array(bytes)]), `tile-${String(index).padStart(2, "0")}.png`);
    assert.equal((await server.request("/image/", { method: "POST", body: form, key })).status, 201);
  }

  const context = await launchBrowser(t, { viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = watchForProblems(page);
  const imageRequests = new Set<string>();
  page.on("request", (request) => {
    const path = new URL(request.url()).pathname;
    if (/^\/image\/[^/]+\/$/.test(path) && request.method() === "GET") imageRequests.add(decodeURIComponent(path));
  });
  await page.goto(server.baseUrl + "/");
  await page.getByLabel("Access key", { exact: true }).fill(key);
  await page.getByRole("button", { name: "Use this key" }).click();
  await page.getByRole("heading", { name: "Your images" }).waitFor();

  const cards = page.locator("#grid > li");
  assert.equal(await cards.count(), 48, "one page of 48");
  assert.equal(await cards.first().getAttribute("data-name"), "tile-60.png", "newest first");
  assert.match(await page.locator("#stats").innerText(), /^60 images · [\d.]+ kB in the 48 shown$/);
  await page.waitForFunction(() => document.querySelectorAll("#grid img[src^='blob:']").length > 0);
  const requestedBeforeScrolling = imageRequests.size;
  assert.ok(requestedBeforeScrolling < 48, `${requestedBeforeScrolling} thumbnails fetched before any scrolling`);
  assert.equal(await page.getByRole("button", { name: "Load more images" }).isVisible(), true);

  await page.mouse.wheel(0, 20_000);
  await cards.nth(imageCount - 1).waitFor();
  assert.equal(await cards.count(), imageCount);
  assert.equal(await cards.last().getAttribute("data-name"), "tile-01.png");
  assert.match(await page.locator("#stats").innerText(), /^60 images · [\d.]+ kB$/);
  await page.getByRole("button", { name: "Load more images" }).waitFor({ state: "hidden" });
  await page.waitForFunction(() => {
    const last = document.querySelector<HTMLImageElement>("#grid > li:last-child img");
    return last !== null && last.src.startsWith("blob:") && last.naturalWidth > 0;
  });
  assert.ok(imageRequests.has("/image/tile-01.png/"), "the last card's thumbnail was fetched once in view");
  assert.deepEqual(problems, []);
});
