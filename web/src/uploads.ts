import { ApiError, type Api, type ImageObject } from "./api.js";
import { announce, byId, h } from "./dom.js";

/** Uploads at once: enough to overlap network and server work without tripping per-key upload caps. */
const concurrentUploads = 2;

interface Row {
  file: File;
  item: HTMLLIElement;
  progress: HTMLProgressElement;
  status: HTMLSpanElement;
}

export interface UploadEvents {
  uploaded(image: ImageObject): void;
  failed(error: unknown): void;
}

/**
 * Files dropped or picked, each with its own row, progress bar and outcome: the new name when
 * stored, the API's own message when refused.
 */
export class Uploads {
  private readonly queue: Row[] = [];
  private running = 0;
  private readonly active = new Set<{ abort(): void }>();

  constructor(
    private readonly api: Api,
    private readonly list: HTMLUListElement,
    private readonly clearButton: HTMLButtonElement,
    private readonly events: UploadEvents,
  ) {
    this.clearButton.addEventListener("click", () => {
      for (const item of this.list.querySelectorAll<HTMLElement>('[data-state="done"], [data-state="failed"]')) item.remove();
      this.list.hidden = this.list.childElementCount === 0;
      this.clearButton.hidden = true;
      byId("library-heading").focus();
    });
  }

  private showClearButton(): void {
    this.clearButton.hidden = this.list.querySelector('[data-state="done"], [data-state="failed"]') === null;
  }

  add(files: Iterable<File>): void {
    let added = 0;
    for (const file of files) {
      const progress = h("progress", { max: "100", value: "0", "aria-label": `Upload progress of ${file.name}` });
      const status = h("span", { class: "upload-status" }, "Waiting…");
      const item = h("li", { class: "upload", "data-state": "queued" }, h("span", { class: "upload-name" }, file.name), progress, status);
      this.list.prepend(item);
      this.queue.push({ file, item, progress, status });
      added += 1;
    }
    if (added === 0) return;
    this.list.hidden = false;
    announce(added === 1 ? "Uploading 1 file." : `Uploading ${added} files.`);
    this.pump();
  }

  /** Cancels what is in flight and forgets every row (sign-out). */
  clear(): void {
    this.queue.length = 0;
    for (const upload of this.active) upload.abort();
    this.active.clear();
    this.list.replaceChildren();
    this.list.hidden = true;
    this.clearButton.hidden = true;
  }

  private pump(): void {
    while (this.running < concurrentUploads) {
      const row = this.queue.shift();
      if (!row) return;
      this.running += 1;
      void this.run(row).finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  private async run(row: Row): Promise<void> {
    const { file, item, progress, status } = row;
    item.dataset.state = "uploading";
    status.textContent = "Uploading…";
    const upload = this.api.upload(file, (fraction) => {
      const percent = Math.round(fraction * 100);
      progress.value = percent;
      status.textContent = percent < 100 ? `Uploading… ${percent}%` : "Checking the image…";
    });
    this.active.add(upload);
    try {
      const image = await upload.promise;
      progress.value = 100;
      item.dataset.state = "done";
      status.textContent = image.name === file.name ? "Uploaded" : `Uploaded as ${image.name}`;
      this.events.uploaded(image);
      announce(`${file.name} uploaded.`);
    } catch (error) {
      if (error instanceof ApiError && error.code === "aborted") return;
      item.dataset.state = "failed";
      progress.hidden = true;
      const message = error instanceof ApiError ? error.message : "The upload failed.";
      status.textContent = `Not uploaded: ${message}`;
      announce(`${file.name} was not uploaded: ${message}`);
      if (error instanceof ApiError && error.status === 401) this.events.failed(error);
    } finally {
      this.active.delete(upload);
      this.showClearButton();
    }
  }
}
