import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsBlobStore } from "../../src/storage/fs-blob-store.js";
import { blobStoreContract } from "../contracts/blob-store.contract.js";

blobStoreContract("filesystem", async () => {
  const root = await mkdtemp(join(tmpdir(), "imgvault-fs-blobs-"));
  return {
    store: new FsBlobStore(join(root, "blobs")),
    dispose: () => rm(root, { recursive: true, force: true }),
  };
});
