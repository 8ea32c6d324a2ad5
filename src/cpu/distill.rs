//! Soft-target loss (knowledge distillation, as LFPT5 uses it): at every scored decoder position,
//! `w * T^2 * KL(q || p)` with `q = softmax(teacher / T)` and `p = softmax(student / T)`, fused
//! with its gradient `w * T * (p - q)` with respect to the student's logits. The Rust twin of
//! `shaders/distill.wgsl`.

use super::par;

/// Per row `r` of `[rows, vocab]` logits: the loss `weights[r] * T^2 * KL(q || p)`; `teacher`
/// is then overwritten with the gradient of the summed loss with respect to `student`.
pub fn losses_and_grad_into_teacher(
    student: &[f32],
    teacher: &mut [f32],
    vocab: usize,
    weights: &[f32],
    temperature: f32,
) -> Vec<f32> {
    assert_eq!(
        student.len(),
        teacher.len(),
        "distill: student and teacher differ"
    );
    assert_eq!(
        student.len(),
        weights.len() * vocab,
        "distill: logits and weights differ"
    );
    let inv_t = 1.0 / temperature;
    let teacher_rows: &[f32] = teacher;
    let norms: Vec<(f32, f32, f32)> = par::map(weights.len(), |r| {
        let at = r * vocab..(r + 1) * vocab;
        let (s, t) = (&student[at.clone()], &teacher_rows[at]);
        let (ls, lt) = (log_sum_exp(s, inv_t), log_sum_exp(t, inv_t));
        // Sums of up to 32k terms in f64: the reference is not the rounding the GPU is held to.
        let kl: f64 = s
            .iter()
            .zip(t)
            .map(|(&x, &y)| {
                let log_q = y * inv_t - lt;
                (log_q.exp() * (log_q - (x * inv_t - ls))) as f64
            })
            .sum();
        (ls, lt, weights[r] * temperature * temperature * kl as f32)
    });
    par::rows_mut(teacher, vocab, |r, t| {
        let (ls, lt, _) = norms[r];
        let w = weights[r] * temperature;
        for (y, &x) in t.iter_mut().zip(&student[r * vocab..(r + 1) * vocab]) {
            *y = w * ((x * inv_t - ls).exp() - (*y * inv_t - lt).exp());
        }
    });
    norms.iter().map(|n| n.2).collect()
}

/// `log sum exp(x * scale)`.
fn log_sum_exp(x: &[f32], scale: f32) -> f32 {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
    let sum: f64 = x.iter().map(|&v| ((v * scale - max).exp()) as f64).sum();
    max + sum.ln() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfcheck::test_values;

    fn loss(s: &[f32], t: &[f32], w: &[f32], temp: f32) -> f32 {
        losses_and_grad_into_teacher(s, &mut t.to_vec(), s.len() / w.len(), w, temp)
            .iter()
            .sum()
    }

    #[test]
    fn gradient_matches_finite_differences_and_vanishes_at_the_teacher() {
        let (rows, vocab, temp) = (3, 11, 2.0);
        let s: Vec<f32> = test_values(rows * vocab, 1)
            .iter()
            .map(|x| x * 3.0)
            .collect();
        let t: Vec<f32> = test_values(rows * vocab, 2)
            .iter()
            .map(|x| x * 3.0)
            .collect();
        let w = [0.5, 1.0, 0.0];
        let mut g = t.clone();
        losses_and_grad_into_teacher(&s, &mut g, vocab, &w, temp);
        let h = 1e-2;
        for i in [0, 7, 15, 30] {
            let (mut up, mut down) = (s.clone(), s.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up, &t, &w, temp) - loss(&down, &t, &w, temp)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-3,
                "logit {i}: finite difference {fd}, ours {g:?}"
            );
        }
        assert!(
            g[22..].iter().all(|&x| x == 0.0),
            "a row of weight 0 has a gradient"
        );
        let mut same = s.clone();
        let l = losses_and_grad_into_teacher(&s, &mut same, vocab, &w, temp);
        assert!(l.iter().all(|x| x.abs() < 1e-5), "KL to itself: {l:?}");
        assert!(same.iter().all(|x| x.abs() < 1e-6));
    }
}
