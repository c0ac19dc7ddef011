// Softmax cross-entropy with the mean over the batch, fused: one pass gives the loss, the
// gradient of the logits and the number of correct predictions.
//   logits: [BATCH, CLASSES], labels: [BATCH] (u32)
//   dlogits[n, k] = (softmax(logits[n])[k] - (k == label[n])) / BATCH, times the loss scale with
//                   LOSS_SCALED (f16 training: src/train/loss_scale.ts; the scale is the first
//                   word of the loss-scale state, read on the GPU so no step waits for the CPU)
//   metrics.loss_sum += sum_n -log softmax(logits[n])[label[n]]
//   metrics.correct  += count of n with argmax(logits[n]) == label[n] (ties: lowest index)
//   metrics.samples  += BATCH
//   evaluate only: confusion[label[n] * CLASSES + argmax(logits[n])] += 1
// The metrics accumulate across steps on the GPU and are read back rarely. One workgroup does
// the whole batch (BATCH x CLASSES is tiny), so the sums are a workgroup reduction and only the
// confusion matrix needs atomics.
// `forward_backward` is the training entry point; `evaluate` skips the gradient. Everything here is
// f32: the classifier head runs in f32 whatever the activations' type (global_avg_pool.wgsl).

override WORKGROUP_SIZE: u32;  // a power of two (tree reduction)
override BATCH: u32;
override CLASSES: u32;
// Without it the op binds the labels at `loss_scale`, never read.
override LOSS_SCALED: bool = false;

struct Metrics {
  loss_sum: f32,
  correct: u32,
  samples: u32,
}

var<workgroup> partial_loss: array<f32, WORKGROUP_SIZE>;
var<workgroup> partial_correct: array<u32, WORKGROUP_SIZE>;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
// forward_backward
@group(0) @binding(2) var<storage, read> loss_scale: f32;
@group(0) @binding(3) var<storage, read_write> train_metrics: Metrics;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
// evaluate
@group(0) @binding(2) var<storage, read_write> eval_metrics: Metrics;
@group(0) @binding(3) var<storage, read_write> confusion: array<atomic<u32>>;

struct RowResult {
  loss: f32,
  correct: u32,
  argmax: u32,
  max_logit: f32,
  sum_exp: f32,
}

fn row_result(n: u32) -> RowResult {
  let base = n * CLASSES;
  let label = labels[n];
  var max_logit = logits[base];
  var argmax = 0u;
  for (var k = 1u; k < CLASSES; k++) {
    let value = logits[base + k];
    if (value > max_logit) { max_logit = value; argmax = k; }
  }
  var sum_exp = 0.0;
  for (var k = 0u; k < CLASSES; k++) { sum_exp += exp(logits[base + k] - max_logit); }
  let loss = log(sum_exp) + max_logit - logits[base + label];
  return RowResult(loss, select(0u, 1u, argmax == label), argmax, max_logit, sum_exp);
}

// The whole batch's sums, by a workgroup reduction of each invocation's.
fn batch_metrics(lid: u32, loss: f32, correct: u32) -> Metrics {
  partial_loss[lid] = loss;
  partial_correct[lid] = correct;
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) {
      partial_loss[lid] += partial_loss[lid + stride];
      partial_correct[lid] += partial_correct[lid + stride];
    }
  }
  workgroupBarrier();
  return Metrics(partial_loss[0], partial_correct[0], BATCH);
}

fn metrics_sum(a: Metrics, b: Metrics) -> Metrics {
  return Metrics(a.loss_sum + b.loss_sum, a.correct + b.correct, a.samples + b.samples);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward_backward(@builtin(local_invocation_index) lid: u32) {
  var loss = 0.0;
  var correct = 0u;
  for (var n = lid; n < BATCH; n += WORKGROUP_SIZE) {
    let row = row_result(n);
    loss += row.loss;
    correct += row.correct;
    let label = labels[n];
    for (var k = 0u; k < CLASSES; k++) {
      let p = exp(logits[n * CLASSES + k] - row.max_logit) / row.sum_exp;
      let gradient = (p - select(0.0, 1.0, k == label)) / f32(BATCH);
      // A power of two: scaling is exact, so the scaled gradient is the unscaled one, shifted.
      dlogits[n * CLASSES + k] = select(gradient, gradient * loss_scale, LOSS_SCALED);
    }
  }
  let batch = batch_metrics(lid, loss, correct);
  if (lid == 0u) { train_metrics = metrics_sum(train_metrics, batch); }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn evaluate(@builtin(local_invocation_index) lid: u32) {
  var loss = 0.0;
  var correct = 0u;
  for (var n = lid; n < BATCH; n += WORKGROUP_SIZE) {
    let row = row_result(n);
    loss += row.loss;
    correct += row.correct;
    atomicAdd(&confusion[labels[n] * CLASSES + row.argmax], 1u);
  }
  let batch = batch_metrics(lid, loss, correct);
  if (lid == 0u) { eval_metrics = metrics_sum(eval_metrics, batch); }
}
