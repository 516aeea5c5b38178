import { ApiError, type Api, type ImageObject } from "./api.js";
import type { Capabilities } from "./capabilities.js";
import { announce, byId, h } from "./dom.js";
import { formatBytes, formatCount, formatDate, formatWallClock } from "./format.js";
import type { Library } from "./library.js";

export interface DetailEvents {
  failed(error: unknown): void;
}

const conflictMessage =
  "Someone changed this image after you opened it, so nothing was changed. Load the latest version, check it, and try again.";

/** "Canon" + "Canon EOS R5" → "Canon EOS R5": models usually repeat their maker's name. */
function cameraName(make: string | null | undefined, model: string | null | undefined): string {
  if (make && model) return model.toLowerCase().startsWith(make.toLowerCase()) ? model : `${make} ${model}`;
  return make ?? model ?? "";
}

/**
 * One image in a modal dialog: the picture, its metadata and the actions on it. Writes that depend
 * on the version shown (replace, delete) send `If-Match` with its SHA-256, so a change made
 * meanwhile elsewhere is reported instead of overwritten.
 */
export class DetailView {
  private readonly dialog = byId("detail", HTMLDialogElement);
  private readonly title = byId("detail-title");
  private readonly picture = byId("detail-image", HTMLImageElement);
  private readonly pictureStatus = byId("detail-image-status");
  private readonly meta = byId("detail-meta");
  private readonly renameForm = byId("rename-form", HTMLFormElement);
  private readonly renameInput = byId("rename-input", HTMLInputElement);
  private readonly replaceInput = byId("replace-input", HTMLInputElement);
  private readonly replaceProgress = byId("replace-progress", HTMLProgressElement);
  private readonly deleteButton = byId("delete", HTMLButtonElement);
  private readonly deleteConfirm = byId("delete-confirm");
  private readonly deleteQuestion = byId("delete-question");
  private readonly deleteYes = byId("delete-yes", HTMLButtonElement);
  private readonly deleteNo = byId("delete-no", HTMLButtonElement);
  private readonly downloadButton = byId("download", HTMLButtonElement);
  private readonly linkForm = byId("link-form", HTMLFormElement);
  private readonly linkExpiry = byId("link-expiry", HTMLSelectElement);
  private readonly linkResult = byId("link-result");
  private readonly linkUrl = byId("link-url", HTMLInputElement);
  private readonly linkExpires = byId("link-expires");
  private readonly status = byId("detail-status");
  private readonly errorBox = byId("detail-error");
  private readonly errorText = byId("detail-error-text");
  private readonly reloadButton = byId("detail-reload", HTMLButtonElement);

  private image: ImageObject | null = null;
  private opener: HTMLElement | null = null;
  private original: { sha256: string; blob: Blob; url: string } | null = null;
  private loadingPicture: AbortController | null = null;
  private busy = false;

