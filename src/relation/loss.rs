//! ERDA's losses on cosine scores against detached relation prototypes (temperature 1), with
//! the weights and margins of the authors' code: prototype cross-entropy, the hardest-negative
//! margin, the multi-margin, and the entity-swap regulariser. Each returns the loss and its
//! gradient with respect to the head's outputs `z`.

/// Weights and margins (`METHODS.md`, ERDA).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Weights {
    pub ce: f32,
    pub hardest: f32,
    pub multi: f32,
    pub margin: f32,
    pub swap: f32,
    pub swap_margin: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            ce: 1.0,
            hardest: 1.0,
            multi: 1.0,
            margin: 0.2,
            swap: 0.1,
            swap_margin: 0.01,
        }
    }
}

/// `v / |v|` (zero stays zero).
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter()
        .map(|x| if n > 0.0 { x / n } else { 0.0 })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Cosines of `z` with each unit prototype row, and `dcos_j/dz` applied: returns
/// `sum_j g_j dcos_j/dz` for the given `g`.
struct Cosines {
    u: Vec<f32>,
    norm: f32,
    s: Vec<f32>,
}

impl Cosines {
    fn new(z: &[f32], protos: &[f32]) -> Self {
        let norm = z.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let u: Vec<f32> = z.iter().map(|x| x / norm).collect();
        let s = protos.chunks(z.len()).map(|p| dot(&u, p)).collect();
        Self { u, norm, s }
    }

    /// `d = sum_j g_j (p_j - s_j u) / |z|`, added into `dz`.
    fn back(&self, g: &[f32], protos: &[f32], dz: &mut [f32]) {
        let d = self.u.len();
        for (j, &gj) in g.iter().enumerate() {
            if gj == 0.0 {
                continue;
            }
            let p = &protos[j * d..(j + 1) * d];
            for k in 0..d {
                dz[k] += gj * (p[k] - self.s[j] * self.u[k]) / self.norm;
            }
        }
    }
}

/// Mean over rows of `ce * CE(s, y) + hardest * max(0, m - s_y + max_{j!=y} s_j)
/// + multi * (1/C) sum_{j!=y} max(0, m - s_y + s_j)`, where `s` are the cosines of each row of
/// `z` (`[n, d]`) with the `C` unit prototypes (`[C, d]`), and its gradient `[n, d]`.
pub fn prototype_loss(
    z: &[f32],
    d: usize,
    labels: &[usize],
    protos: &[f32],
    w: &Weights,
) -> (f32, Vec<f32>) {
    let n = labels.len();
    let c = protos.len() / d;
    let mut dz = vec![0.0; z.len()];
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let row = &z[i * d..(i + 1) * d];
        let cos = Cosines::new(row, protos);
        let s = &cos.s;
        let mut g = vec![0.0; c];
        // Cross-entropy over the cosines.
        let mx = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = s.iter().map(|v| (v - mx).exp()).collect();
        let z_sum: f32 = e.iter().sum();
        total += w.ce * (z_sum.ln() + mx - s[y]);
        for j in 0..c {
            g[j] += w.ce * (e[j] / z_sum - if j == y { 1.0 } else { 0.0 });
        }
        if c > 1 {
            // Hardest negative.
            let (jn, sn) = (0..c).filter(|&j| j != y).map(|j| (j, s[j])).fold(
                (usize::MAX, f32::NEG_INFINITY),
                |a, b| {
                    if b.1 > a.1 { b } else { a }
                },
            );
            let h = w.margin - s[y] + sn;
            if h > 0.0 {
                total += w.hardest * h;
                g[y] -= w.hardest;
                g[jn] += w.hardest;
            }
            // Multi-margin.
            for j in (0..c).filter(|&j| j != y) {
                let h = w.margin - s[y] + s[j];
                if h > 0.0 {
                    total += w.multi * h / c as f32;
                    g[y] -= w.multi / c as f32;
                    g[j] += w.multi / c as f32;
                }
            }
        }
        g.iter_mut().for_each(|v| *v /= n as f32);
        cos.back(&g, protos, &mut dz[i * d..(i + 1) * d]);
    }
    (total / n.max(1) as f32, dz)
}

