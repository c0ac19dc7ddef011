/**
 * The pause button's side of TrainingControl: `whenRunning()` resolves at once while the run is
 * running, and while it is paused only when it is resumed.
 */
export class PauseGate {
  #paused?: { promise: Promise<void>; resume: () => void };

  get paused(): boolean {
    return this.#paused !== undefined;
  }

  pause(): void {
    if (this.#paused) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#paused = { promise, resume: resolve };
  }

  resume(): void {
    this.#paused?.resume();
    this.#paused = undefined;
  }

  whenRunning(): Promise<void> {
    return this.#paused?.promise ?? Promise.resolve();
  }
}
