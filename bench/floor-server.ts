/**
 * The floor: the least a Node server can do to serve a file, a plain `node:http` server streaming
 * it from disk on every request, with no auth, database or framework. Routes come as a JSON
 * argument `{"/path": {"file": "...", "type": "..."}}`; prints `{"port": N}` once listening.
 */
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";

interface Route {
  file: string;
  type: string;
}

const routes = JSON.parse(process.argv[2] ?? "{}") as Record<string, Route>;
// Sizes are read once, as imgvault reads them from its database rather than from the disk.
const table = new Map(Object.entries(routes).map(([path, route]) => [path, { ...route, size: statSync(route.file).size }]));

const server = createServer((request, response) => {
  const route = table.get(request.url ?? "");
  if (!route) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { "content-type": route.type, "content-length": route.size });
  createReadStream(route.file).pipe(response);
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === "object" && address ? address.port : 0 })}\n`);
});
process.once("SIGTERM", () => server.close(() => process.exit(0)));
