/**
 * Pausing and stopping a training run from outside, as the page's buttons do: the trainer asks
 * between two steps, never in the middle of one. Platform-free.
 */

export interface TrainingControl {
  /** Aborting ends the run between two steps: finished epochs stay saved, the partial one is dropped. */
  signal?: AbortSignal;
  /**
   * Awaited between steps; resolves at once unless the run is paused. It need not resolve on an
   * abort: an abort ends the wait by itself.
   */
  whenRunning?(): Promise<void>;
}

/**
 * Waits while `control` holds the run paused; throws the signal's reason once it is aborted
 * (before the wait, or during it).
 */
export async function untilRunning(control: TrainingControl | undefined): Promise<void> {
  const signal = control?.signal;
  signal?.throwIfAborted();
  if (!control?.whenRunning) return;
  if (!signal) return await control.whenRunning();
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      control.whenRunning(),
      new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    signal.removeEventListener("abort", onAbort!);
  }
  // Resumed and aborted at once: the abort wins.
  signal.throwIfAborted();
}

/** Whether `error` is the abort of `control`'s signal, rather than a failure. */
export function isAbort(control: TrainingControl | undefined, error: unknown): boolean {
  const signal = control?.signal;
  return signal !== undefined && signal.aborted && error === signal.reason;
}
