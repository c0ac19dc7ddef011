import assert from "node:assert/strict";
import {
  compilingKernels,
  formatBytes,
  formatDuration,
  formatRate,
  ProgressBar,
  type ProgressOutput,
  renderProgressLine,
  StatusLine,
} from "../../src/train/progress.ts";

Deno.test("renderProgressLine shows bar, count, percent, rate and ETA", () => {
  assert.equal(
    renderProgressLine({
      label: "epoch 3",
      done: 117,
      total: 390,
      itemsPerSecond: 412.4,
      etaSeconds: 84.8,
    }),
    "epoch 3 [######--------------] 117/390 30% 412 img/s ETA 1:25",
  );
  assert.equal(
    renderProgressLine(
      { label: "test", done: 10, total: 10, itemsPerSecond: 2500, etaSeconds: 0 },
      "it",
    ),
    "test [####################] 10/10 100% 2500 it/s ETA 0:00",
  );
});

Deno.test("renderProgressLine shows the steps submitted beyond those done, and the loss", () => {
  // 16 of 40 steps submitted, 8 known done: # for done, = for submitted beyond them.
  assert.equal(
    renderProgressLine({
      label: "epoch 1/4",
      done: 8,
      submitted: 16,
      total: 40,
      loss: 2.30124,
      itemsPerSecond: 30.24,
      etaSeconds: 17,
    }),
    "epoch 1/4 [####====------------] 16/40 40% (8 done) loss 2.3012 30.2 img/s ETA 0:17",
  );
});

Deno.test("renderProgressLine at the first step, before any readback: no loss, rate or ETA", () => {
  assert.equal(
    renderProgressLine({ label: "epoch 1/4", done: 0, submitted: 1, total: 390 }),
    "epoch 1/4 [--------------------] 1/390 0% (0 done) -- img/s ETA --:--",
  );
  assert.equal(
    renderProgressLine({ label: "epoch 1", done: 0, total: 390 }),
    "epoch 1 [--------------------] 0/390 0% -- img/s ETA --:--",
  );
});

