/** The element with this id, of the expected type; a missing one is a bug in index.html. */
export function byId<T extends HTMLElement = HTMLElement>(id: string, type?: { new (): T }): T {
  const element = document.getElementById(id);
  if (!element || (type && !(element instanceof type))) throw new Error(`index.html lacks #${id}`);
  return element as T;
}

type Child = Node | string | null | undefined | false;

/**
 * Creates an element. Text is always set as text, never parsed as HTML, so names and messages from
 * the server cannot inject markup (the page's CSP also refuses HTML sinks through Trusted Types).
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string | boolean>> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (name === "class") element.className = String(value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

const announcer = (): HTMLElement => byId("announcer");

/** Says something to assistive technology through the polite live region. */
export function announce(message: string): void {
  const region = announcer();
  // Clearing first makes a repeated message be read again.
  region.textContent = "";
  window.setTimeout(() => {
    region.textContent = message;
  }, 50);
}
