// Builds the management page (web/) into web/dist: one bundled, minified script and stylesheet
// with content hashes in their names (so they can be cached forever), and index.html pointing at
// them with Subresource Integrity. Also writes build-info.json holding a digest of the sources, so a
// test can tell whether web/dist is stale. Run with `npm run build:web` (after `tsc -p web`).
import { createHash } from "node:crypto";
import { cp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const webRoot = join(repoRoot, "web");
export const webDist = join(webRoot, "dist");
const sourceDirs = [join(webRoot, "src"), join(webRoot, "public")];
const sourceFiles = [join(webRoot, "index.html"), fileURLToPath(import.meta.url)];

export interface BuildInfo {
  /** SHA-256 over the page's sources and this script; see `webSourcesDigest`. */
  sourcesDigest: string;
  script: string;
  stylesheet: string;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

/** A digest of every file the build reads, to detect a web/dist that no longer matches its sources. */
export async function webSourcesDigest(): Promise<string> {
  const files = [...sourceFiles, ...(await Promise.all(sourceDirs.map(listFiles))).flat()].sort();
  const hash = createHash("sha256");
  for (const file of files) {
    hash.update(relative(repoRoot, file)).update("\0").update(await readFile(file)).update("\0");
  }
  return hash.digest("hex");
}

function integrity(bytes: Uint8Array): string {
  return `sha384-${createHash("sha384").update(bytes).digest("base64")}`;
}

export async function buildWeb(): Promise<BuildInfo> {
  const sourcesDigest = await webSourcesDigest();
  await rm(webDist, { recursive: true, force: true });
  await mkdir(join(webDist, "assets"), { recursive: true });
  const result = await build({
    entryPoints: { app: join(webRoot, "src", "main.ts") },
    outdir: join(webDist, "assets"),
    entryNames: "[name]-[hash]",
    bundle: true,
    minify: true,
    format: "esm",
    target: ["chrome111", "firefox114", "safari16.4"],
    metafile: true,
    legalComments: "none",
    logLevel: "warning",
  });

  const outputs = Object.keys(result.metafile.outputs);
  const script = outputs.find((file) => file.endsWith(".js"));
  const stylesheet = outputs.find((file) => file.endsWith(".css"));
  if (!script || !stylesheet) throw new Error(`esbuild produced no script or stylesheet: ${outputs.join(", ")}`);
  const scriptFile = resolve(repoRoot, script);
  const stylesheetFile = resolve(repoRoot, stylesheet);

  await cp(join(webRoot, "public"), join(webDist, "assets"), { recursive: true });
  const template = await readFile(join(webRoot, "index.html"), "utf8");
  const html = template
    .replace(
      "<!-- stylesheet -->",
      `<link rel="stylesheet" href="/assets/${basename(stylesheetFile)}" integrity="${integrity(await readFile(stylesheetFile))}">`,
    )
    .replace(
      "<!-- script -->",
      `<script type="module" src="/assets/${basename(scriptFile)}" integrity="${integrity(await readFile(scriptFile))}"></script>`,
    );
  if (html.includes("<!-- stylesheet -->") || html.includes("<!-- script -->") || html === template) {
    throw new Error("web/index.html lacks the <!-- stylesheet --> or <!-- script --> placeholder");
  }
  await writeFile(join(webDist, "index.html"), html);

  const info: BuildInfo = { sourcesDigest, script: basename(scriptFile), stylesheet: basename(stylesheetFile) };
  await writeFile(join(webDist, "build-info.json"), `${JSON.stringify(info, null, 2)}\n`);
  return info;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const info = await buildWeb();
  console.log(`web/dist: ${info.script}, ${info.stylesheet}`);
}