Deno.test("renderProgressLine fits the width: the done count, loss, rate, ETA go first", () => {
  const state = {
    label: "epoch 10/30",
    done: 117,
    submitted: 125,
    total: 390,
    loss: 1.87341,
    itemsPerSecond: 412,
    etaSeconds: 3723,
  };
  const full = "epoch 10/30 [######--------------] 125/390 32% (117 done) loss 1.8734 412 img/s " +
    "ETA 1:02:03";
  assert.equal(renderProgressLine(state), full);
  assert.equal(renderProgressLine(state, "img", full.length), full);
  const head = "epoch 10/30 [######--------------] 125/390 32%";
  const lines = [
    `${head} loss 1.8734 412 img/s ETA 1:02:03`,
    `${head} 412 img/s ETA 1:02:03`,
    `${head} ETA 1:02:03`,
    head,
  ];
  for (const line of lines) {
    assert.equal(renderProgressLine(state, "img", line.length), line);
  }
  assert.equal(renderProgressLine(state, "img", 20), head.slice(0, 20));
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
function fakeTerminal(isTerminal: boolean, columns?: number) {
  const writes: string[] = [];
  const output: ProgressOutput = {
    isTerminal: () => isTerminal,
    writeSync: (bytes) => {
      writes.push(new TextDecoder().decode(bytes));
      return bytes.length;
    },
    columns: () => columns,
  };
  const clock = { seconds: 100 };
  return { writes, output, now: () => clock.seconds, clock };
}

Deno.test("ProgressBar draws from the first step, then the rate between readbacks", () => {
  const { writes, output, now, clock } = fakeTerminal(true);
  // 20 steps of 16 images. The first step takes 30 s (kernels compiling), then a second a step.
  const bar = new ProgressBar("epoch 1/2", 20, { output, now });
  bar.update({ submitted: 1, done: 0, items: 16 }); // drawn at once, before any readback
  clock.seconds = 130;
  bar.update({ submitted: 2, done: 0, items: 32 });
  bar.update({ submitted: 2, done: 1, items: 32, loss: 2.3 }); // within 0.1 s: not drawn
  clock.seconds = 131;
  bar.update({ submitted: 3, done: 1, items: 48, loss: 2.3 });
  clock.seconds = 132;
  bar.update({ submitted: 4, done: 1, items: 64, loss: 2.3 });
  bar.update({ submitted: 4, done: 2, items: 64, loss: 2.25 }); // not drawn, but measured
  clock.seconds = 140;
  // 8 steps in the 8 s since: 16 images/s from the second readback on, 8 steps left.
  bar.update({ submitted: 12, done: 2, items: 192, loss: 2.25 });
  clock.seconds = 150;
  bar.update({ submitted: 20, done: 20, items: 320, loss: 2.1 }); // the last: always drawn
  bar.clear();
  assert.deepEqual(writes, [
    "\repoch 1/2 [=-------------------] 1/20 5% (0 done) -- img/s ETA --:--\x1b[K",
    "\repoch 1/2 [==------------------] 2/20 10% (0 done) -- img/s ETA --:--\x1b[K",
    "\repoch 1/2 [#==-----------------] 3/20 15% (1 done) loss 2.3000 -- img/s ETA --:--\x1b[K",
    "\repoch 1/2 [#===----------------] 4/20 20% (1 done) loss 2.3000 -- img/s ETA --:--\x1b[K",
    "\repoch 1/2 [##==========--------] 12/20 60% (2 done) loss 2.2500 16.0 img/s ETA 0:08\x1b[K",
    // 288 images in the 20 s since the first readback; the first step's 30 s do not count.
    "\repoch 1/2 [####################] 20/20 100% loss 2.1000 14.4 img/s ETA 0:00\x1b[K",
    "\r\x1b[K",
  ]);
});

Deno.test("ProgressBar stays one character short of the terminal's width", () => {
  const draw = (columns: number) => {
    const { writes, output, now } = fakeTerminal(true, columns);
    new ProgressBar("epoch 1/4", 390, { output, now }).update({ submitted: 1, done: 0, items: 1 });
    return writes;
  };
  const line = "epoch 1/4 [--------------------] 1/390 0% ETA --:--";
  assert.deepEqual(draw(line.length + 1), [`\r${line}\x1b[K`]);
  assert.deepEqual(draw(line.length), ["\repoch 1/4 [--------------------] 1/390 0%\x1b[K"]);
});

Deno.test("ProgressBar writes nothing when the output is not a terminal", () => {
  const { writes, output, now, clock } = fakeTerminal(false);
  const bar = new ProgressBar("epoch 1", 2, { output, now });
  clock.seconds += 1;
  bar.update({ submitted: 1, done: 0, items: 10 });
  bar.update({ submitted: 2, done: 2, items: 20 });
  bar.clear();
  assert.deepEqual(writes, []);
});

Deno.test("ProgressBar.clear before any draw writes nothing", () => {
  const { writes, output, now } = fakeTerminal(true);
  new ProgressBar("epoch 1", 2, { output, now }).clear();
  assert.deepEqual(writes, []);
});

Deno.test("StatusLine cuts a line to fit the terminal, and erases it", () => {
  const { writes, output } = fakeTerminal(true, 12);
  const line = new StatusLine(output);
  line.show("compiling kernels…");
  line.clear();
  line.clear(); // nothing left to erase
  assert.deepEqual(writes, ["\rcompiling k\x1b[K", "\r\x1b[K"]);
});

Deno.test("compilingKernels says what the wait is, then how long it took", async () => {
  const { writes, output, now, clock } = fakeTerminal(true);
  const { value, seconds } = await compilingKernels("the evaluation plan", () => {
    // What is drawn while the plans build.
    assert.deepEqual(writes, ["\rcompiling kernels for the evaluation plan…\x1b[K"]);
    clock.seconds += 5.1;
    return Promise.resolve("plans");
  }, { output, now });
  assert.equal(value, "plans");
  assert.ok(Math.abs(seconds - 5.1) < 1e-9, String(seconds));
  assert.deepEqual(writes.slice(1), ["\r\x1b[K"]);
});

Deno.test("compilingKernels erases its line when the build fails, and off a terminal is silent", async () => {
  const terminal = fakeTerminal(true);
  await assert.rejects(
    compilingKernels("the training plan", () => Promise.reject(new Error("out of memory")), {
      output: terminal.output,
    }),
    /out of memory/,
  );
  assert.equal(terminal.writes.at(-1), "\r\x1b[K");
  const pipe = fakeTerminal(false);
  const { seconds } = await compilingKernels("the training plan", () => {
    pipe.clock.seconds += 2;
    return Promise.resolve(0);
  }, { output: pipe.output, now: pipe.now });
  assert.equal(seconds, 2);
  assert.deepEqual(pipe.writes, []);
});
