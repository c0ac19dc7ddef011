/**
 * The command-line flags, parsed in process: values, defaults, presets, the one-line errors and
 * the generated --help.
 */
import assert from "node:assert/strict";
import {
  type Command,
  evalCommand,
  flagName,
  type FlagTable,
  helpText,
  parseCommandLine,
  predictCommand,
  trainCommand,
  trainRecipeSchema,
} from "../../src/cli/flags.ts";
import { UsageError } from "../../src/errors.ts";
import { buildArchitecture } from "../../src/model/architecture.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { parameterSpecs } from "../../src/model/parameters.ts";
import { newRunSettings } from "../../src/cli/train.ts";
import { evalViews, trainingPlan } from "../../src/train/settings.ts";

function parse<F extends FlagTable>(command: Command<F>, args: string[]) {
  const line = parseCommandLine(command, args);
  assert.ok(!line.help, "not a help request");
  return line;
}

function assertUsageError(fn: () => unknown, message: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof UsageError, `a UsageError, got ${error}`);
    assert.equal(error.message, message);
    return true;
  });
}

Deno.test("the defaults are the notes' CPU recipe (cpu-adapter.md, 'What real training should reach')", () => {
  const { values, given } = parse(trainCommand, []);
  assert.equal(given.size, 0);
  assert.deepEqual(
    {
      model: values.model,
      width: values.width,
      batchSize: values.batchSize,
      optimizer: values.optimizer,
      momentum: values.momentum,
      nesterov: values.nesterov,
      weightDecay: values.weightDecay,
      schedule: values.schedule,
      lr: values.lr,
      warmup: values.warmup,
      epochs: values.epochs,
      augment: values.augment,
      limit: values.limit,
      precision: values.precision,
      data: values.data,
    },
    {
      model: "resnet18",
      width: 0.25,
      batchSize: 128,
      optimizer: "sgd",
      momentum: 0.9,
      nesterov: true,
      weightDecay: 5e-4,
      schedule: "one-cycle",
      lr: 0.1,
      warmup: 0.2,
      epochs: 4,
      augment: true,
      limit: undefined,
      precision: "f32",
      data: "./data",
    },
  );
  assert.match(values.runDir, /^runs\/\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d$/);
});

Deno.test("flags are parsed into typed values; switches turn on and off", () => {
  const { values, given } = parse(trainCommand, [
    "--model=resnet50",
    "--width",
    "0.5",
    "--epochs",
    "7",
    "--lr",
    "3e-4",
    "--optimizer",
    "adamw",
    "--betas",
    "0.8,0.99",
    "--no-augment",
    "--limit",
    "64",
    "--run-dir",
    "runs/x",
  ]);
  assert.equal(values.model, "resnet50");
  assert.equal(values.width, 0.5);
  assert.equal(values.epochs, 7);
  assert.equal(values.lr, 3e-4);
  assert.equal(values.optimizer, "adamw");
  assert.deepEqual(values.betas, [0.8, 0.99]);
  assert.equal(values.augment, false);
  assert.equal(values.limit, 64);
  assert.equal(values.runDir, "runs/x");
  assert.deepEqual(
    [...given].sort(),
    ["augment", "betas", "epochs", "limit", "lr", "model", "optimizer", "runDir", "width"],
  );
  assert.equal(parse(trainCommand, ["--no-augment", "--augment"]).values.augment, true);
});

Deno.test("--preset book sets the book's settings, and explicit flags override them", () => {
  const book = parse(trainCommand, ["--preset", "book"]);
  assert.equal(book.preset, "book");
  assert.deepEqual(
    {
      model: book.values.model,
      width: book.values.width,
      batchSize: book.values.batchSize,
      optimizer: book.values.optimizer,
      lr: book.values.lr,
      epochs: book.values.epochs,
      augment: book.values.augment,
      schedule: book.values.schedule,
    },
    {
      model: "resnet18",
      width: 1,
      batchSize: 128,
      optimizer: "adam",
      lr: 2e-5,
      epochs: 63,
      augment: false,
      schedule: "constant",
    },
  );
  // Order does not matter: a flag given before the preset still wins.
  const overridden = parse(trainCommand, ["--epochs", "2", "--preset", "book", "--augment"]);
  assert.equal(overridden.values.epochs, 2);
  assert.equal(overridden.values.augment, true);
  assert.equal(overridden.values.lr, 2e-5);
  assert.deepEqual([...overridden.given].sort(), ["augment", "epochs"]);
});