/// The entity-swap regulariser: each swapped copy (a memory example with its head or tail
/// replaced by another example's) must score at least `swap_margin` below its original on the
/// original's own prototype. Mean over pairs of `swap * max(0, m + s_swapped - s_orig)`;
/// returns the loss and the gradients for the originals' and the copies' rows.
pub fn swap_loss(
    orig: &[f32],
    swapped: &[f32],
    d: usize,
    labels: &[usize],
    protos: &[f32],
    w: &Weights,
) -> (f32, Vec<f32>, Vec<f32>) {
    let n = labels.len();
    let (mut d_orig, mut d_swap) = (vec![0.0; orig.len()], vec![0.0; swapped.len()]);
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let p = &protos[y * d..(y + 1) * d];
        let r = i * d..(i + 1) * d;
        let (co, cs) = (
            Cosines::new(&orig[r.clone()], p),
            Cosines::new(&swapped[r.clone()], p),
        );
        let h = w.swap_margin + cs.s[0] - co.s[0];
        if h > 0.0 {
            total += w.swap * h;
            let g = w.swap / n as f32;
            co.back(&[-g], p, &mut d_orig[r.clone()]);
            cs.back(&[g], p, &mut d_swap[r]);
        }
    }
    (total / n.max(1) as f32, d_orig, d_swap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::sampling::SplitMix64;

    fn randn(n: usize, seed: u64) -> Vec<f32> {
        let mut r = SplitMix64::new(seed);
        (0..n).map(|_| r.unit_f32() * 2.0 - 1.0).collect()
    }

    fn protos(c: usize, d: usize, seed: u64) -> Vec<f32> {
        randn(c * d, seed).chunks(d).flat_map(unit).collect()
    }

    /// Central differences of `f` at `z` against `grad`, relative to the gradient's size.
    fn check(f: impl Fn(&[f32]) -> f32, z: &[f32], grad: &[f32]) -> f32 {
        let scale = grad.iter().map(|g| g.abs()).fold(0.0, f32::max);
        assert!(
            scale > 1e-4,
            "the gradient is ~0: the check would pass trivially"
        );
        let mut worst = 0.0f32;
        for k in 0..z.len() {
            let (mut a, mut b) = (z.to_vec(), z.to_vec());
            a[k] += 1e-3;
            b[k] -= 1e-3;
            let fd = (f(&a) - f(&b)) / 2e-3;
            worst = worst.max((fd - grad[k]).abs() / scale);
        }
        worst
    }

    #[test]
    fn prototype_loss_gradient_matches_finite_differences() {
        let (n, d, c) = (4, 6, 5);
        let p = protos(c, d, 1);
        let labels = [0, 3, 4, 3];
        // Wide margins so every hinge is active somewhere and none sits on its kink.
        let w = Weights {
            margin: 0.9,
            ..Weights::default()
        };
        let z = randn(n * d, 2);
        let (_, g) = prototype_loss(&z, d, &labels, &p, &w);
        let err = check(|z| prototype_loss(z, d, &labels, &p, &w).0, &z, &g);
        assert!(err < 1e-2, "relative error {err}");
    }

    #[test]
    fn swap_loss_gradient_matches_finite_differences() {
        let (n, d, c) = (3, 5, 4);
        let p = protos(c, d, 3);
        let labels = [1, 2, 0];
        let w = Weights {
            swap_margin: 2.0,
            ..Weights::default()
        }; // every hinge active
        let (o, s) = (randn(n * d, 4), randn(n * d, 5));
        let (_, go, gs) = swap_loss(&o, &s, d, &labels, &p, &w);
        let eo = check(|o| swap_loss(o, &s, d, &labels, &p, &w).0, &o, &go);
        let es = check(|s| swap_loss(&o, s, d, &labels, &p, &w).0, &s, &gs);
        assert!(eo < 1e-2 && es < 1e-2, "relative errors {eo} {es}");
    }

    #[test]
    fn head_and_loss_chain_matches_finite_differences() {
        use super::super::head::Head;
        let (n, din, dout, c) = (3, 7, 4, 3);
        let mut head = Head::new(din, dout, 9);
        head.params
            .iter_mut()
            .skip(din * dout)
            .for_each(|b| *b = 0.1);
        let x = randn(n * din, 6);
        let p = protos(c, dout, 7);
        let labels = [2, 0, 1];
        let w = Weights {
            margin: 0.9,
            ..Weights::default()
        };
        let f = |params: &[f32]| {
            let h = Head {
                params: params.to_vec(),
                ..head.clone()
            };
            prototype_loss(&h.forward(&x), dout, &labels, &p, &w).0
        };
        let (_, dz) = prototype_loss(&head.forward(&x), dout, &labels, &p, &w);
        let g = head.backward(&x, &dz);
        let err = check(f, &head.params, &g);
        assert!(err < 1e-2, "relative error {err}");
    }
}
