import assert from "node:assert/strict";
import {
  formatBytes,
  formatDuration,
  formatRate,
  ProgressBar,
  type ProgressOutput,
  renderProgressLine,
} from "../../src/train/progress.ts";

Deno.test("renderProgressLine shows bar, count, percent, rate and ETA", () => {
  // 117 of 390 steps in 36.35 s: 0.3107 s a step, 273 steps left = 84.8 s.
  assert.equal(
    renderProgressLine({
      label: "epoch 3",
      done: 117,
      total: 390,
      items: 14976,
      elapsedSeconds: 36.35,
    }),
    "epoch 3 [######--------------] 117/390 30% 412 img/s ETA 1:25",
  );
  assert.equal(
    renderProgressLine(
      { label: "test", done: 10, total: 10, items: 10000, elapsedSeconds: 4 },
      "it",
    ),
    "test [####################] 10/10 100% 2500 it/s ETA 0:00",
  );
});

Deno.test("renderProgressLine before the first step has no rate or ETA yet", () => {
  assert.equal(
    renderProgressLine({ label: "epoch 1", done: 0, total: 390, items: 0, elapsedSeconds: 0 }),
    "epoch 1 [--------------------] 0/390 0% -- img/s ETA --:--",
  );
});

Deno.test("formatDuration gives m:ss under an hour and h:mm:ss above", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(42), "0:42");
  assert.equal(formatDuration(59.6), "1:00");
  assert.equal(formatDuration(725), "12:05");
  assert.equal(formatDuration(3723), "1:02:03");
  assert.equal(formatDuration(100 * 3600), "100:00:00");
  for (const unknown of [NaN, Infinity, -1]) assert.equal(formatDuration(unknown), "--:--");
});

Deno.test("formatBytes uses binary units with one decimal", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1024), "1.0 KiB");
  assert.equal(formatBytes(1.5 * 1024 * 1024), "1.5 MiB");
  assert.equal(formatBytes(1024 * 1024 - 1), "1.0 MiB");
  assert.equal(formatBytes(3 * 1024 ** 3), "3.0 GiB");
  assert.equal(formatBytes(2048 * 1024 ** 4), "2048.0 TiB");
});

Deno.test("formatRate keeps a decimal only for small rates", () => {
  assert.equal(formatRate(412.4, "img"), "412 img/s");
  assert.equal(formatRate(12.46, "img"), "12.5 img/s");
  assert.equal(formatRate(0, "batch"), "0.0 batch/s");
  assert.equal(formatRate(NaN, "img"), "-- img/s");
  assert.equal(formatRate(Infinity, "img"), "-- img/s");
});

/** A fake stderr that records what is written, and a clock the test moves. */
function fakeTerminal(isTerminal: boolean) {
  const writes: string[] = [];
  const output: ProgressOutput = {
    isTerminal: () => isTerminal,
    writeSync: (bytes) => {
      writes.push(new TextDecoder().decode(bytes));
      return bytes.length;
    },
  };
  const clock = { seconds: 100 };
  return { writes, output, now: () => clock.seconds, clock };
}

Deno.test("ProgressBar redraws in place on a terminal, throttled, and clears itself", () => {
  const { writes, output, now, clock } = fakeTerminal(true);
  const bar = new ProgressBar("epoch 1", 4, { output, now });
  clock.seconds += 1;
  bar.update(1, 128);
  clock.seconds += 0.05;
  bar.update(2, 256); // within 0.1 s of the last draw: skipped
  clock.seconds += 0.95;
  bar.update(3, 384);
  clock.seconds += 0.01;
  bar.update(4, 512); // the last step is always drawn: 512 images in 2.01 s
  bar.clear();
  assert.deepEqual(writes, [
    "\repoch 1 [#####---------------] 1/4 25% 128 img/s ETA 0:03\x1b[K",
    "\repoch 1 [###############-----] 3/4 75% 192 img/s ETA 0:01\x1b[K",
    "\repoch 1 [####################] 4/4 100% 255 img/s ETA 0:00\x1b[K",
    "\r\x1b[K",
  ]);
});

Deno.test("ProgressBar writes nothing when the output is not a terminal", () => {
  const { writes, output, now, clock } = fakeTerminal(false);
  const bar = new ProgressBar("epoch 1", 2, { output, now });
  clock.seconds += 1;
  bar.update(1, 10);
  bar.update(2, 20);
  bar.clear();
  assert.deepEqual(writes, []);
});

Deno.test("ProgressBar.clear before any draw writes nothing", () => {
  const { writes, output, now } = fakeTerminal(true);
  new ProgressBar("epoch 1", 2, { output, now }).clear();
  assert.deepEqual(writes, []);
});
