import type { Db } from "../database.js";
import { AccessKeysRepository } from "./access-keys.js";
import { BlobsRepository } from "./blobs.js";
import { ImagesRepository } from "./images.js";
import { UsersRepository } from "./users.js";

/** Every repository over one connection or one transaction. */
export interface Repositories {
  users: UsersRepository;
  accessKeys: AccessKeysRepository;
  blobs: BlobsRepository;
  images: ImagesRepository;
}

export function repositories(db: Db): Repositories {
  return {
    users: new UsersRepository(db),
    accessKeys: new AccessKeysRepository(db),
    blobs: new BlobsRepository(db),
    images: new ImagesRepository(db),
  };
}

/** Runs `work` in one transaction with repositories bound to it. */
export function inTransaction<T>(db: Db, work: (repos: Repositories) => Promise<T>): Promise<T> {
  return db.transaction().execute((trx) => work(repositories(trx)));
}
