import type {} from "@fastify/multipart";
import type { FastifyRequest } from "fastify";
import { AppError } from "../errors.js";
import type { StagedFile, StagingArea } from "../services/staging.js";

export interface ImageUpload {
  /** The file of the `image` field, staged to local disk; undefined when the body had none. */
  staged: StagedFile | undefined;
  /** The file name the client gave the `image` part. */
  fileName: string | undefined;
  /** The text fields of the form. */
  fields: Record<string, string>;
}

/**
 * Reads a multipart form with one file field `image`, streaming the file to the staging area
 * (the byte limit is enforced by the parser while streaming). Any other file part is drained and
 * ignored. On failure the staged file is removed before the error propagates.
 */
export async function readImageUpload(request: FastifyRequest, staging: StagingArea): Promise<ImageUpload> {
  if (!request.isMultipart()) {
    throw new AppError("unsupported_content_type", "The request body must be multipart/form-data with a file field \"image\".");
  }
  const upload: ImageUpload = { staged: undefined, fileName: undefined, fields: {} };
  let imageParts = 0;
  try {
    for await (const part of request.parts()) {
      if (part.type === "field") {
        if (typeof part.value === "string") upload.fields[part.fieldname] = part.value;
        continue;
      }
      if (part.fieldname !== "image") {
        part.file.resume();
        continue;
      }
      imageParts += 1;
      if (imageParts > 1) {
        part.file.resume();
        continue;
      }
      upload.fileName = part.filename;
      // Busboy reads a truncated file to its end (discarding it); stop at the limit instead, so an
      // oversized upload is answered 413 and its connection closed without reading the rest.
      part.file.once("limit", () => part.file.destroy(new AppError("payload_too_large")));
      upload.staged = await staging.stage(part.file);
      if (part.file.truncated) throw new AppError("payload_too_large");
    }
    if (imageParts > 1) throw new AppError("duplicate_image_field");
    return upload;
  } catch (error) {
    await upload.staged?.dispose();
    throw error;
  }
}
