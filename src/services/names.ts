import { AppError } from "../errors.js";

const maxNameBytes = 255;
// C0 controls, DEL and C1 controls: invisible, and some of them end strings in other systems.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const controlCharacters = /[\u0000-\u001f\u007f-\u009f]/u;
// Bidirectional overrides and isolates reorder how a name displays: "cat\u202Egnp.exe" shows as "catexe.png".
const bidiControls = /[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]/u;

/**
 * Validates an image name and returns it in Unicode NFC. Names are data, never paths, but they
 * still travel through URLs, headers and other people's file systems, so anything that could be
 * read as a path or hide characters is refused rather than silently rewritten.
 */
export function validateImageName(raw: string): string {
  const name = raw.normalize("NFC");
  const refuse = (why: string) => new AppError("invalid_name", `The image name ${why}.`);
  if (name.length === 0) throw refuse("is empty");
  if (Buffer.byteLength(name, "utf8") > maxNameBytes) throw refuse(`is longer than ${maxNameBytes} bytes`);
  if (controlCharacters.test(name)) throw refuse("contains control characters");
  if (bidiControls.test(name)) throw refuse("contains bidirectional control characters");
  if (name.includes("/") || name.includes("\\")) throw refuse("contains a slash or backslash");
  if (name.includes("..")) throw refuse('contains ".."');
  if (name === ".") throw refuse('is "."');
  if (name.trim() !== name) throw refuse("starts or ends with white space");
  if (name.endsWith(".")) throw refuse("ends with a dot");
  return name;
}

/** Splits `cat.tar.png` into `cat.tar` and `.png`; a leading dot is part of the stem. */
export function splitExtension(name: string): { stem: string; extension: string } {
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return { stem: name, extension: "" };
  return { stem: name.slice(0, dot), extension: name.slice(dot) };
}

/**
 * The next free variant of `name` as the original service chose them: `cat.png`, then
 * `cat-2.png`, `cat-3.png`, … `taken` holds the names of the form `cat-*.png` already in use.
 */
export function nextFreeName(name: string, taken: Iterable<string>): string {
  const { stem, extension } = splitExtension(name);
  let highest = 1;
  const pattern = new RegExp(`^${escapeRegExp(stem)}-(\\d+)${escapeRegExp(extension)}$`, "u");
  for (const candidate of taken) {
    const match = pattern.exec(candidate);
    if (match?.[1]) highest = Math.max(highest, Number(match[1]));
  }
  const suffix = `-${highest + 1}${extension}`;
  // Keep the result within the byte limit by shortening the stem, never the suffix.
  let shortened = stem;
  while (Buffer.byteLength(shortened + suffix, "utf8") > maxNameBytes) shortened = Array.from(shortened).slice(0, -1).join("");
  return shortened + suffix;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
