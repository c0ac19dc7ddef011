/**
 * A training run's settings, each defined once: its check (a zod schema), its default, its line of
 * help and its choices. The train command's flags (src/cli/flags.ts) and the browser page's form
 * are made from these tables, so both start from the same defaults and accept the same values
 * with the same words. Also what the settings make: the Trainer's options and the images a run
 * uses. Platform-free.
 */
import * as z from "zod/mini";
import { type CifarSplit, IMAGE_BYTES } from "../data/cifar.ts";
import { UsageError } from "../errors.ts";
import {
  MAX_WIDTH_MULTIPLIER,
  MIN_STAGE_CHANNELS,
  MIN_WIDTH_MULTIPLIER,
  type ModelName,
  modelNames,
} from "../model/config.ts";
import {
  createSchedule,
  parsePiecewisePoints,
  PIECEWISE_FORM,
  type Schedule,
  ScheduleError,
} from "./schedule.ts";
import type { TrainerOptions } from "./trainer.ts";

/** One setting. A setting without a `valueName` is a switch (on the command line --name or --no-name). */
export interface Flag<T> {
  /** Checks a value from the command line (text, or a boolean for a switch), a form or a checkpoint. */
  readonly schema: z.ZodMiniType<T>;
  /** What the value must be: "--name must be <expects>". */
  readonly expects: string;
  readonly help: string;
  /** How --help shows the value, e.g. "N". */
  readonly valueName?: string;
  /** The value when the setting is not given; a function for one computed at each run. */
  readonly default: T | (() => T);
  /** How --help shows a default that is computed or absent. */
  readonly defaultText?: string;
  /** The accepted values of a setting that names one, listed by --help. */
  readonly choices?: readonly string[];
  /** Why a refused value is wrong, where the check can say more than `expects`. */
  readonly reason?: (value: unknown) => string | undefined;
}

export type FlagTable = Record<string, Flag<unknown>>;

export type FlagValues<F extends FlagTable> = {
  -readonly [K in keyof F]: F[K] extends Flag<infer T> ? T : never;
};

/** `batchSize` is given as --batch-size. */
export function flagName(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (letter) => "-" + letter.toLowerCase());
}

// ---------------------------------------------------------------------------------------------
// Kinds of value

const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Text that spells a number becomes it; anything else is left for zod to refuse. */
function fromNumberText(value: unknown): unknown {
  return typeof value === "string" && NUMBER_TEXT.test(value) ? Number(value) : value;
}

/** A kind of value: its check, what it must be, and how --help shows it. */
export interface ValueKind<T> {
  schema: z.ZodMiniType<T>;
  expects: string;
  valueName: string;
  choices?: readonly string[];
  reason?: (value: unknown) => string | undefined;
}

/** "--name must be <expects>, got <value>", with the check's reason where it gives one. */
export function refusal(name: string, flag: Flag<unknown>, value: unknown): string {
  const reason = flag.reason?.(value);
  return `${name} must be ${flag.expects}, got ${JSON.stringify(value)}` +
    (reason ? ` (${reason})` : "");
}

function numberKind(
  schema: z.ZodMiniNumber,
  expects: string,
  valueName = "X",
): ValueKind<number> {
  return { schema: z.pipe(z.transform(fromNumberText), schema), expects, valueName };
}

export const positiveInteger = numberKind(
  z.number().check(z.int(), z.positive(), z.maximum(Number.MAX_SAFE_INTEGER)),
  "a positive integer",
  "N",
);
// zod 4's numbers are finite: "Infinity" is refused too.
const positiveNumber = numberKind(z.number().check(z.positive()), "a number > 0");
const nonNegativeNumber = numberKind(z.number().check(z.minimum(0)), "a number >= 0");
const fractionNumber = z.number().check(z.minimum(0), z.lt(1));
const fraction = numberKind(fractionNumber, "a fraction in [0, 1)");
/** Seeds reach the GPU kernels as u32. */
const seedKind = numberKind(
  z.number().check(z.int(), z.minimum(0), z.maximum(2 ** 32 - 1)),
  "an integer in 0..4294967295",
  "N",
);

export function choice<const C extends readonly string[]>(choices: C): ValueKind<C[number]> {
  return {
    schema: z.enum(choices),
    expects: `one of ${choices.join(", ")}`,
    valueName: "NAME",
    choices,
  };
}

/** Two numbers in [0, 1) written "B1,B2", as Adam's betas. */
const betaPair: ValueKind<[number, number]> = {
  schema: z.pipe(
    z.transform((value) =>
      typeof value === "string" ? value.split(",").map(fromNumberText) : value
    ),
    z.tuple([fractionNumber, fractionNumber]),
  ),
  expects: "two numbers in [0, 1) written B1,B2",
  valueName: "B1,B2",
};

