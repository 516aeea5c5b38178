import assert from "node:assert/strict";
import { open } from "node:fs/promises";
import { describe, test } from "node:test";
import fc from "fast-check";
import sharp from "sharp";
import { sniff, sniffLength, type SniffResult } from "../../src/processing/sniff.js";
import { fixture, fixtures } from "../helpers/fixtures.js";

async function head(path: string): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(sniffLength);
    const { bytesRead } = await handle.read(buffer, 0, sniffLength, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

// What the magic bytes say about each file, whatever the file's name claims and whether or not the
// rest of the file is whole: broken and bomb files look like their format here and are refused
// later, by the header or the decode.
const expectedSniff: Record<string, SniffResult> = {
  "hostile/truncated-scan.jpg": { kind: "image", format: "jpeg" },
  "hostile/first-100-bytes.jpg": { kind: "image", format: "jpeg" },
  "hostile/truncated.png": { kind: "image", format: "png" },
  "hostile/truncated.gif": { kind: "image", format: "gif" },
  "hostile/truncated.webp": { kind: "image", format: "webp" },
  "hostile/empty.png": { kind: "unknown" },
  "hostile/random-bytes.jpg": { kind: "unknown" },
  "hostile/text.png": { kind: "unknown" },
  "hostile/page.jpg": { kind: "unknown" },
  "hostile/document.png": { kind: "unknown" },
  "hostile/archive.gif": { kind: "unknown" },
  "hostile/program.webp": { kind: "unknown" },
  "hostile/script.svg": { kind: "svg" },
  "hostile/script-svg.png": { kind: "svg" },
  "hostile/polyglot-gif-html.gif": { kind: "polyglot", format: "gif" },
  "hostile/polyglot-decodable.gif": { kind: "polyglot", format: "gif" },
  "hostile/bomb-40000x40000.png": { kind: "image", format: "png" },
  "hostile/bomb-65500x65500.jpg": { kind: "image", format: "jpeg" },
  "hostile/bomb-huge-screen.gif": { kind: "image", format: "gif" },
  "hostile/bomb-5000-frames.gif": { kind: "image", format: "gif" },
  "hostile/bomb-2000-pages.tiff": { kind: "image", format: "tiff" },
};

void describe("sniff on the fixture corpus", () => {
  for (const entry of fixtures) {
    const expected: SniffResult | undefined =
      entry.expect.outcome === "valid" ? { kind: "image", format: entry.expect.format } : expectedSniff[entry.name];
    void test(`${entry.name} sniffs as ${JSON.stringify(expected)}`, async () => {
      assert.ok(expected, `add ${entry.name} to expectedSniff`);
      assert.deepEqual(sniff(await head(entry.path)), expected);
    });
  }

  void test("the decodable polyglot is a whole GIF to sharp: only the markup check refuses it", async () => {
    const stats = await sharp(fixture("hostile/polyglot-decodable.gif").path, { failOn: "warning" }).stats();
    assert.equal(stats.channels.length > 0, true);
  });
});

const jpegStart = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]);
const pngSignature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function ftyp(major: string, compatible: string[]): Buffer {
  const size = 16 + 4 * compatible.length;
  const box = Buffer.alloc(size);
  box.writeUInt32BE(size, 0);
  box.write(`ftyp${major}`, 4, "latin1");
  compatible.forEach((brand, index) => box.write(brand, 16 + 4 * index, "latin1"));
  return box;
}

function withText(prefix: Buffer, text: string): Buffer {
  return Buffer.concat([prefix, Buffer.alloc(40, 0x11), Buffer.from(text, "latin1"), Buffer.alloc(40, 0x22)]);
}

