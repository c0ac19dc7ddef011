// One training or evaluation batch, gathered from the data set resident on the GPU, normalised and
// (for training) augmented, so that no image passes through the CPU per batch.
//   images:  the data set's CIFAR bytes, 4 per u32 word (little-endian), 768 words per image,
//            each image its 1024 red, 1024 green and 1024 blue bytes row by row. WebGPU caps a
//            binding at 128 MiB, below CIFAR-10 train's 153.6 MB, so the images lie in two
//            chunks split at an image boundary: indices below FIRST_CHUNK_IMAGES in
//            `images_first`, the rest in `images_second` (a one-chunk data set binds its chunk
//            twice; both bindings are read-only, which WebGPU allows).
//   order:   the epoch's permutation of data set indices; sample n of the batch is image
//            order[batch.order_offset + n].
//   input:   [VIEWS * BATCH, 32, 32, 3] NHWC, (raw / 255 - MEAN[c]) / STD[c], computed in f32 and
//            stored as `act`: f32, or f16 in the kernel's f16 build (src/shaders.ts), the network's
//            activation type. Row v * BATCH + n is view v of sample n (VIEWS = 2, evaluation only:
//            view 1 is view 0 mirrored left to right, for test-time augmentation).
//   labels_out: [BATCH] u32, the images' labels, once whatever VIEWS.
// With AUGMENT, torchvision's RandomCrop(32, padding=4) then RandomHorizontalFlip(): the image is
// padded by 4 pixels on each side, black (raw 0, before normalisation) or, with REFLECT_PADDING,
// its mirror without repeating the edge (padding_mode="reflect": row -1 is row 1, row 32 is row
// 30), a 32x32 window at offsets (offset_x, offset_y) in 0..8 is cut, and it is mirrored with
// probability 1/2. With CUTOUT = S > 0, an SxS square of the result centred at (cutout_y,
// cutout_x), each uniform in 0..31, rows cutout_y - S/2 .. cutout_y - S/2 + S - 1 (S/2 rounded
// down; columns alike) clipped to the image, is set to 0 after normalisation (the data set's mean
// colour). The draws come from a stateless hash of (seed, epoch, data set index), so a resumed run
// reproduces them; Cutout's centre from a second hash of the first, so the crop and flip draws
// are the same with Cutout or without. `augmentationDraw` in src/ops/input_batch.ts is the same
// function for the CPU.
// One invocation per output pixel writes its 3 channels: the draws are per sample, the three
// planes share the source position, and the writes are contiguous.

alias act = f32;

override WORKGROUP_SIZE: u32;
override BATCH: u32;
override FIRST_CHUNK_IMAGES: u32;
override AUGMENT: bool;
override REFLECT_PADDING: bool = false;
override CUTOUT: u32 = 0u;  // side of the square; 0 is off
override VIEWS: u32 = 1u;  // 1, or 2 to add the mirror image (evaluation)
override MEAN_R: f32;
override MEAN_G: f32;
override MEAN_B: f32;
override STD_R: f32;
override STD_G: f32;
override STD_B: f32;

const SIZE = 32u;
const PLANE_BYTES = 1024u;  // SIZE * SIZE
const IMAGE_WORDS = 768u;  // 3 planes of PLANE_BYTES, 4 bytes per word
const CROP_PADDING = 4u;
const CROP_CHOICES = 9u;  // offsets 0..2 * CROP_PADDING
// Salts Cutout's hash of the crop hash, so that it is no link of another draw's chain of hashes
// (pcg_hash(pcg_hash(x)) is also the crop hash of other seeds); any constant would do.
const CUTOUT_SALT = 0x9e3779b9u;

// Written with queue.writeBuffer before each batch's submit.
struct BatchParams {
  order_offset: u32,
  seed: u32,
  epoch: u32,
}

@group(0) @binding(0) var<storage, read> images_first: array<u32>;
@group(0) @binding(1) var<storage, read> images_second: array<u32>;
@group(0) @binding(2) var<storage, read> dataset_labels: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<uniform> batch: BatchParams;
@group(0) @binding(5) var<storage, read_write> input: array<act>;
@group(0) @binding(6) var<storage, read_write> labels_out: array<u32>;

