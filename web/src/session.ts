// The access key lives in sessionStorage only: per tab, gone when the tab closes, never in a URL
// or in localStorage, and forgotten on sign-out.

const keyItem = "imgvault.key";
const sourceItem = "imgvault.key-source";

/** How the key came to the page: minted by our own sign-in (ours to revoke) or pasted by the person. */
export type KeySource = "login" | "pasted";

export interface Session {
  key: string;
  source: KeySource;
}

export function loadSession(): Session | null {
  const key = sessionStorage.getItem(keyItem);
  if (!key) return null;
  return { key, source: sessionStorage.getItem(sourceItem) === "login" ? "login" : "pasted" };
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(keyItem, session.key);
  sessionStorage.setItem(sourceItem, session.source);
}

export function forgetSession(): void {
  sessionStorage.removeItem(keyItem);
  sessionStorage.removeItem(sourceItem);
}
