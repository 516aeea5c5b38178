// A person manages their images through the page, in a real Chromium against a real server:
// sign in, upload (with progress), see thumbnails, a refused file, open one, rename, replace
// (with an If-Match conflict first), delete, sign out.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import type { Page } from "playwright-core";
import { launchBrowser, password, picture, screenshot, startServer, watchForProblems } from "./harness.js";

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

async function dimensionsShown(page: Page): Promise<string> {
  return page.locator("#detail-meta dt", { hasText: "Dimensions" }).locator("xpath=following-sibling::dd[1]").innerText();
}

test("a person signs in, uploads, browses, edits and deletes images, and signs out", async (t) => {
  const server = await startServer(t);
  const apiKey = await server.keyFor("alice");
  const context = await launchBrowser(t);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.baseUrl });
  const page = await context.newPage();
  const problems = watchForProblems(page);
  const thumbnailRequests: URL[] = [];
  const thumbnailTypes: string[] = [];
  page.on("response", (response) => {
    const url = new URL(response.url());
    if (!url.pathname.startsWith("/image/") || !url.searchParams.has("w")) return;
    thumbnailRequests.push(url);
    thumbnailTypes.push(response.headers()["content-type"] ?? "");
  });

  const files = [
    { name: "sunrise.jpg", mimeType: "image/jpeg", buffer: await picture("jpeg", 1200, 800, ["#f4a261", "#2a9d8f", "#e76f51"]) },
    { name: "forest.png", mimeType: "image/png", buffer: await picture("png", 640, 640, ["#8ecae6", "#2d6a4f", "#ffb703"]) },
    { name: "ocean.webp", mimeType: "image/webp", buffer: await picture("webp", 900, 500, ["#219ebc", "#023047", "#ffffff"]) },
  ];

  await t.test("the page asks to sign in, and a wrong password is refused with the API's message", async () => {
    await page.goto(server.baseUrl + "/");
    await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
    await page.getByLabel("Username").fill("alice");
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.getByRole("alert").filter({ hasText: "Unable to log in with the provided credentials." }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });

  await t.test("signing in shows an empty library and keeps the key in sessionStorage only", async () => {
    await page.getByLabel("Password").fill(password);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.getByRole("heading", { name: "Your images" }).waitFor();
    await page.getByText("No images yet.").waitFor();
    assert.equal(await page.locator("#stats").innerText(), "0 images · 0 B");
    const storage = await page.evaluate(() => ({
      session: Object.fromEntries(Object.entries(sessionStorage)),
      local: localStorage.length,
      url: location.href,
    }));
    assert.match(storage.session["imgvault.key"] ?? "", /\S{20,}/);
    assert.equal(storage.local, 0);
    assert.equal(storage.url, server.baseUrl + "/");
    // The key the page holds works against the API like any other.
    const response = await server.request("/image/", { key: storage.session["imgvault.key"] });
    assert.equal(response.status, 200);
  });

  await t.test("three files picked at once upload with their own progress bars, reaching 100%", async () => {
    const progressSeen: number[] = [];
    await page.exposeFunction("reportProgress", (value: number) => progressSeen.push(value));
    await page.evaluate(() => {
      const list = document.getElementById("upload-list");
      if (!list) throw new Error("no upload list");
      new MutationObserver(() => {
        for (const bar of list.querySelectorAll("progress")) (window as unknown as { reportProgress(v: number): void }).reportProgress(bar.value);
      }).observe(list, { subtree: true, attributes: true, childList: true });
    });
    await page.getByLabel("Upload images").setInputFiles(files);
    const rows = page.getByRole("list", { name: "Uploads" }).getByRole("listitem");
    await rows.filter({ hasText: "Uploaded" }).nth(2).waitFor();
    assert.equal(await rows.count(), 3);
    for (const file of files) {
      const row = rows.filter({ hasText: file.name });
      assert.equal(await row.locator(".upload-status").innerText(), "Uploaded");
      const bar = row.getByRole("progressbar", { name: `Upload progress of ${file.name}` });
      assert.equal(await bar.evaluate((element: HTMLProgressElement) => element.value), 100);
      assert.equal(await bar.evaluate((element: HTMLProgressElement) => element.max), 100);
    }
    assert.ok(progressSeen.includes(100), `progress values seen: ${progressSeen.join(", ")}`);
  });

  await t.test("the new images appear as thumbnails without a reload, with the count and bytes", async () => {
    const grid = page.getByRole("list", { name: "Images" });
    for (const file of files) await grid.getByRole("button", { name: new RegExp(file.name) }).waitFor();
    await page.waitForFunction(() => {
      const thumbnails = [...document.querySelectorAll<HTMLImageElement>("#grid img")];
      return thumbnails.length === 3 && thumbnails.every((image) => image.src.startsWith("blob:") && image.complete && image.naturalWidth > 0);
    });
    // Thumbnails are transformed by the server to the square the card draws, in device pixels.
    assert.equal(thumbnailRequests.length, 3);
    for (const url of thumbnailRequests) {
      assert.equal(url.searchParams.get("fit"), "cover");
      assert.equal(url.searchParams.get("format"), "webp");
      assert.equal(url.searchParams.get("h"), url.searchParams.get("w"));
    }
    assert.deepEqual(thumbnailTypes, ["image/webp", "image/webp", "image/webp"]);
    const drawn = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLImageElement>("#grid img")].map((image) => ({
        width: image.naturalWidth,
        height: image.naturalHeight,
        cssWidth: image.clientWidth,
      })),
    );
    for (const thumbnail of drawn) {
      assert.equal(thumbnail.width, thumbnail.height);
      assert.ok(thumbnail.width >= thumbnail.cssWidth && thumbnail.width < thumbnail.cssWidth + 128, JSON.stringify(thumbnail));
    }

    const totalBytes = files.reduce((sum, file) => sum + file.buffer.length, 0);
    const stats = await page.locator("#stats").innerText();
    assert.match(stats, /^3 images · /);
    const shownKb = Number(/· ([\d.]+) kB$/.exec(stats)?.[1]);
    assert.ok(Math.abs(shownKb - totalBytes / 1000) < 0.1, `${stats} for ${totalBytes} bytes`);
    assert.equal(await page.getByText("No images yet.").isVisible(), false);
  });

  await t.test("a text file dropped on the page is refused with the API's message, and nothing is added", async () => {
    const dataTransfer = await page.evaluateHandle(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(["just some notes\n"], "notes.png", { type: "image/png" }));
      return transfer;
    });
    await page.dispatchEvent("main", "dragover", { dataTransfer });
    await page.dispatchEvent("main", "drop", { dataTransfer });
    const row = page.getByRole("list", { name: "Uploads" }).getByRole("listitem").filter({ hasText: "notes.png" });
    await row.filter({ hasText: "Not uploaded" }).waitFor();
    assert.equal(await row.locator(".upload-status").innerText(), "Not uploaded: The file is not an image in a supported format.");
    assert.equal(await page.locator("#grid > li").count(), 3);
    const listing = (await (await server.request("/image/", { key: apiKey })).json()) as unknown[];
    assert.equal(listing.length, 3);
  });

  await screenshot(page, "web-grid.png");

  await t.test("finished uploads can be cleared from the list", async () => {
    await page.getByRole("button", { name: "Clear finished uploads" }).click();
    await page.getByRole("list", { name: "Uploads" }).waitFor({ state: "hidden" });
    assert.equal(await page.locator("#upload-list > li").count(), 0);
    assert.equal(await page.getByRole("button", { name: "Clear finished uploads" }).isVisible(), false);
    assert.equal(await page.locator("#grid > li").count(), 3);
  });

  await t.test("opening an image shows the picture and its metadata", async () => {
    await page.getByRole("list", { name: "Images" }).getByRole("button", { name: /forest\.png/ }).click();
    const dialog = page.getByRole("dialog", { name: "forest.png" });
    await dialog.waitFor();
    await page.waitForFunction(() => {
      const image = document.getElementById("detail-image") as HTMLImageElement | null;
      return image?.src.startsWith("blob:") && image.complete && image.naturalWidth === 640;
    });
    assert.equal(await dimensionsShown(page), "640 × 640 px");
    assert.equal(await dialog.locator("code.hash").innerText(), sha256(files[1]!.buffer));
    assert.match(await dialog.locator("#detail-meta").innerText(), /PNG \(image\/png\)/);
    await screenshot(page, "web-detail.png");
  });

  await t.test("download saves the original bytes under the image's name", async () => {
    const downloading = page.waitForEvent("download");
    await page.getByRole("button", { name: "Download original" }).click();
    const download = await downloading;
    assert.equal(download.suggestedFilename(), "forest.png");
    const path = await download.path();
    assert.equal(sha256(await readFile(path)), sha256(files[1]!.buffer));
  });

  await t.test("renaming updates the dialog, the grid and the server", async () => {
    await page.getByLabel("Name", { exact: true }).fill("forest-renamed.png");
    await page.getByRole("button", { name: "Rename" }).click();
    await page.getByRole("status").filter({ hasText: "Renamed to forest-renamed.png." }).waitFor();
    await page.getByRole("dialog", { name: "forest-renamed.png" }).waitFor();
    assert.equal(await page.locator('#grid > li[data-name="forest-renamed.png"] .card-name').innerText(), "forest-renamed.png");
    assert.equal((await server.request("/image/forest-renamed.png/", { key: apiKey })).status, 200);
    assert.equal((await server.request("/image/forest.png/", { key: apiKey })).status, 404);
  });

  const replacement = await picture("png", 300, 200, ["#cdb4db", "#6d597a", "#ffafcc"]);
  const changedMeanwhile = await picture("jpeg", 500, 400, ["#000000", "#444444", "#ffffff"]);

  await t.test("replacing an image someone else changed meanwhile is refused with a clear message", async () => {
    const form = new FormData();
    form.append("image", new Blob([new Uint8Array(changedMeanwhile)], { type: "image/jpeg" }), "other.jpg");
    const patched = await server.request("/image/forest-renamed.png/", { method: "PATCH", body: form, key: apiKey });
    assert.equal(patched.status, 200);

    await page.getByLabel("Replace with another file…").setInputFiles({ name: "replacement.png", mimeType: "image/png", buffer: replacement });
    const alert = page.locator("#detail-error");
    await alert.getByText("Someone changed this image after you opened it").waitFor();
    // The other person's version is intact.
    const current = Buffer.from(await (await server.request("/image/forest-renamed.png/", { key: apiKey })).arrayBuffer());
    assert.equal(sha256(current), sha256(changedMeanwhile));

    await page.getByRole("button", { name: "Reload the latest version" }).click();
    await page.getByRole("status").filter({ hasText: "This is the latest version." }).waitFor();
    assert.equal(await dimensionsShown(page), "500 × 400 px");
  });

  await t.test("replacing the latest version succeeds and updates the metadata", async () => {
    await page.getByLabel("Replace with another file…").setInputFiles({ name: "replacement.png", mimeType: "image/png", buffer: replacement });
    await page.getByRole("status").filter({ hasText: "Replaced with replacement.png." }).waitFor();
    assert.equal(await dimensionsShown(page), "300 × 200 px");
    await page.waitForFunction(() => (document.getElementById("detail-image") as HTMLImageElement | null)?.naturalWidth === 300);
    const stored = Buffer.from(await (await server.request("/image/forest-renamed.png/", { key: apiKey })).arrayBuffer());
    assert.equal(sha256(stored), sha256(replacement));
  });

  let signedLink = "";
  await t.test("copy link makes a signed URL that opens without a key in a fresh browser", async () => {
    await page.getByLabel("Expires after").selectOption({ label: "1 day" });
    await page.getByRole("button", { name: "Copy link" }).click();
    await page.getByRole("status").filter({ hasText: "Link copied to the clipboard." }).waitFor();
    signedLink = await page.getByLabel("Signed link").inputValue();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), signedLink);
    const link = new URL(signedLink);
    assert.equal(link.origin, server.baseUrl);
    assert.ok(link.searchParams.has("sig"), signedLink);
    const pageKey = await page.evaluate(() => sessionStorage.getItem("imgvault.key") ?? "");
    assert.ok(!signedLink.includes(pageKey) && !signedLink.includes(apiKey), "no key in the link");
    const expiresAt = Number(link.searchParams.get("exp")) * 1000;
    const hoursLeft = (expiresAt - Date.now()) / 3_600_000;
    assert.ok(hoursLeft > 23.9 && hoursLeft <= 24, `the link expires in ${hoursLeft} hours`);
    assert.match(await page.locator("#link-expires").innerText(), /^Works without a key until /);
    await screenshot(page, "web-detail-link.png");

    const stranger = await (await launchBrowser(t)).newPage();
    const response = await stranger.goto(signedLink);
    assert.equal(response?.status(), 200);
    assert.equal(response?.headers()["content-type"], "image/png");
    assert.equal(response?.request().headers()["authorization"], undefined);
    const shown = await stranger.evaluate(() => document.images[0]?.naturalWidth);
    assert.equal(shown, 300, "the replaced picture, as it is now");
  });

  await t.test("deleting asks for confirmation, then removes the image everywhere", async () => {
    await page.getByRole("button", { name: "Delete…" }).click();
    await page.getByText("Delete forest-renamed.png? This cannot be undone.").waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Cancel");
    await page.getByRole("button", { name: "Delete permanently" }).click();
    await page.getByRole("dialog").waitFor({ state: "hidden" });
    await page.locator('#grid > li[data-name="forest-renamed.png"]').waitFor({ state: "detached" });
    assert.equal(await page.locator("#grid > li").count(), 2);
    assert.match(await page.locator("#stats").innerText(), /^2 images · /);
    assert.equal((await server.request("/image/forest-renamed.png/", { key: apiKey })).status, 404);
    assert.equal((await fetch(signedLink)).status, 404, "the signed link of a deleted image");
  });

  await t.test("signing out forgets the key and takes the grid away", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
    assert.equal(await page.locator("#grid > li").count(), 0);
    assert.equal(await page.getByRole("list", { name: "Images" }).isVisible(), false);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await page.reload();
    await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
    assert.equal(await page.locator("#grid > li").count(), 0);
  });

  assert.deepEqual(problems, []);
});
