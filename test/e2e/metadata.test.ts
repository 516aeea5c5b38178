// What the server computes at upload, as the page shows it: the thumbhash placeholder painted
// before the thumbnail arrives, and the camera details of a photo.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Route } from "playwright-core";
import sharp from "sharp";
import { launchBrowser, startServer, watchForProblems } from "./harness.js";

/** A JPEG as a camera writes it: make, model, lens, capture time with its offset, GPS. */
async function cameraJpeg(): Promise<Buffer> {
  const scene = `<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600">
    <rect width="800" height="600" fill="#1d3557"/><circle cx="560" cy="180" r="90" fill="#f1faee"/>
    <rect y="420" width="800" height="180" fill="#e63946"/></svg>`;
  return sharp(Buffer.from(scene))
    .withExif({
      IFD0: { Make: "Canon", Model: "Canon EOS R5" },
      IFD2: { DateTimeOriginal: "2023:07:14 18:30:05", OffsetTimeOriginal: "+02:00", LensModel: "RF24-105mm F4 L IS USM" },
      IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 51/1 2976/100", GPSLongitudeRef: "E", GPSLongitude: "2/1 17/1 4020/100" },
    })
    .jpeg()
    .toBuffer();
}

test("the grid paints the thumbhash first, and the detail view shows the camera details", async (t) => {
  const server = await startServer(t);
  const key = await server.keyFor("lena");
  const form = new FormData();
  form.append("image", new Blob([new Uint8Array(await cameraJpeg())]), "harbour.jpg");
  const uploaded = (await (await server.request("/image/", { method: "POST", body: form, key })).json()) as { thumbhash: string | null };
  assert.ok(uploaded.thumbhash, "the server computed a thumbhash");

  // Far from the photo's zone: the capture time must still read as the camera recorded it.
  const context = await launchBrowser(t, { timezoneId: "Pacific/Auckland" });
  const page = await context.newPage();
  const problems = watchForProblems(page);
  // Hold the thumbnail back to see what the card shows meanwhile.
  let releaseThumbnail: () => void = () => {};
  const thumbnailHeld = new Promise<Route>((resolve) => {
    void page.route(
      (url) => url.pathname === "/image/harbour.jpg/" && url.searchParams.has("w"),
      (route) => {
        resolve(route);
        return new Promise<void>((release) => {
          releaseThumbnail = release;
        }).then(() => route.continue());
      },
    );
  });

  await page.goto(server.baseUrl + "/");
  await page.getByLabel("Access key", { exact: true }).fill(key);
  await page.getByRole("button", { name: "Use this key" }).click();
  await thumbnailHeld;
  const thumbnail = page.locator('#grid > li[data-name="harbour.jpg"] img');
  assert.match((await thumbnail.getAttribute("src")) ?? "", /^data:image\/png;base64,/);
  assert.equal(await thumbnail.evaluate((image: HTMLImageElement) => image.classList.contains("is-placeholder") && image.naturalWidth > 0), true);
  // The placeholder has the picture's colours: mostly dark blue.
  const average = await thumbnail.evaluate((image: HTMLImageElement) => {
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const drawing = canvas.getContext("2d");
    if (!drawing) throw new Error("no 2d context");
    drawing.drawImage(image, 0, 0);
    const pixels = drawing.getImageData(0, 0, canvas.width, canvas.height).data;
    const sums = [0, 0, 0];
    for (let index = 0; index < pixels.length; index += 4) for (let channel = 0; channel < 3; channel += 1) sums[channel]! += pixels[index + channel]!;
    return sums.map((sum) => sum / (pixels.length / 4));
  });
  assert.ok(average[2]! > average[1]!, `placeholder average colour ${average.map(Math.round).join(",")}`);

  releaseThumbnail();
  await page.waitForFunction(() => {
    const image = document.querySelector<HTMLImageElement>('#grid > li[data-name="harbour.jpg"] img');
    return image?.src.startsWith("blob:") && !image.classList.contains("is-placeholder") && image.naturalWidth > 0;
  });

  await page.getByRole("button", { name: /harbour\.jpg/ }).click();
  await page.getByRole("dialog", { name: "harbour.jpg" }).waitFor();
  const value = (term: string) => page.locator("#detail-meta dt", { hasText: term }).locator("xpath=following-sibling::dd[1]").innerText();
  assert.equal(await value("Camera"), "Canon EOS R5");
  assert.equal(await value("Lens"), "RF24-105mm F4 L IS USM");
  assert.equal(await value("Taken"), "Jul 14, 2023, 6:30 PM (UTC+02:00)", "the time as the camera recorded it");
  assert.equal(await value("Location"), "Contains GPS coordinates");
  assert.deepEqual(problems, []);
});
