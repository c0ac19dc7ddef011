/**
 * Seeded random numbers for parameter initialisation, data order and test data. mulberry32 is
 * tiny, fast and good enough for these; the point is reproducibility across runs and machines,
 * not statistical quality.
 */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The next 32-bit unsigned integer of the mulberry32 sequence. */
  nextUint32(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [low, high). */
  uniform(low = 0, high = 1): number {
    return low + (high - low) * (this.nextUint32() / 2 ** 32);
  }

  /** Normal via Box–Muller; only one of the pair is used, which keeps the state a single word. */
  normal(mean = 0, std = 1): number {
    const u1 = 1 - this.uniform(); // in (0, 1], so the logarithm is finite
    const u2 = this.uniform();
    return mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Uniform integer in [0, bound). */
  integer(bound: number): number {
    return Math.floor(this.uniform() * bound);
  }
}

/**
 * A Float64Array whose values are all exactly representable in f32, so the same numbers can be
 * uploaded to a GPU without rounding and any difference comes from the kernel, not the input.
 */
export function f32Array(length: number, sample: () => number): Float64Array {
  const values = new Float64Array(length);
  for (let index = 0; index < length; index++) values[index] = Math.fround(sample());
  return values;
}
