import { thumbHashToDataURL } from "thumbhash";
import { ApiError, type Api, type ImageObject } from "./api.js";
import { h } from "./dom.js";
import { formatBytes, formatCount } from "./format.js";

const pageSize = 48;
/** Thumbnail sizes are rounded up to a step so the server's variant cache sees few distinct sizes. */
const thumbnailStep = 128;
const maxThumbnail = 1024;

export interface LibraryEvents {
  open(image: ImageObject, opener: HTMLElement): void;
  changed(): void;
  failed(error: unknown): void;
}

interface Entry {
  image: ImageObject;
  item: HTMLLIElement;
  button: HTMLButtonElement;
  thumbnail: HTMLImageElement;
  meta: HTMLSpanElement;
  label: HTMLSpanElement;
  /** The object URL currently shown, revoked when replaced or removed. */
  objectUrl: string | null;
  /** sha256 of the bytes the thumbnail shows (or is loading). */
  shownSha: string | null;
  visible: boolean;
}

function describe(image: ImageObject): string {
  const frames = image.pages > 1 ? ` · ${formatCount(image.pages)} frames` : "";
  return `${image.width} × ${image.height}${frames} · ${formatBytes(image.bytes)}`;
}

function placeholderFor(image: ImageObject): string | null {
  if (!image.thumbhash) return null;
  try {
    const bytes = Uint8Array.from(atob(image.thumbhash.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    return thumbHashToDataURL(bytes);
  } catch {
    return null;
  }
}

/**
 * The grid of the caller's images, newest first: pages fetched as the person scrolls (or presses
 * "Load more"), thumbnails fetched with the key when a card comes into view, at the size the card
 * is drawn, and painted first from the image's thumbhash when the server provides one.
 */
export class Library {
  private readonly entries = new Map<string, Entry>();
  private readonly byThumbnail = new WeakMap<Element, Entry>();
  private next: string | null = null;
  private loading: Promise<void> | null = null;
  private transforms = true;
  private generation = 0;
  /** All of the person's images, per the server, kept in step with uploads and deletions. */
  total = 0;
  private readonly thumbnails: IntersectionObserver;
  private readonly scrolling: IntersectionObserver;

  constructor(
    private readonly api: Api,
    private readonly grid: HTMLUListElement,
    private readonly footer: HTMLElement,
    private readonly loadMoreButton: HTMLButtonElement,
    private readonly events: LibraryEvents,
  ) {
    this.thumbnails = new IntersectionObserver((records) => this.onThumbnailsSeen(records), { rootMargin: "300px" });
    this.scrolling = new IntersectionObserver((records) => {
      if (records.some((record) => record.isIntersecting)) this.loadMore();
    }, { rootMargin: "800px" });
    this.loadMoreButton.addEventListener("click", () => this.loadMore());
  }

  get hasMore(): boolean {
    return this.next !== null;
  }

  get loadedCount(): number {
    return this.entries.size;
  }

  get loadedBytes(): number {
    let sum = 0;
    for (const entry of this.entries.values()) sum += entry.image.bytes;
    return sum;
  }

  get(name: string): ImageObject | undefined {
    return this.entries.get(name)?.image;
  }

  /** Drops everything shown and loads the first page again. */
  async reload(): Promise<void> {
    this.clear();
    this.next = `/image/?limit=${pageSize}`;
    await this.loadNext();
  }

  /** The image called `name`, loading further pages (a bounded number) until it shows up. */
  async find(name: string, maxPages = 20): Promise<ImageObject | undefined> {
    for (let page = 0; !this.entries.has(name) && this.next !== null && page < maxPages; page += 1) {
      await this.loadNext();
    }
    return this.get(name);
  }

  /** Loads the next page unless one is loading or none is left. */
  loadMore(): void {
    this.loadNext().catch((error: unknown) => this.events.failed(error));
  }

  private loadNext(): Promise<void> {
    if (this.loading) return this.loading;
    const path = this.next;
    if (path === null) return Promise.resolve();
    const generation = this.generation;
    this.loadMoreButton.disabled = true;
    this.loading = (async () => {
      try {
        const page = await this.api.listPage(path);
        if (generation !== this.generation) return;
        for (const image of page.images) if (!this.entries.has(image.name)) this.grid.append(this.createEntry(image).item);
        this.next = page.next;
        this.total = page.total ?? Math.max(this.total, this.entries.size);
      } finally {
        if (generation === this.generation) {
          this.loading = null;
          this.loadMoreButton.disabled = false;
          this.loadMoreButton.hidden = this.next === null;
          this.events.changed();
          // Observing again reports the footer's current state, so a short page that leaves the
          // footer on screen fetches the next one without waiting for a scroll.
          this.scrolling.unobserve(this.footer);
          if (this.next !== null) this.scrolling.observe(this.footer);
        }
      }
    })();
    return this.loading;
  }

  /** A new image goes first, as the newest. */
  add(image: ImageObject): void {
    const existing = this.entries.get(image.name);
    if (existing) {
      this.update(image.name, image);
      return;
    }
    this.grid.prepend(this.createEntry(image).item);
    this.total += 1;
    this.events.changed();
  }

  /** The image called `name` is now `image` (renamed, replaced, or both). */
  update(name: string, image: ImageObject): void {
    const entry = this.entries.get(name);
    if (!entry) return;
    if (name !== image.name) {
      this.entries.delete(name);
      this.entries.set(image.name, entry);
    }
    entry.image = image;
    entry.label.textContent = image.name;
    entry.meta.textContent = describe(image);
    entry.item.dataset.name = image.name;
    if (entry.shownSha !== image.sha256 && entry.visible) this.loadThumbnail(entry);
    else if (entry.shownSha !== image.sha256) entry.shownSha = null;
    this.events.changed();
  }

  remove(name: string): void {
    const entry = this.entries.get(name);
    if (!entry) return;
    this.dispose(entry);
    this.entries.delete(name);
    entry.item.remove();
    this.total = Math.max(0, this.total - 1);
    this.events.changed();
  }

  /** The card's button, to give focus back to when a dialog about it closes. */
  buttonFor(name: string): HTMLButtonElement | undefined {
    return this.entries.get(name)?.button;
  }

  clear(): void {
    this.generation += 1;
    this.loading = null;
    this.next = null;
    this.total = 0;
    for (const entry of this.entries.values()) this.dispose(entry);
    this.entries.clear();
    this.grid.replaceChildren();
    this.scrolling.disconnect();
    this.loadMoreButton.hidden = true;
    this.loadMoreButton.disabled = false;
  }

  private dispose(entry: Entry): void {
    this.thumbnails.unobserve(entry.thumbnail);
    if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
    entry.objectUrl = null;
  }

  private createEntry(image: ImageObject): Entry {
    const thumbnail = h("img", { alt: "", decoding: "async", class: "thumb-image" });
    const placeholder = placeholderFor(image);
    if (placeholder) {
      thumbnail.src = placeholder;
      thumbnail.classList.add("is-placeholder");
    }
    const label = h("span", { class: "card-name" }, image.name);
    const meta = h("span", { class: "card-meta" }, describe(image));
    const button = h("button", { type: "button", class: "card-button" }, h("span", { class: "thumb" }, thumbnail), label, meta);
    const item = h("li", { class: "card" }, button);
    item.dataset.name = image.name;
    const entry: Entry = { image, item, button, thumbnail, meta, label, objectUrl: null, shownSha: null, visible: false };
    button.addEventListener("click", () => this.events.open(entry.image, button));
    this.entries.set(image.name, entry);
    this.byThumbnail.set(thumbnail, entry);
    this.thumbnails.observe(thumbnail);
    return entry;
  }

  private onThumbnailsSeen(records: IntersectionObserverEntry[]): void {
    for (const record of records) {
      const entry = this.byThumbnail.get(record.target);
      if (!entry || this.entries.get(entry.image.name) !== entry) continue;
      entry.visible = record.isIntersecting;
      if (record.isIntersecting && entry.shownSha !== entry.image.sha256) this.loadThumbnail(entry);
    }
  }

  /** Square thumbnails at the card's drawn size in device pixels. */
  private thumbnailSize(entry: Entry): number {
    const cssPixels = Math.max(entry.thumbnail.clientWidth, entry.thumbnail.clientHeight, 160);
    const devicePixels = cssPixels * Math.min(window.devicePixelRatio || 1, 3);
    return Math.min(maxThumbnail, Math.ceil(devicePixels / thumbnailStep) * thumbnailStep);
  }

  private loadThumbnail(entry: Entry): void {
    const image = entry.image;
    entry.shownSha = image.sha256;
    const size = this.thumbnailSize(entry);
    const fetchThumbnail = async (): Promise<Blob> => {
      if (!this.transforms) return this.api.fetchImage(image.name);
      try {
        return await this.api.fetchImage(image.name, { w: size, h: size, fit: "cover", format: "webp" });
      } catch (error) {
        // A server that refuses the parameters cannot transform: show originals from now on.
        if (!(error instanceof ApiError) || error.status !== 400) throw error;
        this.transforms = false;
        return this.api.fetchImage(image.name);
      }
    };
    fetchThumbnail().then(
      (blob) => {
        if (this.entries.get(entry.image.name) !== entry || entry.image.sha256 !== image.sha256) return;
        if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
        entry.objectUrl = URL.createObjectURL(blob);
        entry.thumbnail.src = entry.objectUrl;
        entry.thumbnail.classList.remove("is-placeholder", "is-broken");
      },
      (error: unknown) => {
        if (entry.image.sha256 !== image.sha256) return;
        entry.shownSha = null;
        entry.thumbnail.classList.add("is-broken");
        if (error instanceof ApiError && error.status === 401) this.events.failed(error);
      },
    );
  }
}