Deno.test("bad values are refused with one line naming the flag, what it takes and the value", () => {
  const cases: [string[], string][] = [
    [["--epochs", "x"], '--epochs must be a positive integer, got "x"'],
    [["--epochs", "0"], '--epochs must be a positive integer, got "0"'],
    [["--epochs", "2.5"], '--epochs must be a positive integer, got "2.5"'],
    [["--batch-size", ""], '--batch-size must be a positive integer, got ""'],
    [["--lr", "-1"], '--lr must be a number > 0, got "-1"'],
    [["--lr", "fast"], '--lr must be a number > 0, got "fast"'],
    [["--lr", "Infinity"], '--lr must be a number > 0, got "Infinity"'],
    [["--width", "0"], `${WIDTH_RANGE}, got "0"`],
    [["--width", "17"], `${WIDTH_RANGE}, got "17"`],
    [["--warmup", "1"], '--warmup must be a fraction in [0, 1), got "1"'],
    [["--momentum", "-0.1"], '--momentum must be a number >= 0, got "-0.1"'],
    [["--seed", "-1"], '--seed must be an integer in 0..4294967295, got "-1"'],
    [["--seed", "4294967296"], '--seed must be an integer in 0..4294967295, got "4294967296"'],
    [["--betas", "0.9"], '--betas must be two numbers in [0, 1) written B1,B2, got "0.9"'],
    [["--betas", "0.9,1"], '--betas must be two numbers in [0, 1) written B1,B2, got "0.9,1"'],
    [
      ["--model", "resnet19"],
      "--model must be one of resnet18, resnet34, resnet50, resnet101, resnet152, resnet9, " +
      'got "resnet19"',
    ],
    [
      ["--schedule", "step"],
      '--schedule must be one of constant, cosine, one-cycle, piecewise, got "step"',
    ],
    [["--preset", "paper"], '--preset must be one of book, fast94, got "paper"'],
    [["--precision", "f8"], '--precision must be one of f32, f16, got "f8"'],
    [["--precision", "bf16"], '--precision must be one of f32, f16, got "bf16"'],
    [["--lr"], "--lr needs a value (see --help)"],
    [["--lr", "--epochs", "3"], "--lr needs a value (see --help)"],
    [["--augment=yes"], "--augment takes no value: give --augment or --no-augment"],
  ];
  for (const [args, message] of cases) {
    assertUsageError(() => parseCommandLine(trainCommand, args), message);
  }
});

const WIDTH_RANGE = "--width must be a number from 0.0546875 to 16 (a smaller width leaves the " +
  "narrowest stage fewer than 4 channels)";

Deno.test("a width that leaves a stage fewer than 4 channels is refused, naming the smallest", () => {
  for (const command of [trainCommand, evalCommand, predictCommand] as Command<FlagTable>[]) {
    for (const width of ["1e-9", "0.05", "0.0546874"]) {
      assertUsageError(
        () => parseCommandLine(command, ["--width", width]),
        `${WIDTH_RANGE}, got "${width}"`,
      );
    }
  }
  // The smallest width named is valid: 64 x 0.0546875 = 3.5 rounds to a first stage of 4.
  const smallest = parse(trainCommand, ["--width", "0.0546875"]).values.width;
  assert.equal(smallest, 0.0546875);
  const stages = buildArchitecture(resnetConfig("resnet18", smallest));
  assert.equal(Math.min(...parameterSpecs(stages).map((spec) => spec.shape[0])), 4);
  // A checkpoint's recipe, checked by the flags' schemas when a run resumes, is held to it too.
  const recipe = parse(trainCommand, []).values;
  assert.ok(trainRecipeSchema.safeParse({ ...recipe, width: 0.0625 }).success);
  assert.ok(!trainRecipeSchema.safeParse({ ...recipe, width: 0.05 }).success);
});

