// Which optional parts of the API this server has. The OpenAPI document says so up front; when it
// cannot be read, a feature counts as present until its endpoint answers "no such endpoint".

export interface Capabilities {
  /** `POST /image/<name>/signed-url` */
  signedLinks: boolean;
  /** `GET/POST /api/keys/`, `DELETE /api/keys/<id>/` */
  keys: boolean;
}

interface OpenApiDocument {
  paths?: Record<string, unknown>;
}

export async function detectCapabilities(): Promise<Capabilities> {
  try {
    const response = await fetch("/openapi.json", { credentials: "omit" });
    if (!response.ok) throw new Error(`openapi.json answered ${response.status}`);
    const paths = Object.keys(((await response.json()) as OpenApiDocument).paths ?? {});
    return {
      signedLinks: paths.some((path) => /^\/image\/\{[^}]+\}\/signed-url\/?$/.test(path)),
      keys: paths.some((path) => /^\/api\/keys\/?$/.test(path)),
    };
  } catch {
    return { signedLinks: true, keys: true };
  }
}