// The PCG hash of Jarzynski and Olano, "Hash Functions for GPU Rendering" (JCGT 2020): a
// well-mixed 32-bit to 32-bit function, so draws need no state carried between batches.
fn pcg_hash(value: u32) -> u32 {
  let state = value * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

struct Draw {
  offset_x: u32,
  offset_y: u32,
  flip: bool,
  cutout_x: u32,
  cutout_y: u32,
}

// Three draws as mixed-radix digits of one hash; 2^32 is so much larger than 9 * 9 * 2 that the
// modulo bias (under 1e-9) does not matter. Cutout's centre takes the low 10 bits of a second
// hash (32 divides 2^32: no bias at all); pcg_hash mixes every bit of its argument into every bit
// of its value, so the centre is independent of the crop and the flip in practice.
fn augmentation_draw(index: u32) -> Draw {
  let hash = pcg_hash(index + pcg_hash(batch.epoch + pcg_hash(batch.seed)));
  let cutout_hash = pcg_hash(hash ^ CUTOUT_SALT);
  return Draw(
    hash % CROP_CHOICES,
    (hash / CROP_CHOICES) % CROP_CHOICES,
    ((hash / (CROP_CHOICES * CROP_CHOICES)) & 1u) == 1u,
    cutout_hash % SIZE,
    (cutout_hash / SIZE) % SIZE,
  );
}

// A position of the padded image, -4..35 (wrapped to u32 when negative), to the image pixel that
// reflect padding shows there: -k is k and 31 + k is 31 - k, as the padding (4) is below 32.
fn reflect(position: u32) -> u32 {
  let last = i32(SIZE - 1u);
  return u32(last - abs(last - abs(bitcast<i32>(position))));
}

fn image_word(in_first_chunk: bool, word: u32) -> u32 {
  if (in_first_chunk) { return images_first[word]; }
  return images_second[word];
}

fn image_byte(in_first_chunk: bool, image_base: u32, offset: u32) -> u32 {
  let word = image_word(in_first_chunk, image_base + offset / 4u);
  return (word >> (8u * (offset % 4u))) & 0xffu;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gather(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let pixel = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (pixel >= VIEWS * BATCH * PLANE_BYTES) { return; }
  let row = pixel / PLANE_BYTES;  // v * BATCH + n
  let n = row % BATCH;
  let y = (pixel / SIZE) % SIZE;
  let x = pixel % SIZE;
  let index = order[batch.order_offset + n];
  if (pixel % PLANE_BYTES == 0u && row < BATCH) { labels_out[n] = dataset_labels[index]; }

  var flip = row >= BATCH;  // view 1 mirrors view 0
  var offset_x = CROP_PADDING;  // the uncropped window
  var offset_y = CROP_PADDING;
  var cut = false;
  if (AUGMENT) {
    let draw = augmentation_draw(index);
    flip = flip != draw.flip;
    offset_x = draw.offset_x;
    offset_y = draw.offset_y;
    // In the square when 0 <= y - (cutout_y - CUTOUT / 2) < CUTOUT: one unsigned comparison, as
    // a negative difference wraps to a huge value (CUTOUT = 0 cuts nothing). Rows and columns
    // past the image are never asked about, which clips the square.
    let half = CUTOUT / 2u;
    cut = y + half - draw.cutout_y < CUTOUT && x + half - draw.cutout_x < CUTOUT;
  }
  // Source position in the unpadded image; with zero padding it may fall outside, reading black.
  // Unsigned arithmetic: a position left of or above the image wraps to a huge value, which the
  // single `< SIZE` comparison rejects along with those past the right or bottom edge.
  var source_x = select(x, SIZE - 1u - x, flip) + offset_x - CROP_PADDING;
  var source_y = y + offset_y - CROP_PADDING;
  if (AUGMENT && REFLECT_PADDING) {
    source_x = reflect(source_x);
    source_y = reflect(source_y);
  }
  var raw = vec3u(0u);
  if (source_x < SIZE && source_y < SIZE && !cut) {
    let in_first_chunk = index < FIRST_CHUNK_IMAGES;
    let image_base = select(index - FIRST_CHUNK_IMAGES, index, in_first_chunk) * IMAGE_WORDS;
    let offset = source_y * SIZE + source_x;
    raw = vec3u(
      image_byte(in_first_chunk, image_base, offset),
      image_byte(in_first_chunk, image_base, PLANE_BYTES + offset),
      image_byte(in_first_chunk, image_base, 2u * PLANE_BYTES + offset),
    );
  }
  // Cutout's square is 0 after normalisation; select keeps the normalisation of other pixels
  // exactly as without Cutout.
  let mean = vec3f(MEAN_R, MEAN_G, MEAN_B);
  let value = select((vec3f(raw) / 255.0 - mean) / vec3f(STD_R, STD_G, STD_B), vec3f(0.0), cut);
  input[3u * pixel] = act(value.r);
  input[3u * pixel + 1u] = act(value.g);
  input[3u * pixel + 2u] = act(value.b);
}
