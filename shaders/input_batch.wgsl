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
//   input:   [BATCH, 32, 32, 3] NHWC, (raw / 255 - MEAN[c]) / STD[c], computed in f32 and stored
//            as `act`: f32, or f16 in the kernel's f16 build (src/shaders.ts), the network's
//            activation type.
//   labels_out: [BATCH] u32, the images' labels.
// With AUGMENT, torchvision's RandomCrop(32, padding=4) then RandomHorizontalFlip(): the image is
// padded with 4 black pixels (raw 0, before normalisation) on each side, a 32x32 window at
// offsets (offset_x, offset_y) in 0..8 is cut, and it is mirrored with probability 1/2. The draws
// come from a stateless hash of (seed, epoch, data set index), so a resumed run reproduces them;
// `augmentationDraw` in src/ops/input_batch.ts is the same function for the CPU.
// One invocation per output pixel writes its 3 channels: the draws are per sample, the three
// planes share the source position, and the writes are contiguous.

alias act = f32;

override WORKGROUP_SIZE: u32;
override BATCH: u32;
override FIRST_CHUNK_IMAGES: u32;
override AUGMENT: bool;
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
}

// Three draws as mixed-radix digits of one hash; 2^32 is so much larger than 9 * 9 * 2 that the
// modulo bias (under 1e-9) does not matter.
fn augmentation_draw(index: u32) -> Draw {
  let hash = pcg_hash(index + pcg_hash(batch.epoch + pcg_hash(batch.seed)));
  return Draw(
    hash % CROP_CHOICES,
    (hash / CROP_CHOICES) % CROP_CHOICES,
    ((hash / (CROP_CHOICES * CROP_CHOICES)) & 1u) == 1u,
  );
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
  if (pixel >= BATCH * PLANE_BYTES) { return; }
  let n = pixel / PLANE_BYTES;
  let y = (pixel / SIZE) % SIZE;
  let x = pixel % SIZE;
  let index = order[batch.order_offset + n];
  if (pixel % PLANE_BYTES == 0u) { labels_out[n] = dataset_labels[index]; }

  // Source position in the unpadded image; with padding it may fall outside, reading black.
  // Unsigned arithmetic: a position left of or above the image wraps to a huge value, which the
  // single `< SIZE` comparison rejects along with those past the right or bottom edge.
  var source_x = x;
  var source_y = y;
  if (AUGMENT) {
    let draw = augmentation_draw(index);
    source_x = select(x, SIZE - 1u - x, draw.flip) + draw.offset_x - CROP_PADDING;
    source_y = y + draw.offset_y - CROP_PADDING;
  }
  var raw = vec3u(0u);
  if (source_x < SIZE && source_y < SIZE) {
    let in_first_chunk = index < FIRST_CHUNK_IMAGES;
    let image_base = select(index - FIRST_CHUNK_IMAGES, index, in_first_chunk) * IMAGE_WORDS;
    let offset = source_y * SIZE + source_x;
    raw = vec3u(
      image_byte(in_first_chunk, image_base, offset),
      image_byte(in_first_chunk, image_base, PLANE_BYTES + offset),
      image_byte(in_first_chunk, image_base, 2u * PLANE_BYTES + offset),
    );
  }
  let value = (vec3f(raw) / 255.0 - vec3f(MEAN_R, MEAN_G, MEAN_B)) / vec3f(STD_R, STD_G, STD_B);
  input[3u * pixel] = act(value.r);
  input[3u * pixel + 1u] = act(value.g);
  input[3u * pixel + 2u] = act(value.b);
}