/** Activations and their gradients in f32, or f16 (src/train/precision.ts). */
export const precisionKind = choice(["f32", "f16"] as const);

export function valueFlag<T>(
  kind: ValueKind<T>,
  help: string,
  fallback: T | (() => T),
  defaultText?: string,
): Flag<T> {
  return { ...kind, help, default: fallback, defaultText };
}

/** A setting that may be left out: its value is then undefined, which --help calls `defaultText`. */
export function optionalFlag<T>(
  kind: ValueKind<T>,
  help: string,
  defaultText: string,
): Flag<T | undefined> {
  return { ...kind, schema: z.optional(kind.schema), help, default: undefined, defaultText };
}

export function switchFlag(help: string, fallback: boolean): Flag<boolean> {
  return { schema: z.boolean(), expects: "on or off", help, default: fallback };
}

/**
 * A recipe setting added after checkpoints were first written: a checkpoint without it trained
 * with `fallback`, which is also its default.
 */
function laterFlag<T>(kind: ValueKind<T>, help: string, fallback: T): Flag<T> {
  return {
    ...kind,
    schema: z._default(kind.schema, fallback as Exclude<T, undefined>) as z.ZodMiniType<T>,
    help,
    default: fallback,
  };
}

/** Test-time augmentation: none, or flip (src/train/eval_pipeline.ts). */
export const ttaKind = choice(["none", "flip"] as const);
export const TTA_HELP =
  "test-time augmentation: flip averages the logits of each test image and its mirror";

/** Cutout's side in pixels: 0 (off) to the image's 32. */
const cutoutKind = numberKind(
  z.number().check(z.int(), z.minimum(0), z.maximum(32)),
  "an integer from 0 (off) to 32",
  "N",
);
/** An EMA decay: above 0, below 1. */
const decayKind = numberKind(z.number().check(z.positive(), z.lt(1)), "a number in (0, 1)");
/** "F:M,F:M,...": checked by the schedule's parser (src/train/schedule.ts), kept as text. */
const schedulePointsKind: ValueKind<string> = {
  schema: z.string().check(z.refine((text) => piecewisePointsProblem(text) === undefined)),
  expects: "fraction:factor pairs from 0 to 1, e.g. 0:0,0.2:1,1:0",
  valueName: "F:M,...",
  reason: (value) => piecewisePointsProblem(String(value)),
};

/** What is wrong with a piecewise schedule's points, in the parser's words; undefined if nothing. */
function piecewisePointsProblem(text: string): string | undefined {
  try {
    parsePiecewisePoints(text);
    return undefined;
  } catch (error) {
    if (!(error instanceof ScheduleError)) throw error;
    // The parser ends each message with the expected form, which `expects` says already.
    return error.message.replace(`: ${PIECEWISE_FORM}`, "").replace(/^piecewise schedule: /, "");
  }
}

// ---------------------------------------------------------------------------------------------
// The settings

export const modelFlag = (fallback: ModelName, help: string) =>
  valueFlag(choice(modelNames), help, fallback);
export const widthFlag = (fallback: number, help: string) =>
  valueFlag(
    numberKind(
      z.number().check(z.minimum(MIN_WIDTH_MULTIPLIER), z.maximum(MAX_WIDTH_MULTIPLIER)),
      `a number from ${MIN_WIDTH_MULTIPLIER} to ${MAX_WIDTH_MULTIPLIER} (a smaller width leaves ` +
        `the narrowest stage fewer than ${MIN_STAGE_CHANNELS} channels)`,
    ),
    help,
    fallback,
  );

/**
 * The settings that decide a training run's numbers. They are stored in its checkpoints, and a
 * resumed run keeps them: changing one would not continue the same run.
 */
