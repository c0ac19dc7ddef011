/**
 * The page's run store: the latest and the best epoch's checkpoints and the history, as the epoch
 * loop hands them over; a restart (a resumed run) takes the resumed history and lets go of the
 * checkpoints of the run before.
 */
import assert from "node:assert/strict";
import { MemoryRunStore } from "../../src/train/run_store.ts";
import { makeHistory } from "../support/history.ts";

Deno.test("MemoryRunStore keeps the latest checkpoint, and the best one when told", async () => {
  const store = new MemoryRunStore("this page");
  assert.equal(store.path, "this page");
  assert.match(store.lastCheckpointPath, /this page/);
  assert.equal(store.last, undefined);
  assert.equal(store.best, undefined);

  const history = makeHistory([0.3, 0.5, 0.4]);
  const checkpoints = [1, 2, 3].map((epoch) => Uint8Array.of(epoch));
  const best = [true, true, false];
  for (let i = 0; i < 3; i++) {
    await store.saveEpoch(checkpoints[i], history.slice(0, i + 1), best[i]);
    assert.equal(store.last, checkpoints[i], `after epoch ${i + 1}`);
    assert.deepEqual(store.history, history.slice(0, i + 1));
  }
  assert.equal(store.best, checkpoints[1]);
});

Deno.test("MemoryRunStore's history is its own copy of what the loop passed", async () => {
  const store = new MemoryRunStore();
  assert.equal(store.path, "memory");
  const history = makeHistory([0.3]);
  await store.saveEpoch(Uint8Array.of(1), history, true);
  history.push(...makeHistory([0.3, 0.4]).slice(1));
  assert.equal(store.history.length, 1);
});

Deno.test("MemoryRunStore.restart takes the resumed history and drops the older checkpoints", async () => {
  const store = new MemoryRunStore();
  await store.saveEpoch(Uint8Array.of(9), makeHistory([0.9]), true);
  const resumed = makeHistory([0.2, 0.3]);
  await store.restart(resumed);
  assert.deepEqual(store.history, resumed);
  assert.notEqual(store.history, resumed);
  assert.equal(store.last, undefined);
  assert.equal(store.best, undefined);
  await store.saveEpoch(Uint8Array.of(3), makeHistory([0.2, 0.3, 0.1]), false);
  assert.deepEqual(store.last, Uint8Array.of(3));
  assert.equal(store.best, undefined);
});