Deno.test("unknown flags and stray arguments are refused, naming them", () => {
  assertUsageError(
    () => parseCommandLine(trainCommand, ["--epoch", "3"]),
    "unknown flag --epoch: did you mean --epochs?",
  );
  assertUsageError(
    () => parseCommandLine(trainCommand, ["--learning-rate", "3"]),
    "unknown flag --learning-rate: see --help",
  );
  assertUsageError(
    () => parseCommandLine(trainCommand, ["--no-lr"]),
    "unknown flag --no-lr: see --help",
  );
  assertUsageError(
    () => parseCommandLine(evalCommand, ["--checkpoint", "a.safetensors", "extra"]),
    'unexpected argument "extra": eval takes flags only (see --help)',
  );
  assertUsageError(
    () => parseCommandLine(evalCommand, ["--preset", "book"]),
    "unknown flag --preset: see --help",
  );
  assert.deepEqual(
    parse(predictCommand, ["--checkpoint", "m.safetensors", "a.png", "b.png"]).positionals,
    ["a.png", "b.png"],
  );
});

Deno.test("flags that the chosen optimizer or schedule ignores are refused", () => {
  const settings = (args: string[]) => newRunSettings(parse(trainCommand, args));
  assertUsageError(
    () => settings(["--optimizer", "adam", "--momentum", "0.8"]),
    "--momentum has no effect here: it is for --optimizer sgd",
  );
  assertUsageError(
    () => settings(["--preset", "book", "--no-nesterov"]),
    "--nesterov has no effect here: it is for --optimizer sgd",
  );
  assertUsageError(
    () => settings(["--betas", "0.8,0.9"]),
    "--betas has no effect here: it is for --optimizer adam and adamw",
  );
  assertUsageError(
    () => settings(["--schedule", "constant", "--warmup", "0.1"]),
    "--warmup has no effect here: it is for --schedule one-cycle and cosine",
  );
  assertUsageError(
    () => settings(["--momentum", "0"]),
    "--nesterov needs --momentum above 0: give --no-nesterov for plain SGD",
  );
  assert.equal(settings(["--momentum", "0", "--no-nesterov"]).recipe.momentum, 0);
  assertUsageError(
    () => settings(["--schedule", "piecewise", "--warmup", "0.1"]),
    "--warmup has no effect here: it is for --schedule one-cycle and cosine",
  );
  for (const schedule of [[], ["--schedule", "cosine"], ["--schedule", "constant"]]) {
    assertUsageError(
      () => settings([...schedule, "--lr-points", "0:0,0.2:1,1:0"]),
      "--lr-points has no effect here: it is for --schedule piecewise",
    );
  }
  for (const optimizer of ["adam", "adamw"]) {
    assertUsageError(
      () => settings(["--optimizer", optimizer, "--weight-decay-mode", "decoupled"]),
      "--weight-decay-mode has no effect here: it is for --optimizer sgd (adam's is coupled, " +
        "adamw's decoupled)",
    );
  }
  assertUsageError(
    () => settings(["--no-augment", "--cutout", "8"]),
    "--cutout has no effect here: it is for --augment",
  );
  assertUsageError(
    () => settings(["--no-augment", "--crop-padding", "reflect"]),
    "--crop-padding has no effect here: it is for --augment",
  );
  // The same settings where they are used; a preset's own values are never refused.
  const used = settings([
    "--schedule",
    "piecewise",
    "--lr-points",
    "0:0,0.5:1,1:0",
    "--weight-decay-mode",
    "decoupled",
    "--cutout",
    "4",
  ]).recipe;
  assert.deepEqual(
    [used.lrPoints, used.weightDecayMode, used.cutout],
    ["0:0,0.5:1,1:0", "decoupled", 4],
  );
  assert.equal(settings(["--preset", "fast94", "--optimizer", "adam"]).recipe.optimizer, "adam");
  assert.equal(settings(["--preset", "fast94", "--no-augment"]).recipe.augment, false);
});

