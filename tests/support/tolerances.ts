/**
 * Every tolerance the tests use, in one place, with the reason for each. All are bounds on
 * relativeMaxError (tests/support/reference/compare.ts): max |actual − expected| / max |expected|.
 */

/**
 * GPU f32 against the f64 reference for ops that round once per element (ReLU, add, pooling's
 * scaling): f32 has a unit roundoff of 6e-8; a few roundings stay well below 1e-6.
 */
export const ELEMENTWISE = 1e-6;

/**
 * GPU f32 against the f64 reference for ops that sum K products (linear, conv, pooling, batch
 * statistics): the rounding error of a sum grows like sqrt(K)·6e-8 on random data and at worst
 * K·6e-8; with K up to a few thousand (3x3x512 = 4608) 1e-4 holds with margin and still fails
 * on any indexing or missing-term bug (those give errors of order 1e-2 or more).
 */
export const REDUCTION = 1e-4;

/**
 * GPU f32 against f64 through a chain of ops (a whole network's loss and gradients): errors
 * compound through normalisations that divide by small standard deviations.
 */
export const NETWORK = 2e-3;

/**
 * The f64 reference backward against central finite differences of its own forward in f64,
 * step 1e-6: truncation O(h²) ≈ 1e-12 and rounding O(ε·|L|/h) ≈ 1e-10·|L|, so 1e-6 separates
 * a correct derivative from a wrong one by many orders of magnitude.
 */
export const FINITE_DIFFERENCE = 1e-6;

/**
 * f16 activations against the f64 reference: the op reads f16 inputs (the reference gets the same
 * rounded values), computes in f32, and rounds its output to f16 once, whose unit roundoff is
 * 4.9e-4 (11-bit significand). Relative to the largest output, one rounding stays below 4.9e-4;
 * 1e-3 allows it with margin, and an indexing or missing-term bug still gives 1e-2 or more.
 */
export const F16_STORAGE = 1e-3;

/**
 * f16 activations through a few ops in a chain (batch norm's backward reads f16 x, y and dy, each
 * rounded once, and sums products of them): a few f16 roundings compound, 5e-3.
 */
export const F16_CHAIN = 5e-3;

/**
 * GPU f32 optimizer steps against the f64 reference, measured on the displacement p_T − p_0 and on
 * the state: the GPU rounds p to f32 after every step (≤ 3e-8 for |p| < 1, so ≤ 1.5e-7 over 5
 * steps against displacements of order 0.1), and each update and state value rounds a few times
 * at 6e-8; Adam's division by sqrt(v) keeps those relative. With loss scaling, Adam's bias
 * corrections come from the GPU (1 − β^t in f32 by a series, a few ulp) rather than the host's
 * f64. 1e-5 leaves a wide margin and still fails a wrong bias correction, eps, decay, momentum or
 * unscaling, whose errors are 1e-3 or more.
 */
export const OPTIMIZER_STEPS = 1e-5;

/**
 * f16 activations through a whole network's forward against f64 on the same f16-rounded input:
 * each of ~17 layers rounds its output to f16 once (4.9e-4), and batch normalisation rescales the
 * errors rather than letting them grow. Measured 4.5e-4 on the logits and 1.1e-3 on the
 * classifier's weight gradient (pooled features times dlogits, both f32); 5e-3 leaves a 4x margin,
 * and an op computing the wrong thing in f16 gives errors of order 1e-1.
 */
export const F16_NETWORK = 5e-3;
