import "./styles.css";
import { Api, ApiError, logIn } from "./api.js";
import { detectCapabilities, type Capabilities } from "./capabilities.js";
import { DetailView } from "./detail.js";
import { announce, byId } from "./dom.js";
import { formatBytes, formatCount, plural } from "./format.js";
import { isSameKey, KeysView } from "./keys.js";
import { Library } from "./library.js";
import { forgetSession, loadSession, saveSession, type Session } from "./session.js";
import { Uploads } from "./uploads.js";

const signInView = byId("sign-in-view");
const libraryView = byId("library-view");
const accountNav = byId("account-nav");
const stats = byId("stats");
const openKeysButton = byId("open-keys", HTMLButtonElement);
const signOutButton = byId("sign-out", HTMLButtonElement);
const passwordForm = byId("password-form", HTMLFormElement);
const usernameInput = byId("username", HTMLInputElement);
const passwordInput = byId("password", HTMLInputElement);
const keyForm = byId("key-form", HTMLFormElement);
const keyInput = byId("access-key", HTMLInputElement);
const signInError = byId("sign-in-error");
const fileInput = byId("file-input", HTMLInputElement);
const emptyState = byId("empty-state");
const listError = byId("list-error");
const dropOverlay = byId("drop-overlay");

const api = new Api();
// Until the OpenAPI document says otherwise, assume the optional features are there.
const capabilities: Capabilities = { signedLinks: true, keys: true };
let session: Session | null = null;

const library = new Library(api, byId("grid", HTMLUListElement), byId("grid-footer"), byId("load-more", HTMLButtonElement), {
  open: (image, opener) => detail.open(image, opener),
  changed: () => renderStats(),
  failed: (error) => onFailure(error),
});
const uploads = new Uploads(api, byId("upload-list", HTMLUListElement), byId("clear-uploads", HTMLButtonElement), {
  uploaded: (image) => library.add(image),
  failed: (error) => onFailure(error),
});
const detail = new DetailView(api, library, capabilities, { failed: (error) => onFailure(error) });
const keys = new KeysView(api, capabilities, {
  failed: (error) => onFailure(error),
  revokedOwnKey: () => void signOut("The key this tab used was revoked. Sign in again to continue.", { revoke: false }),
  unavailable: () => {
    openKeysButton.hidden = true;
    announce("This server does not offer key management.");
  },
});

function renderStats(): void {
  const total = library.total;
  const bytes = formatBytes(library.loadedBytes);
  stats.textContent = library.hasMore
    ? `${plural(total, "image", "images")} · ${bytes} in the ${formatCount(library.loadedCount)} shown`
    : `${plural(total, "image", "images")} · ${bytes}`;
  emptyState.hidden = total > 0 || library.hasMore;
}

/** Errors from anywhere: a key that stopped working ends the session; anything else is shown. */
function onFailure(error: unknown): void {
  if (error instanceof ApiError && error.status === 401) {
    void signOut("Your access key is no longer valid. Sign in again.", { revoke: false });
    return;
  }
  listError.textContent = error instanceof ApiError ? error.message : "Something went wrong.";
}

function showSignIn(message = ""): void {
  libraryView.hidden = true;
  accountNav.hidden = true;
  stats.hidden = true;
  signInView.hidden = false;
  signInError.textContent = message;
  document.title = "Sign in · imgvault";
}

function showLibrary(): void {
  signInView.hidden = true;
  libraryView.hidden = false;
  accountNav.hidden = false;
  stats.hidden = false;
  openKeysButton.hidden = !capabilities.keys;
  document.title = "Your images · imgvault";
}

/** Uses `candidate` if the server accepts it: the first page of images is the proof. */
async function enter(candidate: Session): Promise<boolean> {
  api.key = candidate.key;
  listError.textContent = "";
  try {
    await library.reload();
  } catch (error) {
    api.key = "";
    library.clear();
    if (error instanceof ApiError && error.status === 401) {
      forgetSession();
      showSignIn("That access key is not valid: it may have expired or been revoked.");
      return false;
    }
    showSignIn(error instanceof ApiError ? error.message : "Could not load your images.");
    return false;
  }
  session = candidate;
  saveSession(candidate);
  showLibrary();
  return true;
}

async function signOut(message = "", { revoke }: { revoke: boolean }): Promise<void> {
  const ending = session;
  session = null;
  detail.close();
  keys.close();
  uploads.clear();
  library.clear();
  forgetSession();
  api.key = "";
  passwordInput.value = "";
  keyInput.value = "";
  listError.textContent = "";
  showSignIn(message);
  usernameInput.focus();
  announce(message || "Signed out.");
  // A key our own sign-in minted is ours to revoke; a pasted one belongs to the person.
  if (revoke && ending?.source === "login" && capabilities.keys) await revokeLoginKey(ending.key);
}

async function revokeLoginKey(key: string): Promise<void> {
  const own = new Api(key);
  try {
    const matches = (await own.listKeys()).filter((record) => !record.revoked_at && isSameKey(key, record));
    if (matches.length === 1 && matches[0]) await own.revokeKey(matches[0].id);
  } catch {
    // Best effort: the key is forgotten by this tab either way.
  }
}

function withBusy(form: HTMLFormElement, work: () => Promise<void>): void {
  const button = form.querySelector<HTMLButtonElement>("button[type=submit]");
  if (button?.disabled) return;
  if (button) button.disabled = true;
  form.setAttribute("aria-busy", "true");
  void work().finally(() => {
    if (button) button.disabled = false;
    form.removeAttribute("aria-busy");
  });
}

passwordForm.addEventListener("submit", (event) => {
  event.preventDefault();
  withBusy(passwordForm, async () => {
    signInError.textContent = "";
    let key: string;
    try {
      key = await logIn(usernameInput.value.trim(), passwordInput.value);
    } catch (error) {
      signInError.textContent = error instanceof ApiError ? error.message : "Could not sign in.";
      passwordInput.select();
      return;
    }
    passwordInput.value = "";
    if (await enter({ key, source: "login" })) byId("library-heading").focus();
  });
});

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  withBusy(keyForm, async () => {
    signInError.textContent = "";
    const key = keyInput.value.trim();
    if (await enter({ key, source: "pasted" })) {
      keyInput.value = "";
      byId("library-heading").focus();
    } else {
      keyInput.select();
    }
  });
});

signOutButton.addEventListener("click", () => void signOut("", { revoke: true }));
openKeysButton.addEventListener("click", () => void keys.open(openKeysButton));

fileInput.addEventListener("change", () => {
  if (fileInput.files) uploads.add([...fileInput.files]);
  fileInput.value = "";
});

// Dropping files anywhere on the page uploads them; elsewhere the browser would navigate to them.
function carriesFiles(event: DragEvent): boolean {
  return event.dataTransfer?.types.includes("Files") ?? false;
}
document.addEventListener("dragover", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  if (session && event.dataTransfer) event.dataTransfer.dropEffect = "copy";
  dropOverlay.hidden = !session;
});
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) dropOverlay.hidden = true;
});
document.addEventListener("drop", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  dropOverlay.hidden = true;
  if (session && event.dataTransfer) uploads.add([...event.dataTransfer.files]);
});

async function start(): Promise<void> {
  Object.assign(capabilities, await detectCapabilities());
  const saved = loadSession();
  if (saved && (await enter(saved))) return;
  if (!saved) showSignIn();
  usernameInput.focus();
}

void start();