Deno.test("ResNet-9's training settings: typed values, defaults, and bad values refused", () => {
  const { values } = parse(trainCommand, [
    "--model",
    "resnet9",
    "--label-smoothing",
    "0.2",
    "--tta",
    "flip",
    "--ema",
    "0.999",
    "--cutout",
    "32",
    "--crop-padding",
    "reflect",
    "--schedule",
    "piecewise",
    "--lr-points",
    "0:0,0.3:1,1:0",
    "--weight-decay-mode",
    "decoupled",
  ]);
  assert.deepEqual(
    [
      values.model,
      values.labelSmoothing,
      values.tta,
      values.ema,
      values.cutout,
      values.cropPadding,
      values.schedule,
      values.lrPoints,
      values.weightDecayMode,
    ],
    ["resnet9", 0.2, "flip", 0.999, 32, "reflect", "piecewise", "0:0,0.3:1,1:0", "decoupled"],
  );
  // Off by default: today's recipe is unchanged.
  const defaults = parse(trainCommand, []).values;
  assert.deepEqual(
    [
      defaults.labelSmoothing,
      defaults.tta,
      defaults.ema,
      defaults.cutout,
      defaults.cropPadding,
      defaults.lrPoints,
      defaults.weightDecayMode,
    ],
    [0, "none", undefined, 0, "zero", "0:0,0.2:1,1:0", "coupled"],
  );
  assert.equal(parse(trainCommand, ["--cutout", "0"]).values.cutout, 0);
  assert.equal(parse(trainCommand, ["--ema", "1e-9"]).values.ema, 1e-9);

  const POINTS = "--lr-points must be fraction:factor pairs from 0 to 1, e.g. 0:0,0.2:1,1:0";
  const cases: [string[], string][] = [
    [["--label-smoothing", "1"], '--label-smoothing must be a fraction in [0, 1), got "1"'],
    [["--label-smoothing", "-0.1"], '--label-smoothing must be a fraction in [0, 1), got "-0.1"'],
    [["--cutout", "33"], '--cutout must be an integer from 0 (off) to 32, got "33"'],
    [["--cutout", "2.5"], '--cutout must be an integer from 0 (off) to 32, got "2.5"'],
    [["--cutout", "-1"], '--cutout must be an integer from 0 (off) to 32, got "-1"'],
    [["--tta", "mirror"], '--tta must be one of none, flip, got "mirror"'],
    [["--ema", "1"], '--ema must be a number in (0, 1), got "1"'],
    [["--ema", "0"], '--ema must be a number in (0, 1), got "0"'],
    [["--ema", "x"], '--ema must be a number in (0, 1), got "x"'],
    [["--crop-padding", "edge"], '--crop-padding must be one of zero, reflect, got "edge"'],
    [
      ["--weight-decay-mode", "l2"],
      '--weight-decay-mode must be one of coupled, decoupled, got "l2"',
    ],
    [["--lr-points", "0:0,1"], `${POINTS}, got "0:0,1" (point "1" is not F:M)`],
    [
      ["--lr-points", "0.1:1,1:0"],
      `${POINTS}, got "0.1:1,1:0" (the first point's fraction must be 0, got 0.1)`,
    ],
    [
      ["--lr-points", "0:0,0.5:1"],
      `${POINTS}, got "0:0,0.5:1" (the last point's fraction must be 1, got 0.5)`,
    ],
    [
      ["--lr-points", "0:0,0.5:-1,1:0"],
      `${POINTS}, got "0:0,0.5:-1,1:0" (the factor of points[1] must be a finite number >= 0, ` +
      "got -1)",
    ],
    [["--lr-points", ""], `${POINTS}, got "" (no points given)`],
  ];
  for (const [args, message] of cases) {
    assertUsageError(() => parseCommandLine(trainCommand, args), message);
  }
  // eval takes --tta too, to reproduce a run's flip-averaged test numbers; off by default.
  assert.equal(parse(evalCommand, []).values.tta, "none");
  assert.equal(parse(evalCommand, ["--tta", "flip"]).values.tta, "flip");
  assertUsageError(
    () => parseCommandLine(evalCommand, ["--tta", "mirror"]),
    '--tta must be one of none, flip, got "mirror"',
  );
});

