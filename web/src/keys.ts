import { ApiError, type AccessKey, type Api } from "./api.js";
import type { Capabilities } from "./capabilities.js";
import { announce, byId, h } from "./dom.js";
import { formatDate } from "./format.js";

export interface KeysEvents {
  failed(error: unknown): void;
  /** The key this tab uses was revoked here. */
  revokedOwnKey(): void;
  /** The server has no keys API after all. */
  unavailable(): void;
}

/** Whether `key` (the secret) is the one listed as `record`, by its display prefix. */
export function isSameKey(key: string, record: AccessKey): boolean {
  return record.prefix.length >= 8 && key.startsWith(record.prefix.replace(/[.…]+$/, ""));
}

/** The access-keys dialog: list, create (the secret shown once, with a copy button) and revoke. */
export class KeysView {
  private readonly dialog = byId("keys-dialog", HTMLDialogElement);
  private readonly rows = byId("key-rows", HTMLTableSectionElement);
  private readonly form = byId("key-create-form", HTMLFormElement);
  private readonly label = byId("key-label", HTMLInputElement);
  private readonly scope = byId("key-scope", HTMLSelectElement);
  private readonly expiry = byId("key-expiry", HTMLSelectElement);
  private readonly newKey = byId("new-key");
  private readonly newKeyValue = byId("new-key-value", HTMLInputElement);
  private readonly copyButton = byId("copy-new-key", HTMLButtonElement);
  private readonly status = byId("keys-status");
  private readonly error = byId("keys-error");
  private opener: HTMLElement | null = null;

  constructor(
    private readonly api: Api,
    private readonly capabilities: Capabilities,
    private readonly events: KeysEvents,
  ) {
    for (const close of this.dialog.querySelectorAll<HTMLButtonElement>("[data-close]")) {
      close.addEventListener("click", () => this.dialog.close());
    }
    this.dialog.addEventListener("close", () => {
      this.newKeyValue.value = "";
      this.newKey.hidden = true;
      if (this.opener?.isConnected) this.opener.focus();
      this.opener = null;
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.create();
    });
    this.copyButton.addEventListener("click", () => void this.copyNewKey());
    this.newKeyValue.addEventListener("focus", () => this.newKeyValue.select());
  }

  close(): void {
    if (this.dialog.open) this.dialog.close();
  }

  async open(opener: HTMLElement): Promise<void> {
    this.opener = opener;
    this.status.textContent = "";
    this.error.textContent = "";
    this.newKey.hidden = true;
    this.rows.replaceChildren(h("tr", {}, h("td", { colspan: "7" }, "Loading…")));
    if (!this.dialog.open) this.dialog.showModal();
    await this.refresh();
  }

  private fail(error: unknown): void {
    if (error instanceof ApiError && error.isMissingEndpoint) {
      this.capabilities.keys = false;
      this.dialog.close();
      this.events.unavailable();
      return;
    }
    if (error instanceof ApiError && error.status === 401) {
      this.dialog.close();
      this.events.failed(error);
      return;
    }
    this.error.textContent = error instanceof ApiError ? error.message : "Something went wrong.";
  }

  private async refresh(): Promise<void> {
    try {
      const keys = (await this.api.listKeys()).filter((key) => !key.revoked_at);
      this.render(keys);
    } catch (error) {
      this.fail(error);
    }
  }

  private render(keys: AccessKey[]): void {
    if (keys.length === 0) {
      this.rows.replaceChildren(h("tr", {}, h("td", { colspan: "7" }, "No keys.")));
      return;
    }
    this.rows.replaceChildren(...keys.map((key) => this.row(key)));
  }

  private row(key: AccessKey): HTMLTableRowElement {
    const mine = isSameKey(this.api.key, key);
    const revoke = h("button", { type: "button", class: "button danger-outline small" }, "Revoke");
    revoke.setAttribute("aria-label", `Revoke ${key.label || key.prefix}`);
    const actions = h("div", { class: "key-actions" }, revoke);
    revoke.addEventListener("click", () => {
      const question = h("span", {}, mine ? "Revoke the key this tab uses? You will be signed out." : "Revoke this key?");
      const yes = h("button", { type: "button", class: "button danger small" }, "Yes, revoke");
      const no = h("button", { type: "button", class: "button small" }, "Cancel");
      no.addEventListener("click", () => {
        actions.replaceChildren(revoke);
        revoke.focus();
      });
      yes.addEventListener("click", () => void this.revoke(key, mine));
      actions.replaceChildren(question, yes, no);
      no.focus();
    });
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, key.label || "—", mine ? h("span", { class: "badge" }, "this tab") : null),
      h("td", {}, h("code", { title: "The first characters of the key" }, `${key.prefix}…`)),
      h("td", {}, key.scope === "read" ? "Read only" : key.scope === "read-write" ? "Read and write" : key.scope),
      h("td", {}, formatDate(key.created_at)),
      h("td", {}, key.last_used_at ? formatDate(key.last_used_at) : "Never"),
      h("td", {}, key.expires_at ? formatDate(key.expires_at) : "Never"),
      h("td", {}, actions),
    );
  }

  private async revoke(key: AccessKey, mine: boolean): Promise<void> {
    this.error.textContent = "";
    try {
      await this.api.revokeKey(key.id);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (mine) {
      this.dialog.close();
      this.events.revokedOwnKey();
      return;
    }
    this.status.textContent = `Revoked ${key.label || key.prefix}.`;
    announce(this.status.textContent);
    await this.refresh();
    this.label.focus();
  }

  private async create(): Promise<void> {
    this.error.textContent = "";
    const label = this.label.value.trim();
    if (label === "") return;
    const expiresIn = this.expiry.value === "" ? undefined : Number(this.expiry.value);
    try {
      const created = await this.api.createKey({ label, scope: this.scope.value, ...(expiresIn ? { expires_in: expiresIn } : {}) });
      this.newKeyValue.value = created.key;
      this.newKey.hidden = false;
      this.label.value = "";
      this.status.textContent = `Created the key "${label}". Copy it now: it will not be shown again.`;
      await this.refresh();
      this.newKeyValue.focus();
    } catch (error) {
      this.fail(error);
    }
  }

  private async copyNewKey(): Promise<void> {
    try {
      await navigator.clipboard.writeText(this.newKeyValue.value);
      this.status.textContent = "Key copied to the clipboard.";
    } catch {
      this.newKeyValue.focus();
      this.status.textContent = "Select the key and copy it (the browser did not allow automatic copying).";
    }
  }
}
