// The page for everyone: a pasted access key, keyboard alone, labels for assistive technology,
// text contrast, and a phone-sized screen.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Page } from "playwright-core";
import { launchBrowser, picture, screenshot, startServer, watchForProblems, type E2eServer } from "./harness.js";

async function upload(server: E2eServer, key: string, name: string, bytes: Buffer): Promise<void> {
  const form = new FormData();
  form.append("image", new Blob([new Uint8Array(bytes)]), name);
  const response = await server.request("/image/", { method: "POST", body: form, key });
  assert.equal(response.status, 201);
}

async function signInWithKey(page: Page, key: string): Promise<void> {
  await page.getByLabel("Access key", { exact: true }).fill(key);
  await page.getByRole("button", { name: "Use this key" }).click();
  await page.getByRole("heading", { name: "Your images" }).waitFor();
}

/** What has keyboard focus, described for assertions. */
function focused(page: Page): Promise<{ id: string; text: string; inDialog: string | null; onBody: boolean }> {
  return page.evaluate(() => {
    const element = document.activeElement as HTMLElement | null;
    return {
      onBody: element === document.body,
      id: element?.id ?? "",
      text: (element?.textContent ?? "").trim().replace(/\s+/g, " "),
      inDialog: element?.closest("dialog")?.id ?? null,
    };
  });
}

/** Visible form controls and buttons that assistive technology could not name. */
function unlabelledControls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const controls = document.querySelectorAll<HTMLElement>("input, select, textarea, button, progress, [role=button]");
    const missing: string[] = [];
    for (const control of controls) {
      const input = control as HTMLInputElement;
      const visible = control.checkVisibility() || (input.labels?.length ?? 0) > 0;
      if (!visible || control.closest("[hidden]") || control.closest("dialog:not([open])")) continue;
      const named =
        (input.labels && [...input.labels].some((label) => label.textContent?.trim())) ||
        control.getAttribute("aria-label")?.trim() ||
        (control.getAttribute("aria-labelledby") ?? "").split(/\s+/).some((id) => document.getElementById(id)?.textContent?.trim()) ||
        (control.tagName === "BUTTON" && control.textContent?.trim());
      if (!named) missing.push(control.outerHTML.slice(0, 120));
    }
    return missing;
  });
}

/**
 * Text whose contrast with its background is below WCAG AA: 4.5:1, or 3:1 for large text
 * (24px, or 18.66px bold). Backgrounds are found by walking up to the first opaque ancestor.
 * Plain JavaScript in a string: tsx would wrap the named helpers of a function in a `__name`
 * call that does not exist in the page.
 */
const contrastCheck = `(() => {
  const parse = (colour) => {
    const parts = (colour.match(/[\\d.]+/g) || []).map(Number);
    return [parts[0] || 0, parts[1] || 0, parts[2] || 0, parts[3] === undefined ? 1 : parts[3]];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const luminance = (rgb) => {
    const channel = (value) => {
      const s = value / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2]);
  };
  const background = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour[3] === 0) continue;
      layers.push(colour);
      if (colour[3] === 1) break;
    }
    let result = [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  const failures = [];
  for (const element of document.querySelectorAll("body *")) {
    const ownText = [...element.childNodes].some((node) => node.nodeType === Node.TEXT_NODE && node.textContent.trim());
    if (!ownText || !element.checkVisibility() || element.closest(".visually-hidden, :disabled")) continue;
    if (element.closest("dialog:not([open])")) continue;
    const style = getComputedStyle(element);
    const back = background(element);
    const text = over(parse(style.color), back);
    const [lighter, darker] = [luminance(text), luminance(back)].sort((a, b) => b - a);
    const ratio = (lighter + 0.05) / (darker + 0.05);
    const size = Number.parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) failures.push(ratio.toFixed(2) + ':1 "' + element.textContent.trim().slice(0, 40) + '"');
  }
  return failures;
})()`;

function contrastFailures(page: Page): Promise<string[]> {
  return page.evaluate(contrastCheck) as Promise<string[]>;
}

