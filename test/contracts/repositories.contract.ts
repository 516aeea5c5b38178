/**
 * The repositories contract, written once and run against every database dialect (see
 * test/db/*.test.ts). One freshly migrated database serves a whole suite; tests stay independent by
 * working on their own users and their own random blob hashes, so none depends on another's rows.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { OpenDatabase } from "../../src/db/database.js";
import { NameTakenError } from "../../src/db/repositories/images.js";
import { inTransaction, repositories, type Repositories } from "../../src/db/repositories/index.js";
import type { AccessKeyRow, ImageRow, NewImage, UserRow } from "../../src/db/schema.js";

/** A migrated database for one suite and how to throw it away afterwards. */
export interface DatabaseFixture {
  database: OpenDatabase;
  dispose(): Promise<void>;
}

export interface RepositoriesContractOptions {
  /** Skips the whole suite, saying why (node:test reports it as skipped). */
  skip?: string | false;
}

/** Fixed instants keep the garbage-collection cut-offs exact, whatever the wall clock says. */
const t0 = Date.parse("2030-01-01T00:00:00.000Z");
const at = (seconds: number): string => new Date(t0 + seconds * 1000).toISOString();

const unique = (label: string): string => `${label}-${randomBytes(5).toString("hex")}`;
const randomSha = (): string => randomBytes(32).toString("hex");

