//! Log-softmax over the vocabulary with the target's log-probability picked, fused with its
//! gradient: the `[tokens, vocab]` log-probabilities are never stored.

use super::par;

/// Log-probability of `targets[r]` under row `r` of `logits` (`[rows, vocab]`).
pub fn target_log_probs(logits: &[f32], vocab: usize, targets: &[u32]) -> Vec<f32> {
    assert_eq!(
        logits.len(),
        targets.len() * vocab,
        "cross-entropy: logits and targets differ"
    );
    logits
        .chunks_exact(vocab)
        .zip(targets)
        .map(|(row, &t)| row[t as usize] - log_sum_exp(row))
        .collect()
}

fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln()
}

/// Loss `-sum_r weight[r] * log p(target[r])`; `logits` is overwritten with its gradient,
/// `weight[r] * (softmax(row) - onehot(target))`.
pub fn loss_and_grad_in_place(
    logits: &mut [f32],
    vocab: usize,
    targets: &[u32],
    weights: &[f32],
) -> f32 {
    losses_and_grad_in_place(logits, vocab, targets, weights)
        .iter()
        .sum()
}

/// [`loss_and_grad_in_place`] with the loss per row, `-weight[r] * log p(target[r])`.
pub fn losses_and_grad_in_place(
    logits: &mut [f32],
    vocab: usize,
    targets: &[u32],
    weights: &[f32],
) -> Vec<f32> {
    assert_eq!(
        logits.len(),
        targets.len() * vocab,
        "cross-entropy: logits and targets differ"
    );
    let logp = target_log_probs(logits, vocab, targets);
    par::rows_mut(logits, vocab, |r, row| {
        let w = weights[r];
        let lse = row[targets[r] as usize] - logp[r];
        for x in row.iter_mut() {
            *x = w * (*x - lse).exp();
        }
        row[targets[r] as usize] -= w;
    });
    logp.iter().zip(weights).map(|(l, w)| -(l * w)).collect()
}