test("signing in with a pasted access key, kept for this tab only", async (t) => {
  const server = await startServer(t);
  const key = await server.keyFor("carol");
  const context = await launchBrowser(t);
  const page = await context.newPage();
  const problems = watchForProblems(page);
  await page.goto(server.baseUrl + "/");

  await page.getByLabel("Access key", { exact: true }).fill("ivk_this-is-not-a-key");
  await page.getByRole("button", { name: "Use this key" }).click();
  await page.getByRole("alert").filter({ hasText: "That access key is not valid" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  await signInWithKey(page, key);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("imgvault.key")), key);
  assert.ok(!page.url().includes(key));

  await page.reload();
  await page.getByRole("heading", { name: "Your images" }).waitFor();

  // sessionStorage belongs to the tab: another tab starts signed out.
  const otherTab = await context.newPage();
  await otherTab.goto(server.baseUrl + "/");
  await otherTab.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
  assert.equal(await otherTab.evaluate(() => sessionStorage.length + localStorage.length), 0);
  assert.deepEqual(problems, []);
});

test("the page works with the keyboard alone, and every control has a label", async (t) => {
  const server = await startServer(t);
  const key = await server.keyFor("dave");
  await upload(server, key, "lake.png", await picture("png", 400, 300, ["#48cae4", "#0077b6", "#ffd166"]));
  const context = await launchBrowser(t);
  const page = await context.newPage();
  const problems = watchForProblems(page);
  await page.goto(server.baseUrl + "/");
  await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();

  assert.equal((await focused(page)).id, "username", "the username field has focus on arrival");
  assert.deepEqual(await unlabelledControls(page), []);
  await page.keyboard.press("Shift+Tab");
  assert.equal((await focused(page)).text, "Skip to content");
  await page.keyboard.press("Tab");

  await page.keyboard.type("dave");
  await page.keyboard.press("Tab");
  assert.equal((await focused(page)).id, "password");
  await page.keyboard.type("correct horse battery staple");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Your images" }).waitFor();
  assert.equal((await focused(page)).id, "library-heading", "focus moves to the library after signing in");
  assert.deepEqual(await unlabelledControls(page), []);

  await page.keyboard.press("Tab");
  assert.equal((await focused(page)).id, "file-input", "the upload picker is next");
  const uploadLabelOutline = await page.locator('label[for="file-input"]').evaluate((label) => getComputedStyle(label).outlineStyle);
  assert.equal(uploadLabelOutline, "solid", "the upload button shows the focus of its hidden input");
  await page.keyboard.press("Tab");
  assert.match((await focused(page)).text, /^lake\.png/);

  await page.keyboard.press("Enter");
  await page.getByRole("dialog", { name: "lake.png" }).waitFor();
  assert.equal((await focused(page)).inDialog, "detail", "focus moves into the dialog");
  assert.deepEqual(await unlabelledControls(page), []);
  // The page behind the modal dialog is inert: Tab cycles through the dialog (and the browser's
  // own controls, which leave document.body as the active element) but never reaches the page.
  const reached = new Set<string>();
  for (let i = 0; i < 16; i += 1) {
    await page.keyboard.press("Tab");
    const where = await focused(page);
    if (where.inDialog === null && !where.onBody) assert.fail(`Tab left the dialog for #${where.id} "${where.text}"`);
    if (where.inDialog) reached.add(where.id || where.text);
  }
  for (const control of ["rename-input", "replace-input", "download", "delete"]) {
    assert.ok(reached.has(control), `Tab reaches ${control} (reached: ${[...reached].join(", ")})`);
  }
  await page.keyboard.press("Escape");
  await page.getByRole("dialog").waitFor({ state: "hidden" });
  assert.match((await focused(page)).text, /^lake\.png/, "focus returns to the image that was opened");

  const keysButton = page.getByRole("button", { name: "Access keys" });
  if (await keysButton.isVisible()) {
    await keysButton.focus();
    await page.keyboard.press("Enter");
    await page.getByRole("dialog", { name: "Access keys" }).waitFor();
    assert.deepEqual(await unlabelledControls(page), []);
    await page.keyboard.press("Escape");
    assert.equal((await focused(page)).text, "Access keys");
  }
  assert.deepEqual(problems, []);
});