export function repositoriesContract(
  name: string,
  openDatabase: () => Promise<DatabaseFixture>,
  options: RepositoriesContractOptions = {},
): void {
  void describe(`Repositories contract: ${name}`, { skip: options.skip ?? false }, () => {
    let fixture: DatabaseFixture;
    let repos: Repositories;

    before(async () => {
      fixture = await openDatabase();
      repos = repositories(fixture.database.db);
    });

    after(async () => {
      await fixture?.dispose();
    });

    async function newUser(label = "user"): Promise<UserRow> {
      const user = await repos.users.create(unique(label), "hash", at(0));
      assert.ok(user, "a fresh username is free");
      return user;
    }

    async function newBlob(size = 1000, now = at(0)): Promise<string> {
      const sha256 = randomSha();
      assert.equal(await repos.blobs.touch(sha256, size, now), "live");
      return sha256;
    }

    function image(userId: number, imageName: string, sha256: string, overrides: Partial<NewImage> = {}): NewImage {
      return {
        user_id: userId,
        name: imageName,
        sha256,
        content_type: "image/png",
        format: "png",
        width: 640,
        height: 480,
        pages: 1,
        bytes: 1000,
        has_gps: 0,
        metadata: null,
        created_at: at(0),
        updated_at: at(0),
        ...overrides,
      };
    }

    async function insertImage(userId: number, imageName: string, overrides: Partial<NewImage> = {}): Promise<ImageRow> {
      const sha256 = overrides.sha256 ?? (await newBlob());
      return repos.images.insert(image(userId, imageName, sha256, overrides));
    }

    function accessKey(userId: number, overrides: Partial<AccessKeyRow> = {}): AccessKeyRow {
      return {
        id: unique("key"),
        user_id: userId,
        key_hash: randomSha(),
        display_prefix: "ivk_abcd",
        label: "laptop",
        scope: "read-write",
        created_at: at(0),
        last_used_at: null,
        expires_at: null,
        revoked_at: null,
        ...overrides,
      };
    }

    void describe("users", () => {
      void it("creates a user and finds it by name and id; a taken username resolves undefined", async () => {
        const username = unique("ada");
        const user = await repos.users.create(username, "scrypt$hash", at(1));
        assert.ok(user);
        assert.equal(typeof user.id, "number");
        assert.deepEqual(user, { id: user.id, username, password_hash: "scrypt$hash", created_at: at(1) });
        assert.equal(await repos.users.create(username, "other", at(2)), undefined);
        assert.deepEqual(await repos.users.findByUsername(username), user);
        assert.deepEqual(await repos.users.findById(user.id), user);
        assert.equal(await repos.users.findByUsername(unique("nobody")), undefined);
        assert.equal(await repos.users.findById(user.id + 1_000_000), undefined);
      });

      void it("keeps Unicode usernames intact", async () => {
        const username = unique("Zoë 🐈 名前");
        const user = await repos.users.create(username, "hash", at(0));
        assert.equal(user?.username, username);
        assert.equal((await repos.users.findByUsername(username))?.id, user?.id);
      });

      void it("changes a password hash and lists users in id order", async () => {
        const first = await newUser();
        const second = await newUser();
        await repos.users.setPasswordHash(first.id, "new-hash");
        assert.equal((await repos.users.findById(first.id))?.password_hash, "new-hash");
        assert.equal((await repos.users.findById(second.id))?.password_hash, "hash", "other users untouched");
        const ids = (await repos.users.list()).map((user) => user.id);
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
        assert.ok(ids.indexOf(first.id) < ids.indexOf(second.id));
      });
    });

    void describe("access keys", () => {
      void it("stores a key and finds it by hash, and by id only for its owner", async () => {
        const owner = await newUser();
        const stranger = await newUser();
        const key = accessKey(owner.id, { expires_at: at(3600) });
        await repos.accessKeys.insert(key);
        assert.deepEqual(await repos.accessKeys.findByHash(key.key_hash), key);
        assert.deepEqual(await repos.accessKeys.findById(owner.id, key.id), key);
        assert.equal(await repos.accessKeys.findById(stranger.id, key.id), undefined);
        assert.equal(await repos.accessKeys.findByHash(randomSha()), undefined);
      });

      void it("refuses a second key with the same hash", async () => {
        const user = await newUser();
        const key = accessKey(user.id);
        await repos.accessKeys.insert(key);
        await assert.rejects(repos.accessKeys.insert(accessKey(user.id, { key_hash: key.key_hash })));
      });

      void it("lists a user's keys newest first, ties by id", async () => {
        const user = await newUser();
        const other = await newUser();
        await repos.accessKeys.insert(accessKey(user.id, { id: `${user.id}-b`, created_at: at(10) }));
        await repos.accessKeys.insert(accessKey(user.id, { id: `${user.id}-a`, created_at: at(10) }));
        await repos.accessKeys.insert(accessKey(user.id, { id: `${user.id}-c`, created_at: at(20) }));
        await repos.accessKeys.insert(accessKey(other.id));
        const ids = (await repos.accessKeys.listForUser(user.id)).map((key) => key.id);
        assert.deepEqual(ids, [`${user.id}-c`, `${user.id}-a`, `${user.id}-b`]);
      });

      void it("revokes a live key once, and only the owner's", async () => {
        const owner = await newUser();
        const stranger = await newUser();
        const key = accessKey(owner.id);
        await repos.accessKeys.insert(key);
        assert.equal(await repos.accessKeys.revoke(stranger.id, key.id, at(5)), false);
        assert.equal((await repos.accessKeys.findByHash(key.key_hash))?.revoked_at, null);
        assert.equal(await repos.accessKeys.revoke(owner.id, key.id, at(5)), true);
        assert.equal((await repos.accessKeys.findByHash(key.key_hash))?.revoked_at, at(5));
        assert.equal(await repos.accessKeys.revoke(owner.id, key.id, at(6)), false, "already revoked");
        assert.equal((await repos.accessKeys.findByHash(key.key_hash))?.revoked_at, at(5), "first revocation kept");
        assert.equal(await repos.accessKeys.revoke(owner.id, unique("missing"), at(6)), false);
      });

      void it("records when a key was last used", async () => {
        const key = accessKey((await newUser()).id);
        await repos.accessKeys.insert(key);
        await repos.accessKeys.touch(key.id, at(42));
        assert.equal((await repos.accessKeys.findByHash(key.key_hash))?.last_used_at, at(42));
      });
    });

    void describe("blobs", () => {
      void it("touch() creates a live row, then refreshes touched_at only", async () => {
        const sha256 = randomSha();
        assert.equal(await repos.blobs.touch(sha256, 3_000_000_000, at(1)), "live");
        assert.deepEqual(await repos.blobs.find(sha256), {
          sha256,
          size: 3_000_000_000,
          state: "live",
          created_at: at(1),
          touched_at: at(1),
        });
        assert.equal(await repos.blobs.touch(sha256, 3_000_000_000, at(9)), "live");
        const row = await repos.blobs.find(sha256);
        assert.equal(row?.created_at, at(1));
        assert.equal(row?.touched_at, at(9));
        assert.equal(await repos.blobs.find(randomSha()), undefined);
      });

      void it("concurrent touches of a new blob all claim it live, one row", async () => {
        const sha256 = randomSha();
        const states = await Promise.all(Array.from({ length: 8 }, (_, index) => repos.blobs.touch(sha256, 10, at(index))));
        assert.deepEqual(states, Array(8).fill("live"));
        assert.equal((await repos.blobs.find(sha256))?.state, "live");
      });

      void it("walks live → deleting → removed, sparing referenced and recently touched blobs", async () => {
        const user = await newUser();
        const sha256 = await newBlob(1000, at(0));
        const row = await insertImage(user.id, "held.png", { sha256 });

        assert.equal(await repos.blobs.markDeletingIfUnreferenced(sha256, at(100)), false, "referenced");
        assert.ok(await repos.images.delete(user.id, row.name));
        assert.equal(await repos.blobs.touch(sha256, 1000, at(50)), "live");
        assert.equal(await repos.blobs.markDeletingIfUnreferenced(sha256, at(49)), false, "touched after the cut-off");
        assert.equal(await repos.blobs.markDeletingIfUnreferenced(sha256, at(50)), true, "cut-off is inclusive");
        assert.equal((await repos.blobs.find(sha256))?.state, "deleting");
        assert.equal(await repos.blobs.markDeletingIfUnreferenced(sha256, at(100)), false, "already deleting");

        // An upload meeting a collection waits: touch reports it and leaves the row as it is.
        assert.equal(await repos.blobs.touch(sha256, 1000, at(60)), "deleting");
        assert.equal((await repos.blobs.find(sha256))?.touched_at, at(50));

        await repos.blobs.remove(sha256);
        assert.equal(await repos.blobs.find(sha256), undefined);
        assert.equal(await repos.blobs.touch(sha256, 1000, at(70)), "live", "claimed afresh after removal");
        assert.equal((await repos.blobs.find(sha256))?.created_at, at(70));
      });

      void it("remove() leaves a live blob alone, and marking an unknown blob does nothing", async () => {
        const sha256 = await newBlob();
        await repos.blobs.remove(sha256);
        assert.equal((await repos.blobs.find(sha256))?.state, "live");
        assert.equal(await repos.blobs.markDeletingIfUnreferenced(randomSha(), at(1000)), false);
      });

      void it("lists collection candidates and interrupted collections", async () => {
        const user = await newUser();
        const orphan = await newBlob(10, at(0));
        const recent = await newBlob(10, at(500));
        const referenced = await newBlob(10, at(0));
        await insertImage(user.id, "ref.png", { sha256: referenced });
        const deleting = await newBlob(10, at(0));
        assert.ok(await repos.blobs.markDeletingIfUnreferenced(deleting, at(100)));

        const candidates = new Set((await repos.blobs.listUnreferenced(at(100))).map((row) => row.sha256));
        assert.ok(candidates.has(orphan));
        assert.ok(!candidates.has(recent), "touched after the cut-off");
        assert.ok(!candidates.has(referenced), "referenced by an image");
        assert.ok(!candidates.has(deleting), "already being collected");
        const interrupted = new Set((await repos.blobs.listDeleting()).map((row) => row.sha256));
        assert.ok(interrupted.has(deleting));
        assert.ok(!interrupted.has(orphan));
      });

      void it("iterateAll() visits every blob once, in hash order, across batches", async () => {
        const mine = [await newBlob(), await newBlob(), await newBlob(), await newBlob(), await newBlob()];
        const seen: string[] = [];
        for await (const row of repos.blobs.iterateAll(2)) seen.push(row.sha256);
        assert.deepEqual(seen, [...seen].sort(), "ascending");
        assert.equal(new Set(seen).size, seen.length, "no repeats");
        for (const sha256 of mine) assert.ok(seen.includes(sha256));
      });

      void it("refuses an image that references an unknown blob", async () => {
        const user = await newUser();
        await assert.rejects(repos.images.insert(image(user.id, "dangling.png", randomSha())));
        assert.equal(await repos.images.findByName(user.id, "dangling.png"), undefined);
      });
    });

    void describe("images", () => {
      void it("inserts an image and reads every field back with its type", async () => {
        const user = await newUser();
        const sha256 = await newBlob(5_000_000_000);
        const metadata = JSON.stringify({ camera: "Pentax", taken: "2024-05-01" });
        const row = await repos.images.insert(
          image(user.id, "big.tiff", sha256, {
            content_type: "image/tiff",
            format: "tiff",
            width: 70000,
            height: 40000,
            pages: 3,
            bytes: 5_000_000_000,
            has_gps: 1,
            metadata,
            created_at: at(7),
            updated_at: at(8),
          }),
        );
        assert.equal(typeof row.id, "number");
        assert.deepEqual(row, {
          id: row.id,
          user_id: user.id,
          name: "big.tiff",
          sha256,
          content_type: "image/tiff",
          format: "tiff",
          width: 70000,
          height: 40000,
          pages: 3,
          bytes: 5_000_000_000,
          has_gps: 1,
          metadata,
          created_at: at(7),
          updated_at: at(8),
        });
        assert.deepEqual(await repos.images.findByName(user.id, "big.tiff"), row);
      });

      void it("keeps one namespace per user: a taken name throws NameTakenError, other users may reuse it", async () => {
        const alice = await newUser("alice");
        const bob = await newUser("bob");
        await insertImage(alice.id, "cat.png");
        await assert.rejects(insertImage(alice.id, "cat.png"), NameTakenError);
        const bobs = await insertImage(bob.id, "cat.png");
        assert.equal(bobs.user_id, bob.id);
        assert.equal((await repos.images.findByName(alice.id, "cat.png"))?.user_id, alice.id);
        assert.equal(await repos.images.findByName(alice.id, "dog.png"), undefined);
      });

      void it("treats names as exact strings: case, Unicode and LIKE wildcards are data", async () => {
        const user = await newUser();
        const names = ["Cat.png", "cat.png", "CAT.PNG", "100%_done.png", "café.png", "cafe\u0301.png", "名前 🐈.gif"];
        for (const imageName of names) await insertImage(user.id, imageName);
        for (const imageName of names) assert.equal((await repos.images.findByName(user.id, imageName))?.name, imageName);
        assert.equal(await repos.images.findByName(user.id, "100xxdone.png"), undefined);
        assert.equal(await repos.images.findByName(user.id, "cAt.png"), undefined);
      });

      void it("namesLike() matches <stem><anything><suffix> literally and case-sensitively", async () => {
        const user = await newUser();
        const other = await newUser();
        for (const imageName of ["cat.png", "cat-2.png", "cat-10.png", "cat-2.jpg", "Cat-3.png", "cat-3.PNG", "dog-2.png", "cat-.png"]) {
          await insertImage(user.id, imageName);
        }
        await insertImage(other.id, "cat-7.png");
        assert.deepEqual((await repos.images.namesLike(user.id, "cat-", ".png")).sort(), ["cat-.png", "cat-10.png", "cat-2.png"]);

        for (const imageName of ["100%_done.png", "100%_done-2.png", "100%_done-x.png", "100xxdone-3.png", "100%Xdone-4.png", "a\\b-2.png", "a\\\\b-3.png"]) {
          await insertImage(user.id, imageName);
        }
        assert.deepEqual((await repos.images.namesLike(user.id, "100%_done-", ".png")).sort(), ["100%_done-2.png", "100%_done-x.png"]);
        assert.deepEqual(await repos.images.namesLike(user.id, "a\\b-", ".png"), ["a\\b-2.png"]);
        assert.deepEqual(await repos.images.namesLike(user.id, "nothing-", ".png"), []);
        // The stem and the suffix may not overlap: "a" + anything + "a" needs two characters.
        await insertImage(user.id, "a");
        assert.deepEqual(await repos.images.namesLike(user.id, "a", "a"), []);
      });

      void it("listPage() pages newest first by keyset, never mixing users", async () => {
        const user = await newUser();
        const other = await newUser();
        const ids: number[] = [];
        for (let index = 0; index < 5; index++) {
          ids.push((await insertImage(user.id, `p${index}.png`)).id);
          await insertImage(other.id, `p${index}.png`);
        }
        const newestFirst = [...ids].reverse();
        const first = await repos.images.listPage(user.id, 2);
        assert.deepEqual(first.map((row) => row.id), newestFirst.slice(0, 2));
        const second = await repos.images.listPage(user.id, 2, first.at(-1)!.id);
        assert.deepEqual(second.map((row) => row.id), newestFirst.slice(2, 4));
        const third = await repos.images.listPage(user.id, 2, second.at(-1)!.id);
        assert.deepEqual(third.map((row) => row.id), newestFirst.slice(4));
        assert.deepEqual(await repos.images.listPage(user.id, 2, third.at(-1)!.id), []);
        assert.ok(first.every((row) => row.user_id === user.id));
        assert.deepEqual((await repos.images.listPage(user.id, 100)).map((row) => row.id), newestFirst);
      });

      void it("countForUser() counts images and sums bytes past 32 bits; zero for a user with none", async () => {
        const user = await newUser();
        const empty = await newUser();
        assert.deepEqual(await repos.images.countForUser(empty.id), { images: 0, bytes: 0 });
        await insertImage(user.id, "a.png", { bytes: 3_000_000_000 });
        await insertImage(user.id, "b.png", { bytes: 3_000_000_001 });
        await insertImage(user.id, "c.png", { bytes: 5 });
        assert.deepEqual(await repos.images.countForUser(user.id), { images: 3, bytes: 6_000_000_006 });
      });

      void it("updateContent() swaps the content, only from the expected version when one is given", async () => {
        const user = await newUser();
        const original = await insertImage(user.id, "swap.png", { created_at: at(1), updated_at: at(1) });
        const next = await newBlob(2000);
        const content = {
          sha256: next,
          content_type: "image/webp",
          format: "webp",
          width: 10,
          height: 20,
          pages: 2,
          bytes: 2000,
          has_gps: 1,
          metadata: "{}",
        };
        const updated = await repos.images.updateContent(original.id, content, at(2), original.sha256);
        assert.deepEqual(updated, { ...original, ...content, updated_at: at(2) });

        const stale = await repos.images.updateContent(original.id, { ...content, sha256: await newBlob() }, at(3), original.sha256);
        assert.equal(stale, undefined, "the expected version is gone");
        assert.equal((await repos.images.findByName(user.id, "swap.png"))?.sha256, next);

        const unconditional = await repos.images.updateContent(original.id, { ...content, sha256: original.sha256 }, at(4));
        assert.equal(unconditional?.sha256, original.sha256);
        assert.equal(unconditional?.created_at, at(1));
        assert.equal(await repos.images.updateContent(original.id + 1_000_000, content, at(5)), undefined);
      });

      void it("rename() moves a name, refusing one the user already has", async () => {
        const user = await newUser();
        const other = await newUser();
        const cat = await insertImage(user.id, "cat.png");
        await insertImage(user.id, "dog.png");
        await insertImage(other.id, "kitten.png");

        await assert.rejects(repos.images.rename(cat.id, "dog.png", at(1)), NameTakenError);
        assert.equal((await repos.images.findByName(user.id, "cat.png"))?.id, cat.id, "unchanged after a refusal");

        const renamed = await repos.images.rename(cat.id, "kitten.png", at(2));
        assert.deepEqual(renamed, { ...cat, name: "kitten.png", updated_at: at(2) });
        assert.equal(await repos.images.findByName(user.id, "cat.png"), undefined);
        assert.equal(await repos.images.rename(cat.id + 1_000_000, "x.png", at(3)), undefined);
      });

      void it("delete() removes the user's image once, honouring the expected version", async () => {
        const user = await newUser();
        const stranger = await newUser();
        const row = await insertImage(user.id, "gone.png");
        assert.equal(await repos.images.delete(stranger.id, "gone.png"), undefined, "not the stranger's");
        assert.equal(await repos.images.delete(user.id, "gone.png", randomSha()), undefined, "stale version");
        assert.ok(await repos.images.findByName(user.id, "gone.png"));
        assert.deepEqual(await repos.images.delete(user.id, "gone.png", row.sha256), row);
        assert.equal(await repos.images.findByName(user.id, "gone.png"), undefined);
        assert.equal(await repos.images.delete(user.id, "gone.png"), undefined, "already gone");
      });

      void it("concurrent inserts of one name: exactly one wins, the rest get NameTakenError", async () => {
        const user = await newUser();
        const sha256 = await newBlob();
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, () => repos.images.insert(image(user.id, "race.png", sha256))),
        );
        const won = results.filter((result) => result.status === "fulfilled");
        const lost = results.filter((result): result is PromiseRejectedResult => result.status === "rejected");
        assert.equal(won.length, 1);
        for (const result of lost) assert.ok(result.reason instanceof NameTakenError, String(result.reason));
        assert.deepEqual(await repos.images.countForUser(user.id), { images: 1, bytes: 1000 });
      });

      void it("iterateAll() and totals() cover every user's images", async () => {
        const before = await repos.images.totals();
        const user = await newUser();
        const mine = [await insertImage(user.id, "i1.png", { bytes: 7 }), await insertImage(user.id, "i2.png", { bytes: 8 })];
        const after = await repos.images.totals();
        assert.deepEqual(after, { images: before.images + 2, bytes: before.bytes + 15 });
        const seen: number[] = [];
        for await (const row of repos.images.iterateAll(3)) seen.push(row.id);
        assert.deepEqual(seen, [...seen].sort((a, b) => a - b));
        assert.equal(new Set(seen).size, seen.length);
        for (const row of mine) assert.ok(seen.includes(row.id));
      });
    });

    void describe("transactions", () => {
      void it("commits all the work together", async () => {
        const user = await newUser();
        const sha256 = randomSha();
        await inTransaction(fixture.database.db, async (trx) => {
          await trx.blobs.touch(sha256, 1000, at(0));
          await trx.images.insert(image(user.id, "tx.png", sha256));
        });
        assert.ok(await repos.images.findByName(user.id, "tx.png"));
      });

      void it("rolls back all the work when it throws, NameTakenError included", async () => {
        const user = await newUser();
        const taken = await insertImage(user.id, "taken.png");
        const keep = await insertImage(user.id, "keep.png");
        const sha256 = randomSha();
        await assert.rejects(
          inTransaction(fixture.database.db, async (trx) => {
            await trx.blobs.touch(sha256, 1000, at(0));
            const { content_type, format, width, height, pages, bytes, has_gps, metadata } = keep;
            const content = { sha256, content_type, format, width, height, pages, bytes, has_gps, metadata };
            assert.ok(await trx.images.updateContent(keep.id, content, at(1)));
            await trx.images.rename(keep.id, taken.name, at(1));
          }),
          NameTakenError,
        );
        assert.equal(await repos.blobs.find(sha256), undefined);
        assert.deepEqual(await repos.images.findByName(user.id, "keep.png"), keep);
      });
    });
  });
}
