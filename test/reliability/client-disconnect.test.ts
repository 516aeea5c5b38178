import assert from "node:assert/strict";
import { connect } from "node:net";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { fsck } from "../../src/services/fsck.js";
import { buildTestApp } from "../helpers/app.js";
import { eventually } from "../helpers/eventually.js";
import { fixture } from "../helpers/fixtures.js";


/** A multipart upload written by hand on a raw socket, so the test decides where the client vanishes. */
function multipartParts(filename: string): { head: Buffer; tail: Buffer; boundary: string } {
  const boundary = "----imgvault-disconnect-test";
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${filename}"\r\nContent-Type: image/jpeg\r\n\r\n`,
  );
  return { head, tail: Buffer.from(`\r\n--${boundary}--\r\n`), boundary };
}

describe("a client that disconnects mid-upload", () => {
  for (const moment of ["while its file is being received", "after the whole body, before the answer"] as const) {
    test(`leaves no temporary file behind (${moment})`, async (t) => {
      const testApp = await buildTestApp(t);
      const key = await testApp.userKey();
      const url = new URL(await testApp.app.listen({ host: "127.0.0.1", port: 0 }));
      const staging = join(testApp.dataDir, "tmp");
      const photo = await readFile(fixture("valid/photo.jpg").path);
      const { head, tail, boundary } = multipartParts("gone.jpg");

      const socket = connect(Number(url.port), url.hostname);
      await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      socket.on("error", () => {});
      socket.write(
        `POST /image/ HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Token ${key}\r\n` +
          `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${head.length + photo.length + tail.length}\r\n\r\n`,
      );
      socket.write(head);
      if (moment === "while its file is being received") {
        socket.write(photo.subarray(0, 400_000));
        // The upload is being staged when the client vanishes.
        await eventually(async () => (await readdir(staging)).length > 0, "the upload is staged");
      } else {
        socket.write(photo);
        socket.write(tail);
        await sleep(5);
      }
      socket.destroy();

      await eventually(async () => (await readdir(staging)).length === 0, "the staged file is removed");
      const listed = await testApp.app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${key}` } });
      const images = listed.json<Array<{ name: string; sha256: string; bytes: number }>>();
      if (moment === "while its file is being received") assert.deepEqual(images, [], "half a file is never stored");
      else {
        // Nobody is told, but a whole upload may still be stored: whole, then, and nothing else.
        for (const image of images) assert.equal(image.bytes, photo.length);
      }
      await testApp.app.services.housekeeping();
      assert.deepEqual((await fsck(testApp.app.services)).problems, []);
      const served = await testApp.app.inject({ method: "GET", url: "/healthz" });
      assert.equal(served.statusCode, 200, "the server carries on");
    });
  }
});