test("text has sufficient contrast in every view", async (t) => {
  const server = await startServer(t);
  const key = await server.keyFor("erin");
  await upload(server, key, "dune.jpg", await picture("jpeg", 600, 400, ["#ffe8d6", "#cb997e", "#6b705c"]));
  const context = await launchBrowser(t);
  const page = await context.newPage();
  await page.goto(server.baseUrl + "/");
  await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
  await page.getByLabel("Access key", { exact: true }).fill("not-a-key");
  await page.getByRole("button", { name: "Use this key" }).click();
  await page.getByRole("alert").filter({ hasText: "not valid" }).waitFor();
  assert.deepEqual(await contrastFailures(page), [], "sign-in view");

  await signInWithKey(page, key);
  await page.getByLabel("Upload images").setInputFiles([
    { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not an image") },
    { name: "sea.png", mimeType: "image/png", buffer: await picture("png", 200, 200, ["#90e0ef", "#03045e", "#fff"]) },
  ]);
  await page.locator(".upload[data-state=failed]").waitFor();
  await page.locator(".upload[data-state=done]").waitFor();
  assert.deepEqual(await contrastFailures(page), [], "library view");

  await page.getByRole("button", { name: /dune\.jpg/ }).click();
  await page.getByRole("dialog", { name: "dune.jpg" }).waitFor();
  await page.getByRole("button", { name: "Delete…" }).click();
  assert.deepEqual(await contrastFailures(page), [], "detail view");

  // The check itself notices faint text.
  await page.evaluate(() => {
    const faint = document.createElement("p");
    faint.textContent = "faint text";
    faint.style.color = "#b0b0b0";
    document.getElementById("detail-status")?.after(faint);
  });
  assert.deepEqual(await contrastFailures(page), ['2.17:1 "faint text"']);
});

test("the page fits a phone-sized screen", async (t) => {
  const server = await startServer(t);
  const key = await server.keyFor("frank");
  for (const [index, colours] of ([["#f72585", "#3a0ca3", "#4cc9f0"], ["#80ffdb", "#5390d9", "#7400b8"], ["#ffbe0b", "#fb5607", "#ff006e"]] as const).entries()) {
    await upload(server, key, `photo-${index + 1}.jpg`, await picture("jpeg", 1000, 750, [...colours]));
  }
  const context = await launchBrowser(t, { viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  const problems = watchForProblems(page);
  await page.goto(server.baseUrl + "/");
  await page.getByRole("heading", { name: "Sign in to imgvault" }).waitFor();
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.equal(await overflow(), 0, "sign-in view scrolls sideways");

  await signInWithKey(page, key);
  await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>("#grid img")].every((image) => image.naturalWidth > 0));
  assert.equal(await overflow(), 0, "library view scrolls sideways");
  const columns = await page.evaluate(() => new Set([...document.querySelectorAll("#grid > li")].map((item) => item.getBoundingClientRect().left)).size);
  assert.ok(columns >= 2, `${columns} column(s) of thumbnails on a phone`);
  await screenshot(page, "web-phone-grid.png");

  await page.getByRole("button", { name: /photo-2\.jpg/ }).click();
  const dialog = page.getByRole("dialog", { name: "photo-2.jpg" });
  await dialog.waitFor();
  await page.waitForFunction(() => (document.getElementById("detail-image") as HTMLImageElement | null)?.naturalWidth === 1000);
  const box = await dialog.boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `dialog spans ${JSON.stringify(box)}`);
  const pictureBox = await page.locator("#detail-image").boundingBox();
  assert.ok(pictureBox && pictureBox.width <= 390, "the picture is scaled to the screen");
  await screenshot(page, "web-phone-detail.png");
  assert.deepEqual(problems, []);
});
