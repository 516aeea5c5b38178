import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { loadConfig } from "../../src/config.js";
import { createServices } from "../../src/services/index.js";
import { startServer } from "../helpers/cli.js";
import { fixture } from "../helpers/fixtures.js";

async function issueKey(dataDir: string): Promise<string> {
  const services = await createServices(loadConfig({ IMGVAULT_DATA_DIR: dataDir }));
  try {
    const { user } = await services.accounts.ensureUser("shutdown", "correct horse battery staple");
    return (await services.accounts.issueKey(user.id)).key;
  } finally {
    await services.close();
  }
}

/** Resolves whether a new TCP connection to `port` is accepted. */
async function accepts(port: number): Promise<boolean> {
  const socket = connect(port, "127.0.0.1");
  try {
    await Promise.race([once(socket, "connect"), once(socket, "error").then(([error]) => Promise.reject(error as Error))]);
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

/** Reads one HTTP response (headers and a Content-Length body) from the socket. */
async function readResponse(socket: Socket): Promise<{ status: number; body: string; headers: string }> {
  let received = Buffer.alloc(0);
  for await (const chunk of socket) {
    received = Buffer.concat([received, chunk as Buffer]);
    const end = received.indexOf("\r\n\r\n");
    if (end < 0) continue;
    const headers = received.subarray(0, end).toString();
    const length = Number(/content-length:\s*(\d+)/i.exec(headers)?.[1] ?? 0);
    if (received.length >= end + 4 + length) {
      return { status: Number(headers.split(" ")[1]), headers, body: received.subarray(end + 4, end + 4 + length).toString() };
    }
  }
  throw new Error(`connection closed before a whole response: ${received.toString()}`);
}

describe("graceful shutdown", () => {
  test("SIGTERM: no new connections, the upload in flight finishes and is stored, then exit 0", async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), "imgvault-shutdown-"));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const key = await issueKey(dataDir);
    const server = await startServer(["--data-dir", dataDir]);
    t.after(() => server.stop("SIGKILL").then(() => undefined));
    const url = new URL(server.url);
    const port = Number(url.port);
    const exited = new Promise<number | null>((resolve) => server.child.once("exit", (code) => resolve(code)));

    const photo = await readFile(fixture("valid/photo.jpg").path);
    const boundary = "----imgvault-shutdown";
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="slow.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const socket = connect(port, "127.0.0.1");
    await once(socket, "connect");
    const response = readResponse(socket);
    socket.write(
      `POST /image/ HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Token ${key}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${head.length + photo.length + tail.length}\r\n\r\n`,
    );
    socket.write(head);
    socket.write(photo.subarray(0, 300_000));
    // The server is reading this upload once its file is being staged.
    while ((await readdir(join(dataDir, "tmp")).catch(() => [])).length === 0) await sleep(10);

    server.child.kill("SIGTERM");
    // Stops accepting: new connections are refused while the upload is still in flight.
    const deadline = Date.now() + 5000;
    while (await accepts(port)) {
      assert.ok(Date.now() < deadline, "the listening socket closes on SIGTERM");
      await sleep(20);
    }
    assert.equal(server.child.exitCode, null, "still running for the request in flight");

    // The slow client carries on and is answered.
    for (let offset = 300_000; offset < photo.length; offset += 250_000) {
      socket.write(photo.subarray(offset, Math.min(photo.length, offset + 250_000)));
      await sleep(100);
    }
    socket.write(tail);
    const answer = await response;
    socket.destroy();
    assert.equal(answer.status, 201, answer.body);
    assert.equal(await exited, 0, "exits 0 once the request is done");

    // The acknowledged upload is on disk: a new server serves it whole.
    const restarted = await startServer(["--data-dir", dataDir]);
    try {
      const served = await fetch(`${restarted.url}/image/slow.jpg/`, { headers: { authorization: `Token ${key}` } });
      assert.equal(served.status, 200);
      assert.ok(Buffer.from(await served.arrayBuffer()).equals(photo));
    } finally {
      assert.equal(await restarted.stop("SIGINT"), 0, "SIGINT shuts down cleanly too");
    }
  });
});
