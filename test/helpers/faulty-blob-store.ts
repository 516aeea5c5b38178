import { PassThrough, type Readable } from "node:stream";
import type { BlobInfo, BlobStore, ByteRange } from "../../src/storage/blob-store.js";
import { FsBlobStore, translateFsError } from "../../src/storage/fs-blob-store.js";

export type BlobOperation = "putFile" | "read" | "stat" | "delete" | "list" | "check";
export type FaultCode = "ENOSPC" | "EIO" | "EACCES" | "EROFS";

/**
 * A real filesystem store that fails on demand, the way the disk would: the injected errno error
 * goes through the store's own translation (`translateFsError`), so the rest of the app sees
 * exactly what a full, failing or read-only disk produces. Nothing is simulated but the errno.
 */
export class FaultyBlobStore implements BlobStore {
  readonly inner: FsBlobStore;
  private readonly faults = new Map<BlobOperation, FaultCode>();
  /** Reads that deliver this many bytes and then fail (a disk error in the middle of a file). */
  private midStreamFault: { afterBytes: number; code: FaultCode } | undefined;
  /** A held read: the next read waits here until the test releases it. */
  private readGate: { reached: () => void; released: Promise<void> } | undefined;

  constructor(root: string) {
    this.inner = new FsBlobStore(root);
  }

  get description(): string {
    return `faulty-${this.inner.description}`;
  }

  /** Every later call of `operation` fails with `code` until `heal()`. */
  fail(operation: BlobOperation, code: FaultCode): void {
    this.faults.set(operation, code);
  }

  /** Later reads deliver `afterBytes` bytes, then fail with `code`. */
  failReadsMidStream(afterBytes: number, code: FaultCode): void {
    this.midStreamFault = { afterBytes, code };
  }

  /**
   * Holds the next read before it opens the blob, which parks a request between reading an image
   * row and opening its bytes. `reached` resolves once a read is parked; `release()` lets it go on.
   */
  holdNextRead(): { reached: Promise<void>; release: () => void } {
    let release!: () => void;
    let reached!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    this.readGate = { reached, released };
    return { reached: reachedPromise, release };
  }

  /** The disk recovers: clears every fault (or the one of `operation`). */
  heal(operation?: BlobOperation): void {
    if (operation) this.faults.delete(operation);
    else {
      this.faults.clear();
      this.midStreamFault = undefined;
    }
  }

  private assertHealthy(operation: BlobOperation): void {
    const code = this.faults.get(operation);
    if (code) throw translateFsError(errnoError(code, operation));
  }

  async putFile(localPath: string, sha256: string, size: number): Promise<void> {
    this.assertHealthy("putFile");
    return this.inner.putFile(localPath, sha256, size);
  }

  async read(sha256: string, range?: ByteRange): Promise<Readable> {
    this.assertHealthy("read");
    const gate = this.readGate;
    if (gate) {
      this.readGate = undefined;
      gate.reached();
      await gate.released;
    }
    const stream = await this.inner.read(sha256, range);
    const fault = this.midStreamFault;
    if (!fault) return stream;
    const output = new PassThrough();
    let delivered = 0;
    stream.on("data", (chunk: Buffer) => {
      const room = fault.afterBytes - delivered;
      if (room > 0) output.write(chunk.subarray(0, room));
      delivered += chunk.length;
      if (delivered >= fault.afterBytes) {
        stream.destroy();
        output.destroy(translateFsError(errnoError(fault.code, "read")) as Error);
      }
    });
    stream.on("end", () => output.end());
    stream.on("error", (error) => output.destroy(error));
    return output;
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    this.assertHealthy("stat");
    return this.inner.stat(sha256);
  }

  async delete(sha256: string): Promise<void> {
    this.assertHealthy("delete");
    return this.inner.delete(sha256);
  }

  async *list(): AsyncIterable<BlobInfo> {
    this.assertHealthy("list");
    yield* this.inner.list();
  }

  listTemporaryFiles(): AsyncIterable<string> {
    return this.inner.listTemporaryFiles();
  }

  async check(): Promise<void> {
    this.assertHealthy("check");
    return this.inner.check();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function errnoError(code: FaultCode, operation: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected fault in ${operation}`), { code, syscall: operation });
}
