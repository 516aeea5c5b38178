/**
 * The one catalogue of errors imgvault answers with. Each entry has a stable snake_case code
 * (clients may switch on it), an HTTP status and a public message. Adapters and services throw
 * `AppError`s made from this table; the HTTP error handler is the only place that turns them into
 * responses. `docs/errors.md` tables the same entries; a test keeps the two in step.
 */
export const errorCatalogue = {
  // 400
  bad_request: { status: 400, message: "The request is malformed." },
  validation_failed: { status: 400, message: "The request does not match the expected shape." },
  invalid_credentials: { status: 400, message: "Unable to log in with the provided credentials." },
  missing_image_field: { status: 400, message: "The multipart body must carry one file in the field \"image\"." },
  duplicate_image_field: { status: 400, message: "The multipart body carries more than one \"image\" file." },
  malformed_multipart: { status: 400, message: "The multipart body could not be parsed." },
  invalid_name: { status: 400, message: "The image name is not acceptable." },
  invalid_cursor: { status: 400, message: "The pagination cursor is not valid." },
  invalid_parameter: { status: 400, message: "A query parameter is out of range or not recognised." },
  output_too_large: { status: 400, message: "The requested transform would produce more pixels than the limit allows." },
  // 401, 403
  unauthorized: { status: 401, message: "Authentication credentials were not provided or are not valid." },
  forbidden: { status: 403, message: "This key may not perform this operation." },
  signature_invalid: { status: 403, message: "The URL signature does not match." },
  signature_expired: { status: 403, message: "The signed URL has expired." },
  // 404, 405, 409
  not_found: { status: 404, message: "No such resource." },
  image_not_found: { status: 404, message: "No image with that name." },
  key_not_found: { status: 404, message: "No access key with that id." },
  method_not_allowed: { status: 405, message: "This method is not allowed on this resource." },
  name_taken: { status: 409, message: "An image with that name already exists." },
  // 411-416
  precondition_failed: { status: 412, message: "The image changed since the version named in If-Match." },
  payload_too_large: { status: 413, message: "The upload exceeds the byte limit." },
  too_many_pixels: { status: 413, message: "The image has more pixels than the limit allows." },
  too_many_frames: { status: 413, message: "The image has more frames or pages than the limit allows." },
  unsupported_media_type: { status: 415, message: "The file is not an image in a supported format." },
  unsupported_content_type: { status: 415, message: "The request body has a content type this endpoint does not accept." },
  range_not_satisfiable: { status: 416, message: "The requested range is not satisfiable." },
  // 422, 429
  corrupt_image: { status: 422, message: "The file is truncated or corrupt and cannot be decoded." },
  too_many_requests: { status: 429, message: "Too many requests; try again later." },
  // 5xx: never carries details of the failure
  internal_error: { status: 500, message: "An unexpected error occurred." },
  service_unavailable: { status: 503, message: "The service is temporarily unavailable; try again shortly." },
  busy: { status: 503, message: "The server is busy processing images; try again shortly." },
  storage_unavailable: { status: 503, message: "Image storage is temporarily unavailable." },
  database_unavailable: { status: 503, message: "The database is temporarily unavailable." },
  insufficient_storage: { status: 507, message: "Image storage is full." },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

/** An error the HTTP layer knows how to answer. `message` is public; never put internals in it. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra response headers, e.g. Retry-After for 503/429. */
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message?: string, options?: { headers?: Record<string, string>; cause?: unknown }) {
    super(message ?? errorCatalogue[code].message, { cause: options?.cause });
    this.name = "AppError";
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.headers = options?.headers ?? {};
  }
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}