export const recipeFlags = {
  model: modelFlag(
    "resnet18",
    "the network: a ResNet (its depth and block kind) or resnet9 (the DAWNBench ResNet-9)",
  ),
  width: widthFlag(0.25, "channel multiplier of every layer (1 is the standard ResNet)"),
  epochs: valueFlag(positiveInteger, "passes over the training images", 4),
  batchSize: valueFlag(positiveInteger, "training images per step", 128),
  optimizer: valueFlag(choice(["sgd", "adam", "adamw"]), "the optimizer", "sgd"),
  lr: valueFlag(
    positiveNumber,
    "peak learning rate (the constant one for --schedule constant)",
    0.1,
  ),
  momentum: valueFlag(nonNegativeNumber, "SGD momentum (sgd only)", 0.9),
  nesterov: switchFlag("Nesterov momentum (sgd only)", true),
  weightDecay: valueFlag(
    nonNegativeNumber,
    "weight decay: L2 for sgd (see --weight-decay-mode) and adam, decoupled for adamw",
    5e-4,
  ),
  weightDecayMode: laterFlag(
    choice(["coupled", "decoupled"] as const),
    "sgd's weight decay: coupled adds wd * w to the gradient (torch.optim.SGD), decoupled " +
      "shrinks w by lr * wd before the step (as AdamW)",
    "coupled",
  ),
  betas: valueFlag<[number, number]>(betaPair, "Adam's betas (adam and adamw only)", [0.9, 0.999]),
  schedule: valueFlag(
    choice(["constant", "cosine", "one-cycle", "piecewise"]),
    "the learning rate's course: one-cycle is linear up, then down to 0; cosine decays to 0; " +
      "piecewise is linear between --lr-points",
    "one-cycle",
  ),
  lrPoints: laterFlag(
    schedulePointsKind,
    "the piecewise schedule's points, fraction of the steps:multiple of --lr, joined linearly",
    "0:0,0.2:1,1:0",
  ),
  warmup: valueFlag(
    fraction,
    "fraction of the steps spent rising linearly from 0 to --lr (one-cycle and cosine)",
    0.2,
  ),
  seed: valueFlag(seedKind, "seeds the initial weights, the data order and the augmentation", 0),
  augment: switchFlag("random crop (4 pixels of padding) and horizontal flip", true),
  cropPadding: laterFlag(
    choice(["zero", "reflect"] as const),
    "what the random crop's padding holds: black pixels, or the image mirrored at its edges",
    "zero",
  ),
  cutout: laterFlag(
    cutoutKind,
    "Cutout: after crop and flip, a square of this side at a random place is set to the mean " +
      "colour (0 is off)",
    0,
  ),
  labelSmoothing: laterFlag(
    fraction,
    "label smoothing of the training loss, as PyTorch's CrossEntropyLoss(label_smoothing)",
    0,
  ),
  tta: laterFlag(ttaKind, TTA_HELP, "none"),
  ema: optionalFlag(
    decayKind,
    "also evaluate an exponential moving average of the weights (and batch-norm statistics), " +
      "updated every step with this decay",
    "off",
  ),
  limit: optionalFlag(
    positiveInteger,
    "train on the first N training images only, for quick runs",
    "all",
  ),
  precision: valueFlag(
    // Checkpoints from before f16 training stored no precision: they trained in f32.
    { ...precisionKind, schema: z._default(precisionKind.schema, "f32") },
    "activations and their gradients in f32, or f16 (half the memory; needs the adapter's " +
      "shader-f16; dynamic loss scaling; weights, optimizer state and batch-norm statistics stay " +
      "f32); a resumed run keeps its precision",
    "f32",
  ),
} as const;

export type TrainRecipe = FlagValues<typeof recipeFlags>;

/** The recipe as stored in a checkpoint; its values go through the settings' own checks. */
export const trainRecipeSchema = z.object(
  Object.fromEntries(Object.entries(recipeFlags).map(([key, flag]) => [key, flag.schema])),
) as unknown as z.ZodMiniType<TrainRecipe>;

/**
 * Named recipes that --preset NAME puts under the settings given explicitly.
 * fast94 is the ResNet-9 recipe of the CIFAR-10 speed records (README, "Time to 94%").
 */
export const recipePresets: Record<string, Partial<TrainRecipe & { evalBatchSize: number }>> = {
  book: {
    model: "resnet18",
    width: 1,
    batchSize: 128,
    optimizer: "adam",
    lr: 2e-5,
    weightDecay: 0,
    epochs: 63,
    augment: false,
    schedule: "constant",
  },
  fast94: {
    model: "resnet9",
    width: 1,
    epochs: 18,
    batchSize: 512,
    evalBatchSize: 500,
    optimizer: "sgd",
    lr: 0.4,
    momentum: 0.9,
    nesterov: true,
    weightDecay: 5e-4,
    weightDecayMode: "coupled",
    schedule: "piecewise",
    lrPoints: "0:0,0.2:1,1:0",
    augment: true,
    cropPadding: "reflect",
    cutout: 8,
    labelSmoothing: 0.2,
    tta: "flip",
  },
};

export const evalBatchSizeFlag = valueFlag(
  positiveInteger,
  "images per evaluation batch (more is faster, and takes more GPU memory)",
  250,
);
export const testLimitFlag = optionalFlag(
  positiveInteger,
  "evaluate on the first N test images only, for quick runs",
  "all",
);

/** A run's settings beside the recipe that leave its numbers alone: how it is evaluated. */
export const trainSettingsFlags = {
  evalBatchSize: evalBatchSizeFlag,
  testLimit: testLimitFlag,
};

