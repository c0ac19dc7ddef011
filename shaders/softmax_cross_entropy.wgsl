// Softmax cross-entropy with the mean over the batch, fused: one pass gives the loss, the
// gradient of the logits and the number of correct predictions.
//   logits: [BATCH, CLASSES] ([VIEWS * BATCH, CLASSES] in evaluate), labels: [BATCH] (u32)
//   forward_backward, with eps = LABEL_SMOOTHING and K = CLASSES (PyTorch's
//   CrossEntropyLoss(label_smoothing=eps): the target is q = (1 - eps) * onehot(label) + eps / K):
//     dlogits[n, k] = (softmax(logits[n])[k] - q[k]) / BATCH, times the loss scale with
//                     LOSS_SCALED (f16 training: src/train/loss_scale.ts; the scale is the first
//                     word of the loss-scale state, read on the GPU so no step waits for the CPU)
//     metrics.loss_sum += sum_n (1 - eps) * -log p[n, label[n]] + eps / K * sum_k -log p[n, k]
//                         (the smoothed loss: what training optimises)
//   evaluate: sample n's logits are the mean over views v of rows v * BATCH + n (test-time
//   augmentation: VIEWS = 2 holds the images and their mirrors); then, unsmoothed,
//     metrics.loss_sum += sum_n -log softmax(logits[n])[label[n]]
//     confusion[label[n] * CLASSES + argmax(logits[n])] += 1
//   both: metrics.correct  += count of n with argmax(logits[n]) == label[n] (ties: lowest index)
//         metrics.samples  += BATCH
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
// forward_backward only: 0 is the plain cross-entropy, bit for bit as without smoothing.
override LABEL_SMOOTHING: f32 = 0.0;
// evaluate only: how many views of each sample the logits hold (forward_backward reads 1).
override VIEWS: u32 = 1;

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

// Sample n's logit k: the mean over its views. With one view that is the row itself, exactly.
// The mean multiplies by 1 / VIEWS rather than dividing: exact for 2 views (as PyTorch's
// (a + b) / 2), where a GPU's division may be off by an ulp.
fn logit(n: u32, k: u32) -> f32 {
  var sum = logits[n * CLASSES + k];
  if (VIEWS == 1u) { return sum; }
  for (var v = 1u; v < VIEWS; v++) { sum += logits[(v * BATCH + n) * CLASSES + k]; }
  return sum * (1.0 / f32(VIEWS));
}

fn row_result(n: u32) -> RowResult {
  let label = labels[n];
  var max_logit = logit(n, 0u);
  var argmax = 0u;
  for (var k = 1u; k < CLASSES; k++) {
    let value = logit(n, k);
    if (value > max_logit) { max_logit = value; argmax = k; }
  }
  var sum_exp = 0.0;
  for (var k = 0u; k < CLASSES; k++) { sum_exp += exp(logit(n, k) - max_logit); }
  let loss = log(sum_exp) + max_logit - logit(n, label);
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
  // The smoothed target's two parts; with LABEL_SMOOTHING = 0 they are 1 and 0, and the target
  // and the gradient are exactly the plain one-hot ones.
  let label_weight = 1.0 - LABEL_SMOOTHING;
  let uniform_weight = LABEL_SMOOTHING / f32(CLASSES);
  for (var n = lid; n < BATCH; n += WORKGROUP_SIZE) {
    let row = row_result(n);
    correct += row.correct;
    let label = labels[n];
    let log_sum_exp = log(row.sum_exp) + row.max_logit;
    // sum_k -log p[n, k], for the smoothed loss.
    var uniform_loss = 0.0;
    for (var k = 0u; k < CLASSES; k++) {
      let value = logits[n * CLASSES + k];
      let p = exp(value - row.max_logit) / row.sum_exp;
      let smoothed = select(0.0, label_weight, k == label) + uniform_weight;
      let gradient = (p - smoothed) / f32(BATCH);
      // A power of two: scaling is exact, so the scaled gradient is the unscaled one, shifted.
      dlogits[n * CLASSES + k] = select(gradient, gradient * loss_scale, LOSS_SCALED);
      uniform_loss += log_sum_exp - value;
    }
    // Without smoothing, the plain loss exactly as evaluate computes it.
    if (LABEL_SMOOTHING == 0.0) {
      loss += row.loss;
    } else {
      loss += label_weight * row.loss + uniform_weight * uniform_loss;
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