Deno.test("--preset fast94 sets the ResNet-9 speed-record recipe, and explicit flags override it", () => {
  const line = parse(trainCommand, ["--preset", "fast94"]);
  assert.equal(line.preset, "fast94");
  assert.equal(line.given.size, 0);
  const settings = newRunSettings(line);
  assert.deepEqual(settings.recipe, {
    model: "resnet9",
    width: 1,
    epochs: 18,
    batchSize: 512,
    optimizer: "sgd",
    lr: 0.4,
    momentum: 0.9,
    nesterov: true,
    weightDecay: 5e-4,
    weightDecayMode: "coupled",
    betas: [0.9, 0.999],
    schedule: "piecewise",
    lrPoints: "0:0,0.2:1,1:0",
    warmup: 0.2,
    seed: 0,
    augment: true,
    cropPadding: "reflect",
    cutout: 8,
    labelSmoothing: 0.2,
    tta: "flip",
    ema: undefined,
    limit: undefined,
    precision: "f32",
  });
  // Not a recipe setting (it leaves the numbers alone), but the preset's too.
  assert.equal(settings.evalBatchSize, 500);
  assert.equal(evalViews(settings.recipe), 2);

  // What the trainer gets: 97 full batches of 512 a epoch over CIFAR-10's 50000 images.
  const plan = trainingPlan(settings.recipe, 50000);
  assert.deepEqual(
    {
      batchSize: plan.batchSize,
      augment: plan.augment,
      padding: plan.padding,
      cutout: plan.cutout,
      labelSmoothing: plan.labelSmoothing,
      ema: plan.ema,
      optimizer: plan.optimizer,
    },
    {
      batchSize: 512,
      augment: true,
      padding: "reflect",
      cutout: 8,
      labelSmoothing: 0.2,
      ema: undefined,
      optimizer: {
        kind: "sgd",
        lr: 0.4,
        weightDecay: 5e-4,
        weightDecayMode: "coupled",
        momentum: 0.9,
        nesterov: true,
      },
    },
  );
  // 0:0, 0.2:1, 1:0 over 18 x 97 = 1746 steps: 0 at the start, 0.4 at step 349.2, half-way down
  // at step 1047.6, a last step just above 0.
  const total = 18 * 97;
  const close = (actual: number, expected: number) =>
    assert.ok(Math.abs(actual - expected) <= 1e-12, `${actual} against ${expected}`);
  close(plan.schedule(0), 0);
  close(plan.schedule(349), 0.4 * 349 / (0.2 * total));
  close(plan.schedule(873), 0.4 * (1 - 873 / total) / 0.8);
  close(plan.schedule(total - 1), 0.4 * (1 / total) / 0.8);

  const overridden = newRunSettings(
    parse(trainCommand, [
      "--epochs",
      "2",
      "--preset",
      "fast94",
      "--tta",
      "none",
      "--ema",
      "0.99",
      "--eval-batch-size",
      "100",
    ]),
  );
  assert.deepEqual(
    [overridden.recipe.epochs, overridden.recipe.tta, overridden.recipe.ema],
    [2, "none", 0.99],
  );
  assert.equal(overridden.recipe.cutout, 8);
  assert.equal(overridden.evalBatchSize, 100);
  assert.equal(evalViews(overridden.recipe), 1);
  assert.deepEqual(parseCommandLine(trainCommand, ["--preset", "fast94", "--help"]), {
    help: true,
  });
});

Deno.test("a recipe stored before ResNet-9's settings existed resumes with them off", () => {
  const fast94 = newRunSettings(parse(trainCommand, ["--preset", "fast94", "--ema", "0.9"]));
  const stored = JSON.parse(JSON.stringify(fast94.recipe));
  assert.deepEqual(trainRecipeSchema.parse(stored), stored);
  const {
    weightDecayMode: _,
    lrPoints: __,
    cropPadding: ___,
    cutout: ____,
    labelSmoothing: _____,
    tta: ______,
    ema: _______,
    ...before
  } = newRunSettings(parse(trainCommand, [])).recipe;
  const parsed = trainRecipeSchema.parse(JSON.parse(JSON.stringify(before)));
  assert.deepEqual(
    [
      parsed.weightDecayMode,
      parsed.lrPoints,
      parsed.cropPadding,
      parsed.cutout,
      parsed.labelSmoothing,
      parsed.tta,
      parsed.ema,
    ],
    ["coupled", "0:0,0.2:1,1:0", "zero", 0, 0, "none", undefined],
  );
  // Stored values go through the flags' checks.
  for (
    const bad of [
      { cutout: 33 },
      { tta: "mirror" },
      { ema: 1 },
      { labelSmoothing: 1 },
      { lrPoints: "0.1:1,1:0" },
      { model: "resnet10" },
    ]
  ) {
    assert.ok(!trainRecipeSchema.safeParse({ ...stored, ...bad }).success, JSON.stringify(bad));
  }
});

