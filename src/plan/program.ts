/**
 * A program is the static list of kernel calls one training (or evaluation) step runs, over tensor
 * descriptions. Its transient tensors are the bound ones without storage; the allocator derives
 * their lifetimes from where the calls bind them and how (src/plan/allocator.ts), so what a step
 * reads and writes is stated once, in its bindings.
 */
import type { Call } from "../gpu/kernel_call.ts";

export class Program {
  readonly calls: Call[] = [];
  readonly #marks = new Map<string, number>();

  /** Appends an op's calls; `scope` (a layer's name, say) leads their labels. */
  add(scope: string, calls: readonly Call[]): void {
    for (const call of calls) this.calls.push({ ...call, label: `${scope} ${call.label}` });
  }

  /** Names the point after the calls added so far (e.g. the end of the forward pass). */
  mark(name: string): void {
    this.#marks.set(name, this.calls.length);
  }

  /** How many calls come before the mark `name`. */
  markAt(name: string): number {
    const at = this.#marks.get(name);
    if (at === undefined) throw new Error(`program: no mark ${name}`);
    return at;
  }
}