// ---------------------------------------------------------------------------------------------
// What the settings make

/** Recipe settings that the chosen optimizer or schedule does not use, and what they are for. */
export function unusedSettings(recipe: TrainRecipe): Map<keyof TrainRecipe, string> {
  const unused = new Map<keyof TrainRecipe, string>();
  if (recipe.optimizer === "sgd") {
    unused.set("betas", "--optimizer adam and adamw");
  } else {
    unused.set("momentum", "--optimizer sgd");
    unused.set("nesterov", "--optimizer sgd");
    unused.set("weightDecayMode", "--optimizer sgd (adam's is coupled, adamw's decoupled)");
  }
  if (recipe.schedule === "constant" || recipe.schedule === "piecewise") {
    unused.set("warmup", "--schedule one-cycle and cosine");
  }
  if (recipe.schedule !== "piecewise") unused.set("lrPoints", "--schedule piecewise");
  if (!recipe.augment) {
    unused.set("cropPadding", "--augment");
    unused.set("cutout", "--augment");
  }
  return unused;
}

/** Refuses settings that are each valid but do not go together. */
export function checkRecipe(recipe: TrainRecipe): void {
  if (recipe.optimizer === "sgd" && recipe.nesterov && recipe.momentum === 0) {
    throw new UsageError("--nesterov needs --momentum above 0: give --no-nesterov for plain SGD");
  }
}

/**
 * The Trainer's options for `recipe` over `images` training images, checked (checkRecipe too),
 * but for the kernel policy (which needs the adapter).
 */
export function trainingPlan(
  recipe: TrainRecipe,
  images: number,
): Omit<TrainerOptions, "policy" | "readEvery"> {
  checkRecipe(recipe);
  // As the Trainer counts them: full batches only.
  const stepsPerEpoch = Math.floor(images / recipe.batchSize);
  if (stepsPerEpoch === 0) {
    throw new UsageError(
      `--batch-size ${recipe.batchSize} is more than the ${images} training images: use a ` +
        "smaller --batch-size",
    );
  }
  const { optimizer: kind, lr, weightDecay } = recipe;
  return {
    batchSize: recipe.batchSize,
    augment: recipe.augment,
    padding: recipe.cropPadding,
    cutout: recipe.augment ? recipe.cutout : 0,
    labelSmoothing: recipe.labelSmoothing,
    ema: recipe.ema,
    optimizer: kind === "sgd"
      ? {
        kind,
        lr,
        weightDecay,
        weightDecayMode: recipe.weightDecayMode,
        momentum: recipe.momentum,
        nesterov: recipe.nesterov,
      }
      : { kind, lr, weightDecay, betas: recipe.betas },
    schedule: schedule(recipe, stepsPerEpoch),
    seed: recipe.seed,
    precision: recipe.precision,
  };
}

function schedule(recipe: TrainRecipe, stepsPerEpoch: number): Schedule {
  const { lr, warmup, epochs } = recipe;
  const totalSteps = epochs * stepsPerEpoch;
  try {
    switch (recipe.schedule) {
      case "constant":
        return createSchedule({ kind: "constant", lr });
      case "cosine":
        return createSchedule({
          kind: "cosine",
          lr,
          totalSteps,
          warmupSteps: Math.round(warmup * totalSteps),
        });
      case "one-cycle":
        return createSchedule({ kind: "one-cycle", lr, totalSteps, warmupFraction: warmup });
      case "piecewise":
        return createSchedule({
          kind: "piecewise",
          lr,
          totalSteps,
          points: parsePiecewisePoints(recipe.lrPoints),
        });
    }
  } catch (error) {
    if (!(error instanceof ScheduleError)) throw error;
    throw new UsageError(
      `${error.message} (${epochs} epochs of ${stepsPerEpoch} steps): use more epochs or ` +
        "images, or a smaller --warmup",
    );
  }
}

/** Views of each test image the evaluation averages: 2 with --tta flip. */
export function evalViews(settings: { tta: "none" | "flip" }): 1 | 2 {
  return settings.tta === "flip" ? 2 : 1;
}

/**
 * The first `limit` images of `split` (all when undefined), for quick runs; `flag` and `what`
 * name the setting and the split in the error for a limit above the images there are.
 */
export function firstImages(
  split: CifarSplit,
  limit: number | undefined,
  flag: string,
  what: string,
): CifarSplit {
  if (limit === undefined) return split;
  if (limit > split.count) {
    throw new UsageError(`${flag} ${limit} is more than the ${split.count} ${what} images`);
  }
  return {
    images: split.images.subarray(0, limit * IMAGE_BYTES),
    labels: split.labels.subarray(0, limit),
    count: limit,
  };
}
