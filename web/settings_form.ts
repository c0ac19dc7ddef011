/// <reference lib="dom" />
/**
 * The training settings as a form built from the CLI's own flag table: each field starts at the
 * flag's default, offers its choices, and is checked by its schema, so the page and
 * `deno task train` accept the same values with the same words ("must be a number > 0").
 */
import {
  type Flag,
  flagName,
  type FlagTable,
  type FlagValues,
  refusal,
} from "../src/train/settings.ts";
import { element } from "./dom.ts";

/** How the form labels a flag of F: the words shown for it. */
export interface FieldLabel<F extends FlagTable> {
  key: keyof F & string;
  label: string;
}

interface Field {
  key: string;
  label: string;
  flag: Flag<unknown>;
  input: HTMLInputElement | HTMLSelectElement;
}

/** A form over the flags F; `values()` gives what parsing them on the command line would. */
export class SettingsForm<F extends FlagTable> {
  readonly #flags: F;
  readonly #fields: Field[] = [];
  #unused: ReadonlyMap<string, string> = new Map();
  #locked = false;

  constructor(flags: F) {
    this.#flags = flags;
  }

  /** Adds a field for each of `labels` to `container`; every flag of F needs one. */
  addFields(container: HTMLElement, labels: readonly FieldLabel<F>[]): void {
    for (const { key, label } of labels) {
      const flag = this.#flags[key];
      const input = fieldInput(key, flag);
      const title = `${flag.help} (${flagName(key)})`;
      const isSwitch = input instanceof HTMLInputElement && input.type === "checkbox";
      container.append(
        isSwitch
          ? element("label", { class: "switch", title }, input, label)
          : element("label", { title }, label, input),
      );
      this.#fields.push({ key, label, flag, input });
    }
  }

  /** Every field's value, checked by its flag's schema; the first wrong one throws its message. */
  values(): FlagValues<F> {
    const values: Record<string, unknown> = {};
    for (const field of this.#fields) {
      field.input.removeAttribute("aria-invalid");
    }
    for (const { key, label, flag, input } of this.#fields) {
      const raw = rawValue(input);
      // An empty optional field is the flag left out, as on the command line.
      if (raw === "" && flag.default === undefined) {
        values[key] = undefined;
        continue;
      }
      const parsed = flag.schema.safeParse(raw);
      if (!parsed.success) {
        input.setAttribute("aria-invalid", "true");
        input.focus();
        throw new SettingsError(refusal(label, flag, raw));
      }
      values[key] = parsed.data;
    }
    return values as FlagValues<F>;
  }

  /** A field's value as entered, unchecked. */
  raw(key: keyof F & string): string | boolean {
    return rawValue(this.#field(key).input);
  }

  /** Calls `listener` after any field changes. */
  onChange(listener: () => void): void {
    for (const { input } of this.#fields) input.addEventListener("change", listener);
  }

  /**
   * Greys out the fields that the other settings leave unused (key: what they are for), as the
   * CLI refuses them given with an optimizer or schedule that ignores them.
   */
  setUnused(unused: ReadonlyMap<string, string>): void {
    this.#unused = unused;
    this.#apply();
  }

  /** Locks every field while a run is under way. */
  lock(locked: boolean): void {
    this.#locked = locked;
    this.#apply();
  }

  /** Marks the fields whose flags `message` names (the CLI's own checks name flags). */
  markNamedIn(message: string): void {
    for (const { key, input } of this.#fields) {
      if (new RegExp(`(^|[^\\w-])${flagName(key)}(?![\\w-])`).test(message)) {
        input.setAttribute("aria-invalid", "true");
      }
    }
  }

  #apply(): void {
    for (const { key, input } of this.#fields) {
      const unusedFor = this.#unused.get(key);
      input.disabled = this.#locked || unusedFor !== undefined;
      input.title = unusedFor === undefined ? "" : `only for ${unusedFor}`;
    }
  }

  #field(key: string): Field {
    const field = this.#fields.find((f) => f.key === key);
    if (!field) throw new Error(`the form has no field ${key}`);
    return field;
  }
}

/** A setting the form refuses; its message names the field and what it takes. */
export class SettingsError extends Error {
  override name = "SettingsError";
}

function fieldInput(key: string, flag: Flag<unknown>): HTMLInputElement | HTMLSelectElement {
  const fallback = typeof flag.default === "function"
    ? (flag.default as () => unknown)()
    : flag.default;
  const name = flagName(key).slice(2);
  if (flag.choices) {
    const select = element(
      "select",
      { name, id: `setting-${name}` },
      ...flag.choices.map((choice) => element("option", { value: choice }, choice)),
    );
    select.value = String(fallback);
    return select;
  }
  if (flag.valueName === undefined) {
    const checkbox = element("input", { type: "checkbox", name, id: `setting-${name}` });
    checkbox.checked = Boolean(fallback);
    return checkbox;
  }
  const input = element("input", {
    type: "text",
    name,
    id: `setting-${name}`,
    inputmode: flag.valueName === "PATH" ? "text" : "decimal",
    autocomplete: "off",
  });
  input.value = fallback === undefined
    ? ""
    : Array.isArray(fallback)
    ? fallback.join(",")
    : String(fallback);
  if (fallback === undefined) input.placeholder = flag.defaultText ?? "";
  return input;
}

function rawValue(input: HTMLInputElement | HTMLSelectElement): string | boolean {
  return input instanceof HTMLInputElement && input.type === "checkbox"
    ? input.checked
    : input.value.trim();
}
