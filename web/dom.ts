/// <reference lib="dom" />
/**
 * The few DOM helpers the page's modules share: typed lookups of the elements web/index.html
 * declares, and element creation.
 */

/** The element of `id`, which web/index.html must declare with that type. */
export function byId<T extends HTMLElement = HTMLElement>(
  id: string,
  type: { new (): T } = HTMLElement as unknown as { new (): T },
): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) {
    throw new Error(`web/index.html has no ${type.name} #${id}`);
  }
  return element;
}

/** A new element with `attributes` (set as attributes) and `children` (nodes or text). */
export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

/** Shows `message` in `target` (a paragraph that is hidden while there is none). */
export function showMessage(target: HTMLElement, message: string | undefined): void {
  target.textContent = message ?? "";
  target.hidden = message === undefined;
}

/** The message to show for an error: a user error's own line, or the error's text. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