  constructor(
    private readonly api: Api,
    private readonly library: Library,
    private readonly capabilities: Capabilities,
    private readonly events: DetailEvents,
  ) {
    for (const close of this.dialog.querySelectorAll<HTMLButtonElement>("[data-close]")) {
      close.addEventListener("click", () => this.dialog.close());
    }
    this.dialog.addEventListener("close", () => this.onClosed());
    this.renameForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.rename();
    });
    this.replaceInput.addEventListener("change", () => {
      const file = this.replaceInput.files?.[0];
      this.replaceInput.value = "";
      if (file) void this.replace(file);
    });
    this.downloadButton.addEventListener("click", () => void this.download());
    this.deleteButton.addEventListener("click", () => {
      this.deleteConfirm.hidden = false;
      this.deleteNo.focus();
    });
    this.deleteNo.addEventListener("click", () => {
      this.deleteConfirm.hidden = true;
      this.deleteButton.focus();
    });
    this.deleteYes.addEventListener("click", () => void this.remove());
    this.linkForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.makeLink();
    });
    this.linkUrl.addEventListener("focus", () => this.linkUrl.select());
    this.reloadButton.addEventListener("click", () => void this.reloadLatest());
  }

  get isOpen(): boolean {
    return this.dialog.open;
  }

  open(image: ImageObject, opener: HTMLElement): void {
    this.opener = opener;
    this.show(image);
    if (!this.dialog.open) this.dialog.showModal();
  }

  close(): void {
    if (this.dialog.open) this.dialog.close();
  }

  private show(image: ImageObject): void {
    const changedBytes = this.image?.sha256 !== image.sha256;
    this.image = image;
    this.title.textContent = image.name;
    this.renameInput.value = image.name;
    this.deleteQuestion.textContent = `Delete ${image.name}? This cannot be undone.`;
    this.deleteConfirm.hidden = true;
    this.linkForm.hidden = !this.capabilities.signedLinks;
    this.linkResult.hidden = true;
    this.replaceProgress.hidden = true;
    this.renderMeta(image);
    this.clearMessages();
    if (changedBytes || !this.original) this.loadPicture(image);
  }

  private renderMeta(image: ImageObject): void {
    const rows: Array<[string, string | Node]> = [
      ["Name", image.name],
      ["Format", `${image.format.toUpperCase()} (${image.content_type})`],
      ["Dimensions", `${image.width} × ${image.height} px${image.pages > 1 ? `, ${formatCount(image.pages)} frames` : ""}`],
      ["Size", `${formatBytes(image.bytes)} (${formatCount(image.bytes)} bytes)`],
      ["SHA-256", h("code", { class: "hash" }, image.sha256)],
      ["Uploaded", formatDate(image.created_at)],
      ["Updated", formatDate(image.updated_at)],
    ];
    const exif = image.exif;
    if (exif) {
      const camera = cameraName(exif.make, exif.model);
      if (camera) rows.push(["Camera", camera]);
      if (exif.lens) rows.push(["Lens", exif.lens]);
      if (exif.taken_at) rows.push(["Taken", formatWallClock(exif.taken_at)]);
    }
    if (image.has_gps !== undefined) rows.push(["Location", image.has_gps ? "Contains GPS coordinates" : "None recorded"]);
    this.meta.replaceChildren(...rows.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  }

  private loadPicture(image: ImageObject): void {
    this.loadingPicture?.abort();
    const controller = new AbortController();
    this.loadingPicture = controller;
    this.pictureStatus.textContent = "Loading the picture…";
    this.picture.alt = image.name;
    this.api.fetchImage(image.name, {}, controller.signal).then(
      (blob) => {
        if (controller.signal.aborted || this.image?.sha256 !== image.sha256) return;
        this.forgetOriginal();
        const url = URL.createObjectURL(blob);
        this.original = { sha256: image.sha256, blob, url };
        this.picture.src = url;
        this.pictureStatus.textContent = "";
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        this.pictureStatus.textContent = error instanceof ApiError ? `The picture could not be loaded: ${error.message}` : "The picture could not be loaded.";
        if (error instanceof ApiError && error.status === 401) this.events.failed(error);
      },
    );
  }

  private forgetOriginal(): void {
    if (this.original) URL.revokeObjectURL(this.original.url);
    this.original = null;
  }

  private onClosed(): void {
    this.loadingPicture?.abort();
    this.loadingPicture = null;
    this.forgetOriginal();
    this.picture.removeAttribute("src");
    this.linkUrl.value = "";
    const name = this.image?.name;
    this.image = null;
    const target = (name ? this.library.buttonFor(name) : undefined) ?? this.opener;
    this.opener = null;
    if (target?.isConnected) target.focus();
    else byId("library-heading").focus();
  }

  private clearMessages(): void {
    this.status.textContent = "";
    this.errorBox.hidden = true;
    this.errorText.textContent = "";
    this.reloadButton.hidden = true;
  }

  private showError(error: unknown): void {
    if (error instanceof ApiError && error.status === 401) {
      this.events.failed(error);
      return;
    }
    const conflict = error instanceof ApiError && error.code === "precondition_failed";
    this.status.textContent = "";
    this.errorText.textContent = conflict ? conflictMessage : error instanceof ApiError ? error.message : "Something went wrong.";
    this.reloadButton.hidden = !conflict;
    this.errorBox.hidden = false;
  }

  /** Runs one action at a time against the image shown. */
  private async act(action: (image: ImageObject) => Promise<void>): Promise<void> {
    const image = this.image;
    if (!image || this.busy) return;
    this.busy = true;
    this.dialog.setAttribute("aria-busy", "true");
    this.clearMessages();
    try {
      await action(image);
    } catch (error) {
      if (this.dialog.open) this.showError(error);
      else announce(error instanceof ApiError ? error.message : "Something went wrong.");
    } finally {
      this.busy = false;
      this.dialog.removeAttribute("aria-busy");
    }
  }

  private rename(): Promise<void> {
    return this.act(async (image) => {
      const newName = this.renameInput.value.trim();
      if (newName === "" || newName === image.name) return;
      const updated = await this.api.rename(image.name, newName);
      this.library.update(image.name, updated);
      this.show(updated);
      this.status.textContent = `Renamed to ${updated.name}.`;
    });
  }

  private replace(file: File): Promise<void> {
    return this.act(async (image) => {
      this.replaceProgress.value = 0;
      this.replaceProgress.hidden = false;
      this.status.textContent = `Uploading ${file.name}…`;
      try {
        const updated = await this.api.replace(image.name, file, image.sha256, (fraction) => {
          this.replaceProgress.value = Math.round(fraction * 100);
        }).promise;
        this.library.update(image.name, updated);
        this.show(updated);
        this.status.textContent = `Replaced with ${file.name}.`;
      } finally {
        this.replaceProgress.hidden = true;
      }
    });
  }

  private remove(): Promise<void> {
    return this.act(async (image) => {
      await this.api.remove(image.name, image.sha256);
      this.library.remove(image.name);
      this.dialog.close();
      announce(`Deleted ${image.name}.`);
    });
  }

  private download(): Promise<void> {
    return this.act(async (image) => {
      const blob = this.original?.sha256 === image.sha256 ? this.original.blob : await this.api.fetchImage(image.name);
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: image.name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      // The browser has taken its copy once the click's task ends.
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
      this.status.textContent = `Downloading ${image.name}.`;
    });
  }

  private makeLink(): Promise<void> {
    return this.act(async (image) => {
      let link;
      try {
        link = await this.api.signedLink(image.name, Number(this.linkExpiry.value));
      } catch (error) {
        if (error instanceof ApiError && error.isMissingEndpoint) {
          this.capabilities.signedLinks = false;
          this.linkForm.hidden = true;
          this.status.textContent = "This server cannot make signed links.";
          return;
        }
        throw error;
      }
      this.linkUrl.value = link.url;
      this.linkExpires.textContent = `Works without a key until ${formatDate(link.expires_at)}.`;
      this.linkResult.hidden = false;
      try {
        await navigator.clipboard.writeText(link.url);
        this.status.textContent = "Link copied to the clipboard.";
      } catch {
        this.status.textContent = "Copy the link below (the browser did not allow automatic copying).";
        this.linkUrl.focus();
      }
    });
  }

  /** After a conflict: fetch the list again and show the image as it is now, if it still exists. */
  private async reloadLatest(): Promise<void> {
    const name = this.image?.name;
    if (!name) return;
    this.clearMessages();
    let latest: ImageObject | undefined;
    try {
      await this.library.reload();
      latest = await this.library.find(name);
    } catch (error) {
      this.showError(error);
      return;
    }
    if (!latest) {
      this.dialog.close();
      announce(`${name} no longer exists.`);
      return;
    }
    this.show(latest);
    this.status.textContent = "This is the latest version.";
  }
}