Deno.test("a recipe survives the trip through a checkpoint's JSON metadata", () => {
  for (const args of [[], ["--limit", "64", "--optimizer", "adam", "--betas", "0.8,0.9"]]) {
    const stored = JSON.parse(JSON.stringify(newRunSettings(parse(trainCommand, args)).recipe));
    assert.deepEqual(trainRecipeSchema.parse(stored), stored);
  }
  assert.throws(() => trainRecipeSchema.parse({ ...parse(trainCommand, []).values, lr: "0.1x" }));
  // A recipe stored before --precision existed trained in f32, and resumes so.
  const { precision: _, ...before } = newRunSettings(parse(trainCommand, [])).recipe;
  assert.equal(trainRecipeSchema.parse(before).precision, "f32");
  assert.throws(() => trainRecipeSchema.parse({ ...before, precision: "f8" }));
});

Deno.test("--precision: f32 or f16 for train, eval and predict, f32 by default", () => {
  const precisionOf = (command: Command<FlagTable>, args: string[]) =>
    parse(command, args).values.precision;
  for (const command of [trainCommand, evalCommand, predictCommand] as Command<FlagTable>[]) {
    assert.equal(precisionOf(command, []), "f32", command.name);
    assert.equal(precisionOf(command, ["--precision", "f16"]), "f16", command.name);
    assertUsageError(
      () => parseCommandLine(command, ["--precision", "half"]),
      '--precision must be one of f32, f16, got "half"',
    );
  }
});

Deno.test("--help lists every flag with a line of explanation and its default", () => {
  for (const command of [trainCommand, evalCommand, predictCommand] as Command<FlagTable>[]) {
    const help = parseCommandLine(command, ["--epochs", "x", "--help"]);
    assert.deepEqual(help, { help: true }, "--help wins over everything else");
    assert.deepEqual(parseCommandLine(command, ["-h"]), { help: true });
    const text = helpText(command);
    assert.match(text, new RegExp(`^usage: deno task ${command.name} \\[flags\\]`));
    const lines = text.split("\n");
    for (const key of Object.keys(command.flags)) {
      const line = lines.find((line) =>
        line.trimStart().startsWith(flagName(key) + " ") ||
        line.trimStart().startsWith(flagName(key) + ",")
      );
      assert.ok(line, `${flagName(key)} is listed`);
      assert.match(
        line,
        /\S+ {2,}\w.*\(default: [^)]+\)$/,
        `${flagName(key)} has help and a default`,
      );
    }
  }
  const train = helpText(trainCommand);
  assert.match(train, /--augment, --no-augment .*\(default: on\)/);
  assert.match(train, /--width X .*\(default: 0\.25\)/);
  assert.match(
    train,
    /--model NAME .*\(resnet18, resnet34, resnet50, resnet101, resnet152, resnet9\)/,
  );
  assert.match(train, /--run-dir PATH .*\(default: runs\/<UTC date and time>\)/);
  assert.match(train, /--preset NAME/);
  assert.match(train, /book +--model resnet18 --width 1 .*--optimizer adam --lr 0\.00002/);
  assert.match(train, /--preset NAME +.*\(book, fast94\)/);
  assert.match(
    train,
    new RegExp(
      "^ {2}fast94 +--model resnet9 --width 1 --epochs 18 --batch-size 512 --eval-batch-size 500 " +
        "--optimizer sgd --lr 0\\.4 --momentum 0\\.9 --nesterov --weight-decay 0\\.0005 " +
        "--weight-decay-mode coupled --schedule piecewise --lr-points 0:0,0\\.2:1,1:0 --augment " +
        "--crop-padding reflect --cutout 8 --label-smoothing 0\\.2 --tta flip$",
      "m",
    ),
  );
  assert.match(train, /--tta NAME .*\(none, flip\) \(default: none\)/);
  assert.match(train, /--ema X .*\(default: off\)/);
  assert.match(train, /--lr-points F:M,\.\.\. .*\(default: 0:0,0\.2:1,1:0\)/);
  assert.match(helpText(predictCommand), /^usage: deno task predict \[flags\] IMAGE\.png\.\.\./);
});