void describe("sniff on crafted heads", () => {
  const cases: Array<[description: string, head: Buffer, expected: SniffResult]> = [
    ["big-endian TIFF", Buffer.from("MM\0*\0\0\0\x08", "latin1"), { kind: "image", format: "tiff" }],
    ["GIF87a", Buffer.from("GIF87a\x01\x00\x01\x00", "latin1"), { kind: "image", format: "gif" }],
    ["AVIF named by its major brand", ftyp("avif", ["mif1", "miaf"]), { kind: "image", format: "avif" }],
    ["AVIF named only among compatible brands", ftyp("mif1", ["miaf", "avif"]), { kind: "image", format: "avif" }],
    ["HEIC", ftyp("heic", ["mif1", "heic"]), { kind: "image", format: "heif" }],
    ["an MP4 video", ftyp("isom", ["iso2", "mp41"]), { kind: "unknown" }],
    ["a JPEG signature cut after two bytes", Buffer.from([0xff, 0xd8]), { kind: "unknown" }],
    ["a PNG signature with one byte wrong", Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x00]), { kind: "unknown" }],
    ["RIFF that is not WebP (a WAV file)", Buffer.from("RIFF\x24\x00\x00\x00WAVEfmt ", "latin1"), { kind: "unknown" }],
    ["SVG after a byte-order mark and blank lines", Buffer.from("\uFEFF\n\n  <svg xmlns='http://www.w3.org/2000/svg'/>"), { kind: "svg" }],
    [
      "SVG after an XML declaration, a comment and a doctype",
      Buffer.from('<?xml version="1.0"?>\n<!-- drawn by hand -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n<SVG>'),
      { kind: "svg" },
    ],
    ["HTML with an inline SVG is HTML, not an image", Buffer.from("<html><body><svg></svg></body></html>"), { kind: "unknown" }],
    ["a JPEG whose comment holds <html>", withText(jpegStart, "<html>"), { kind: "polyglot", format: "jpeg" }],
    ["a PNG whose text chunk holds <SCRIPT src=…>", withText(pngSignature, "<SCRIPT src=x>"), { kind: "polyglot", format: "png" }],
    ["a JPEG holding <!DOCTYPE html>", withText(jpegStart, "<!DOCTYPE html>"), { kind: "polyglot", format: "jpeg" }],
    ["a JPEG holding <a href=…>", withText(jpegStart, '<a href="//x">'), { kind: "polyglot", format: "jpeg" }],
    ["a JPEG holding <img/src=x>", withText(jpegStart, "<img/src=x onerror=alert(1)>"), { kind: "polyglot", format: "jpeg" }],
    // Short tags would match by chance in about one compressed image in a thousand: not checked.
    ["a JPEG holding <b> and <p>", withText(jpegStart, "<b><p>"), { kind: "image", format: "jpeg" }],
    ["a JPEG holding a tag name only as a prefix (<scripted)", withText(jpegStart, "<scripted"), { kind: "image", format: "jpeg" }],
    [
      "a JPEG holding an XMP packet",
      withText(jpegStart, '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><dc:title>a</dc:title></rdf:RDF></x:xmpmeta>'),
      { kind: "image", format: "jpeg" },
    ],
  ];
  for (const [description, bytes, expected] of cases) {
    void test(description, () => assert.deepEqual(sniff(bytes), expected));
  }

  void test("the check covers only the head it is given: markup past sniffLength is not read", () => {
    const bytes = Buffer.concat([jpegStart, Buffer.alloc(sniffLength, 0x11), Buffer.from("<script>")]);
    assert.deepEqual(sniff(bytes.subarray(0, sniffLength)), { kind: "image", format: "jpeg" });
  });
});

void describe("sniff on arbitrary bytes", () => {
  void test("never throws, and answers one of the known kinds", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: sniffLength }), (bytes) => {
        const result = sniff(Buffer.from(bytes));
        assert.ok(["image", "polyglot", "svg", "unknown"].includes(result.kind));
      }),
      { numRuns: 2000 },
    );
  });

  void test("any bytes after a PNG signature sniff as PNG unless they hold a tag", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: sniffLength - 8 }), (bytes) => {
        const tail = Buffer.from(bytes.map((byte) => (byte === 0x3c ? 0x3d : byte))); // no "<"
        assert.deepEqual(sniff(Buffer.concat([pngSignature, tail])), { kind: "image", format: "png" });
      }),
      { numRuns: 2000 },
    );
  });
});
