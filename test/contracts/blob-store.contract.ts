/**
 * The `BlobStore` contract, written once and run against every backend (see
 * test/storage/*.test.ts). Each test gets a fresh, empty store from the factory and real bytes in a
 * temporary directory, and asserts one promise of the interface in src/storage/blob-store.ts.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { afterEach, beforeEach, describe, it } from "node:test";
import { AppError } from "../../src/errors.js";
import type { BlobInfo, BlobStore } from "../../src/storage/blob-store.js";

/** A store for one test and how to throw it away afterwards. */
export interface BlobStoreFixture {
  store: BlobStore;
  dispose(): Promise<void>;
}

export interface BlobStoreContractOptions {
  /** Skips the whole suite, saying why (node:test reports it as skipped). */
  skip?: string | false;
  /**
   * Size of the "large" blob. Backends with a multipart path should open stores whose multipart
   * threshold lies below it, so the contract covers that path too. Default 12 MiB + 123 bytes.
   */
  largeBlobBytes?: number;
}

interface LocalBlob {
  path: string;
  sha256: string;
  size: number;
}

export function blobStoreContract(
  name: string,
  openStore: () => Promise<BlobStoreFixture>,
  options: BlobStoreContractOptions = {},
): void {
  const largeBlobBytes = options.largeBlobBytes ?? 12 * 1024 * 1024 + 123;

  void describe(`BlobStore contract: ${name}`, { skip: options.skip ?? false }, () => {
    let fixture: BlobStoreFixture;
    let store: BlobStore;
    let workDir: string;

    void beforeEach(async () => {
      workDir = await mkdtemp(join(tmpdir(), "imgvault-blob-contract-"));
      fixture = await openStore();
      store = fixture.store;
    });

    void afterEach(async () => {
      await fixture.dispose();
      await rm(workDir, { recursive: true, force: true });
    });

    async function localBlob(bytes: Buffer): Promise<LocalBlob> {
      const path = join(workDir, `upload-${randomBytes(6).toString("hex")}`);
      await writeFile(path, bytes);
      return { path, sha256: sha256Of(bytes), size: bytes.length };
    }

    void it("check() resolves when the store answers", async () => {
      await store.check();
    });

    void it("reads back exactly the bytes that were put", async () => {
      const bytes = randomBytes(100_003);
      const blob = await localBlob(bytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      assert.deepEqual(await readAll(await store.read(blob.sha256)), bytes);
    });

    void it("reads inclusive ranges at the edges and in the middle", async () => {
      const bytes = randomBytes(4099);
      const blob = await localBlob(bytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      const ranges: Array<[number, number]> = [
        [0, 0],
        [0, 1],
        [bytes.length - 1, bytes.length - 1],
        [bytes.length - 2, bytes.length - 1],
        [0, bytes.length - 1],
        [1000, 2047],
      ];
      for (const [start, end] of ranges) {
        const got = await readAll(await store.read(blob.sha256, { start, end }));
        assert.deepEqual(got, bytes.subarray(start, end + 1), `range ${start}-${end}`);
      }
    });

    void it("stores a zero-byte blob", async () => {
      const blob = await localBlob(Buffer.alloc(0));
      await store.putFile(blob.path, blob.sha256, 0);
      assert.equal((await readAll(await store.read(blob.sha256))).length, 0);
      assert.equal((await store.stat(blob.sha256))?.size, 0);
    });

    void it("accepts a put of a blob that already exists and keeps the same bytes", async () => {
      const bytes = randomBytes(5000);
      const blob = await localBlob(bytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      const again = await localBlob(bytes);
      await store.putFile(again.path, again.sha256, again.size);
      assert.deepEqual(await readAll(await store.read(blob.sha256)), bytes);
      assert.deepEqual(await collect(store.list()).then((infos) => infos.map((info) => info.sha256)), [blob.sha256]);
    });

    void it("leaves the local file in place, so the caller may put it again", async () => {
      const bytes = randomBytes(2048);
      const blob = await localBlob(bytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      assert.deepEqual(await readFile(blob.path), bytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      assert.deepEqual(await readFile(blob.path), bytes);
      assert.deepEqual(await readAll(await store.read(blob.sha256)), bytes);
    });

    void it("rejects a read of a missing blob with not_found, before producing any byte", async () => {
      const missing = sha256Of(randomBytes(32));
      await assert.rejects(store.read(missing), isAppError("not_found"));
      await assert.rejects(store.read(missing, { start: 0, end: 9 }), isAppError("not_found"));
    });

    void it("stat() gives size and write time, and undefined for a missing blob", async () => {
      const before = Date.now();
      const bytes = randomBytes(777);
      const blob = await localBlob(bytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      const info = await store.stat(blob.sha256);
      assert.ok(info, "stat of a stored blob");
      assert.equal(info.sha256, blob.sha256);
      assert.equal(info.size, 777);
      assert.ok(info.modifiedAt instanceof Date && !Number.isNaN(info.modifiedAt.getTime()));
      // Object stores keep whole seconds and clocks may differ a little; the point is "recent, not epoch".
      assert.ok(Math.abs(info.modifiedAt.getTime() - before) < 10 * 60_000, `modifiedAt ${info.modifiedAt.toISOString()}`);
      assert.equal(await store.stat(sha256Of(randomBytes(32))), undefined);
    });

    void it("delete() removes the blob and succeeds again when it is already gone", async () => {
      const blob = await localBlob(randomBytes(1234));
      await store.putFile(blob.path, blob.sha256, blob.size);
      await store.delete(blob.sha256);
      assert.equal(await store.stat(blob.sha256), undefined);
      await assert.rejects(store.read(blob.sha256), isAppError("not_found"));
      await store.delete(blob.sha256);
      await store.delete(sha256Of(randomBytes(32)));
    });

    void it("list() yields every blob once with its size, and nothing else", async () => {
      assert.deepEqual(await collect(store.list()), [], "a fresh store is empty");
      const expected = new Map<string, number>();
      for (let index = 0; index < 5; index++) {
        const blob = await localBlob(randomBytes(100 + index));
        await store.putFile(blob.path, blob.sha256, blob.size);
        expected.set(blob.sha256, blob.size);
      }
      const removed = [...expected.keys()][2]!;
      await store.delete(removed);
      expected.delete(removed);
      const listed = await collect(store.list());
      assert.deepEqual(
        new Map(listed.map((info) => [info.sha256, info.size])),
        expected,
      );
      assert.equal(listed.length, expected.size, "no blob listed twice");
      for (const info of listed) assert.ok(info.modifiedAt instanceof Date);
    });

    void it("streams a large blob in and out intact, also as a range across part boundaries", async () => {
      const blob = await largeLocalBlob(join(workDir, "large"), largeBlobBytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      assert.equal((await store.stat(blob.sha256))?.size, blob.size);
      assert.equal(await hashStream(await store.read(blob.sha256)), blob.sha256);
      const file = await readFile(blob.path);
      for (const middle of [5 * 1024 * 1024, 8 * 1024 * 1024]) {
        if (middle + 100 >= blob.size) continue;
        const got = await readAll(await store.read(blob.sha256, { start: middle - 100, end: middle + 100 }));
        assert.deepEqual(got, file.subarray(middle - 100, middle + 101));
      }
      assert.equal((await stat(blob.path)).size, blob.size, "the local file is left in place");
    });

    void it("keeps working after a reader abandons a stream half-way", async () => {
      const bytes = randomBytes(3 * 1024 * 1024);
      const blob = await localBlob(bytes);
      await store.putFile(blob.path, blob.sha256, blob.size);
      for (let index = 0; index < 3; index++) {
        const stream = await store.read(blob.sha256);
        await new Promise<void>((resolve) => stream.once("data", () => resolve()));
        stream.destroy();
      }
      assert.deepEqual(await readAll(await store.read(blob.sha256)), bytes);
    });

    void it("survives concurrent puts of the same blob", async () => {
      const bytes = randomBytes(256 * 1024);
      const blobs = await Promise.all(Array.from({ length: 6 }, () => localBlob(bytes)));
      await Promise.all(blobs.map((blob) => store.putFile(blob.path, blob.sha256, blob.size)));
      assert.deepEqual(await readAll(await store.read(blobs[0]!.sha256)), bytes);
      const listed = await collect(store.list());
      assert.deepEqual(listed.map((info) => [info.sha256, info.size]), [[blobs[0]!.sha256, bytes.length]]);
    });

    void it("serves concurrent readers while puts of other blobs run", async () => {
      const contents = Array.from({ length: 4 }, (_, index) => randomBytes(64 * 1024 + index));
      const blobs = await Promise.all(contents.map((bytes) => localBlob(bytes)));
      await Promise.all(blobs.map((blob) => store.putFile(blob.path, blob.sha256, blob.size)));
      const reads = await Promise.all(blobs.map(async (blob) => readAll(await store.read(blob.sha256))));
      reads.forEach((got, index) => assert.deepEqual(got, contents[index]));
    });

    void it("refuses keys that are not lower-case SHA-256 hex", async () => {
      for (const key of ["../../etc/passwd", "ABC", sha256Of(Buffer.from("x")).toUpperCase(), ""]) {
        await assert.rejects(async () => store.read(key), TypeError, `read ${JSON.stringify(key)}`);
        await assert.rejects(async () => store.stat(key), TypeError, `stat ${JSON.stringify(key)}`);
        await assert.rejects(async () => store.delete(key), TypeError, `delete ${JSON.stringify(key)}`);
      }
      const blob = await localBlob(randomBytes(10));
      await assert.rejects(async () => store.putFile(blob.path, "../x", blob.size), TypeError);
    });
  });
}

function sha256Of(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Writes `size` random bytes in chunks, hashing as it goes, so the test never holds the whole file. */
async function largeLocalBlob(path: string, size: number): Promise<LocalBlob> {
  const hash = createHash("sha256");
  const out = createWriteStream(path);
  const chunkBytes = 1024 * 1024;
  for (let written = 0; written < size; written += chunkBytes) {
    const chunk = randomBytes(Math.min(chunkBytes, size - written));
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, "drain");
  }
  out.end();
  await finished(out);
  return { path, sha256: hash.digest("hex"), size };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function hashStream(stream: Readable): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Uint8Array);
  return hash.digest("hex");
}

async function collect(infos: AsyncIterable<BlobInfo>): Promise<BlobInfo[]> {
  const all: BlobInfo[] = [];
  for await (const info of infos) all.push(info);
  return all;
}

function isAppError(code: AppError["code"]): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof AppError, `expected AppError ${code}, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}
