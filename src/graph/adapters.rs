//! Bottleneck adapters (Houlsby et al. 2019, as ACM and DMEA place them): small trainable
//! modules added to a sub-layer's output, `f + sum_i pi_i * A_i(f)` with
//! `A_i(f) = up_i(relu(down_i f + b_down_i)) + b_up_i` and `pi = softmax(coefs)` over the modules
//! at that site. The sites: every encoder layer's self-attention and feed-forward, every
//! decoder layer's self-attention and feed-forward (**ours**: no adapter after cross-attention;
//! ACM's GPT-2 has none to copy). ReLU as the non-linearity (**ours**).

use crate::model::config::T5Config;
use crate::tasks::sampling::SplitMix64;

/// One module's parameters (or their gradients): `down` `[d, r]`, `up` `[r, d]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    pub down: Vec<f32>,
    pub down_bias: Vec<f32>,
    pub up: Vec<f32>,
    pub up_bias: Vec<f32>,
}

impl Adapter {
    pub fn zeros(d: usize, r: usize) -> Self {
        Self {
            down: vec![0.0; d * r],
            down_bias: vec![0.0; r],
            up: vec![0.0; r * d],
            up_bias: vec![0.0; d],
        }
    }

    /// Near the identity, as Houlsby initialises: `down` uniform in +-1/sqrt(d), `up` zero, so the
    /// module adds nothing until trained.
    pub fn new(d: usize, r: usize, rng: &mut SplitMix64) -> Self {
        let bound = 1.0 / (d as f32).sqrt();
        let down = (0..d * r)
            .map(|_| (2.0 * rng.unit_f32() - 1.0) * bound)
            .collect();
        Self {
            down,
            ..Self::zeros(d, r)
        }
    }

    /// The four tensors in order, with their names (PEFT-style file layout) and shapes.
    pub fn tensors(&self, d: usize, r: usize) -> [(&'static str, &[f32], [usize; 2]); 4] {
        [
            ("down.weight", &self.down, [d, r]),
            ("down.bias", &self.down_bias, [1, r]),
            ("up.weight", &self.up, [r, d]),
            ("up.bias", &self.up_bias, [1, d]),
        ]
    }

    pub fn parameters(&self) -> usize {
        self.down.len() + self.down_bias.len() + self.up.len() + self.up_bias.len()
    }

    /// The four tensors in [`Self::tensors`] order, to update in place.
    pub fn tensors_mut(&mut self) -> [&mut Vec<f32>; 4] {
        [
            &mut self.down,
            &mut self.down_bias,
            &mut self.up,
            &mut self.up_bias,
        ]
    }
}

/// The modules at one site and their mixing coefficients (softmax over modules).
#[derive(Clone, Debug, PartialEq)]
pub struct Mixture {
    pub modules: Vec<Adapter>,
    pub coefs: Vec<f32>,
}

impl Mixture {
    /// `softmax(coefs)`.
    pub fn weights(&self) -> Vec<f32> {
        let max = self.coefs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = self.coefs.iter().map(|c| (c - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.iter().map(|x| x / sum).collect()
    }
}

/// Adapters at every site of the model (or, with the same shape, their gradients).
#[derive(Clone, Debug, PartialEq)]
pub struct Adapters {
    pub d: usize,
    /// The bottleneck width r.
    pub bottleneck: usize,
    pub sites: Vec<Mixture>,
}

/// Where a site sits in its layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sublayer {
    SelfAttention,
    FeedForward,
}

impl Adapters {
    /// Sites in order: encoder layers (self-attention, feed-forward), then decoder layers.
    pub fn site_count(c: &T5Config) -> usize {
        2 * (c.num_layers + c.num_decoder_layers)
    }

    /// The index of a site.
    pub fn site(c: &T5Config, decoder: bool, layer: usize, sub: Sublayer) -> usize {
        let base = if decoder { 2 * c.num_layers } else { 0 };
        base + 2 * layer + (sub == Sublayer::FeedForward) as usize
    }

    /// "enc 3 ff" for site `s` of `sites`, the inverse of `site` where the encoder and the decoder
    /// have as many layers (every T5 we load; a run record keeps the sites, not the config).
    pub fn site_label(s: usize, sites: usize) -> String {
        let half = sites / 2;
        let (stack, rel) = if s < half {
            ("enc", s)
        } else {
            ("dec", s - half)
        };
        let sub = if rel % 2 == 0 { "attn" } else { "ff" };
        format!("{stack} {} {sub}", rel / 2)
    }

    /// `modules` freshly initialised modules at every site, equal coefficients.
    pub fn new(c: &T5Config, bottleneck: usize, modules: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let d = c.d_model;
        let sites = (0..Self::site_count(c))
            .map(|_| Mixture {
                modules: (0..modules)
                    .map(|_| Adapter::new(d, bottleneck, &mut rng))
                    .collect(),
                coefs: vec![0.0; modules],
            })
            .collect();
        Self {
            d,
            bottleneck,
            sites,
        }
    }

    pub fn parameters(&self) -> usize {
        self.sites
            .iter()
            .map(|m| m.coefs.len() + m.modules.iter().map(Adapter::parameters).sum::<usize>())
            .sum()
    }

    /// Every tensor's shape checked against the model: the first mismatch, named.
    pub fn check(&self, c: &T5Config) -> Result<(), String> {
        let (d, r) = (c.d_model, self.bottleneck);
        if self.d != d {
            return Err(format!(
                "adapters are for width {}, the model's is {d}",
                self.d
            ));
        }
        if self.sites.len() != Self::site_count(c) {
            return Err(format!(
                "{} adapter sites, the model has {}",
                self.sites.len(),
                Self::site_count(c)
            ));
        }
        for (s, m) in self.sites.iter().enumerate() {
            if m.coefs.len() != m.modules.len() {
                return Err(format!(
                    "site {s}: {} coefficients for {} modules",
                    m.coefs.len(),
                    m.modules.len()
                ));
            }
            for (i, a) in m.modules.iter().enumerate() {
                for (name, v, shape) in a.tensors(d, r) {
                    if v.len() != shape[0] * shape[1] {
                        return Err(format!(
                            "site {s}, module {i}: {name} has {} values, expected {shape:?}",
                            v.len()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

use super::ops::{Mat, Ops};
use crate::kernels::KernelError;

/// One module on the device; its gradients' offsets in [`DeviceAdapters::grads`].
struct DeviceAdapter<O: Ops> {
    params: [O::Buf; 4],
    grads: [usize; 4],
}

struct DeviceMixture<O: Ops> {
    modules: Vec<DeviceAdapter<O>>,
    /// softmax(coefs), on the host: each module's output is scaled by its weight.
    weights: Vec<f32>,
    /// Offset of `[modules]` d loss / d weight in [`DeviceAdapters::grads`].
    weight_grads: usize,
}

/// The adapters of [`Adapters`] on a backend.
pub struct DeviceAdapters<O: Ops> {
    d: usize,
    r: usize,
    sites: Vec<DeviceMixture<O>>,
    /// Every gradient in one buffer (module tensors in [`Adapter::tensors`] order, then each
    /// site's weights), so that a step reads them back at once.
    grads: O::Buf,
    grads_len: usize,
}

/// What backward needs of one site: the sub-layer output `f` and, per module, the bottleneck's
/// pre-activation `z`, activation `a` and output `out`.
pub struct AdapterTape<O: Ops> {
    site: usize,
    f: O::Buf,
    modules: Vec<[O::Buf; 3]>,
}

impl<O: Ops> DeviceAdapters<O> {
    pub fn upload(ops: &O, a: &Adapters) -> Result<Self, KernelError> {
        let (d, r) = (a.d, a.bottleneck);
        let mut at = 0usize;
        let mut next = |n: usize| {
            at += n;
            at - n
        };
        let sites = a
            .sites
            .iter()
            .map(|m| {
                let modules = m
                    .modules
                    .iter()
                    .map(|ad| {
                        let t = ad.tensors(d, r);
                        let up = |i: usize| ops.upload("adapter", t[i].1);
                        Ok(DeviceAdapter {
                            params: [up(0)?, up(1)?, up(2)?, up(3)?],
                            grads: [0, 1, 2, 3].map(|i| next(t[i].1.len())),
                        })
                    })
                    .collect::<Result<_, KernelError>>()?;
                Ok(DeviceMixture {
                    modules,
                    weights: m.weights(),
                    weight_grads: next(m.modules.len()),
                })
            })
            .collect::<Result<_, KernelError>>()?;
        Ok(Self {
            d,
            r,
            sites,
            grads: ops.zeros("adapter gradients", at.max(1)),
            grads_len: at,
        })
    }

    fn active(&self, site: usize) -> Option<&DeviceMixture<O>> {
        self.sites.get(site).filter(|m| !m.modules.is_empty())
    }

    /// Whether `site` has any module.
    pub fn has(&self, site: usize) -> bool {
        self.active(site).is_some()
    }

    /// `h += sum_i pi_i A_i(f)` for the sub-layer output `f` (`[rows, d]`) at `site`.
    pub fn forward(
        &self,
        o: &O,
        site: usize,
        f: O::Buf,
        h: &O::Buf,
        rows: usize,
    ) -> AdapterTape<O> {
        let (d, r) = (self.d, self.r);
        let Some(m) = self.active(site) else {
            return AdapterTape {
                site,
                f,
                modules: vec![],
            };
        };
        let modules = m
            .modules
            .iter()
            .zip(&m.weights)
            .map(|(ad, &pi)| {
                let [down, down_bias, up, up_bias] = &ad.params;
                let z = o.zeros("adapter z", rows * r);
                o.gemm(
                    Mat::new(&f, d),
                    false,
                    Mat::new(down, r),
                    false,
                    Mat::new(&z, r),
                    (rows, d, r),
                    false,
                );
                o.add_bias(&z, down_bias, rows, r);
                let a = o.zeros("adapter activation", rows * r);
                o.relu(&z, &a, rows * r);
                let out = o.zeros("adapter out", rows * d);
                o.gemm(
                    Mat::new(&a, r),
                    false,
                    Mat::new(up, d),
                    false,
                    Mat::new(&out, d),
                    (rows, r, d),
                    false,
                );
                o.add_bias(&out, up_bias, rows, d);
                o.scale_add(h, 1.0, &out, pi, rows * d);
                [z, a, out]
            })
            .collect();
        AdapterTape { site, f, modules }
    }

    /// From `dh` (the gradient of `h` after the sub-layer), the modules' and mixture weights'
    /// gradients into their buffers, and (`input_grad`) the gradient of the sub-layer output
    /// `f`: `None` where the site has no adapters (then it is `dh` itself) or it is not asked for.
    pub fn backward(
        &self,
        o: &O,
        tape: &AdapterTape<O>,
        dh: &O::Buf,
        rows: usize,
        input_grad: bool,
    ) -> Option<O::Buf> {
        let (d, r) = (self.d, self.r);
        let m = self.active(tape.site)?;
        let df = input_grad.then(|| o.copy(dh, rows * d));
        for (i, ((ad, &pi), [z, a, out])) in m
            .modules
            .iter()
            .zip(&m.weights)
            .zip(&tape.modules)
            .enumerate()
        {
            let [down, _, up, _] = &ad.params;
            let [g_down, g_down_bias, g_up, g_up_bias] = ad.grads;
            let g = |at: usize, stride: usize| Mat::new(&self.grads, stride).col(at);
            o.dot(dh, out, rows * d, &self.grads, m.weight_grads + i);
            let d_out = o.zeros("d adapter out", rows * d);
            o.scale_add(&d_out, 0.0, dh, pi, rows * d);
            o.gemm(
                Mat::new(a, r),
                true,
                Mat::new(&d_out, d),
                false,
                g(g_up, d),
                (r, rows, d),
                false,
            );
            o.column_sums(&d_out, g(g_up_bias, d), rows, d);
            let dz = o.zeros("d adapter z", rows * r);
            o.gemm(
                Mat::new(&d_out, d),
                false,
                Mat::new(up, d),
                true,
                Mat::new(&dz, r),
                (rows, d, r),
                false,
            );
            o.relu_backward(z, &dz, rows * r);
            o.gemm(
                Mat::new(&tape.f, d),
                true,
                Mat::new(&dz, r),
                false,
                g(g_down, r),
                (d, rows, r),
                false,
            );
            o.column_sums(&dz, g(g_down_bias, r), rows, r);
            if let Some(df) = &df {
                o.gemm(
                    Mat::new(&dz, r),
                    false,
                    Mat::new(down, r),
                    true,
                    Mat::new(df, d),
                    (rows, r, d),
                    true,
                );
            }
        }
        df
    }

    /// A copy of the gradients of the last backward, to read with [`GradientCopy::read`] (so
    /// no borrow of the model is held while they come back).
    pub fn gradient_copy(&self, o: &O) -> GradientCopy<O> {
        let sites = self
            .sites
            .iter()
            .map(|m| {
                let modules = m.modules.iter().map(|ad| ad.grads).collect();
                (modules, m.weight_grads, m.weights.clone())
            })
            .collect();
        GradientCopy {
            d: self.d,
            r: self.r,
            buf: o.copy(&self.grads, self.grads_len.max(1)),
            len: self.grads_len,
            sites,
        }
    }
}

/// The adapters' gradients, copied out of the model in one buffer.
pub struct GradientCopy<O: Ops> {
    d: usize,
    r: usize,
    buf: O::Buf,
    len: usize,
    /// Per site: each module's four tensors' offsets, the weights' gradient offset, the weights.
    #[allow(clippy::type_complexity)]
    sites: Vec<(Vec<[usize; 4]>, usize, Vec<f32>)>,
}

impl<O: Ops> GradientCopy<O> {
    /// In the shape of [`Adapters`]; the coefficients' gradients through the softmax.
    pub async fn read(self, o: &O) -> Result<Adapters, KernelError> {
        let all = o.read(self.buf, self.len.max(1)).await?;
        let sizes = [self.d * self.r, self.r, self.r * self.d, self.d];
        let take = |at: usize, n: usize| all[at..at + n].to_vec();
        let sites = self
            .sites
            .into_iter()
            .map(|(modules, w_at, weights)| {
                let modules = modules
                    .iter()
                    .map(|g| Adapter {
                        down: take(g[0], sizes[0]),
                        down_bias: take(g[1], sizes[1]),
                        up: take(g[2], sizes[2]),
                        up_bias: take(g[3], sizes[3]),
                    })
                    .collect();
                let dpi = take(w_at, weights.len());
                // Softmax backward: d coef_j = pi_j (d pi_j - sum_i pi_i d pi_i).
                let mean: f32 = weights.iter().zip(&dpi).map(|(p, g)| p * g).sum();
                let coefs = weights
                    .iter()
                    .zip(&dpi)
                    .map(|(p, g)| p * (g - mean))
                    .collect();
                Mixture { modules, coefs }
            })
            .collect();
        Ok(Adapters {
            d: self.d,
            bottleneck: self.r,
            sites,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_label_names_the_site_it_indexes() {
        let c = T5Config::flan_t5_small();
        let sites = Adapters::site_count(&c);
        assert_eq!(sites, 32);
        for (decoder, stack) in [(false, "enc"), (true, "dec")] {
            for layer in 0..c.num_layers {
                for (sub, name) in [
                    (Sublayer::SelfAttention, "attn"),
                    (Sublayer::FeedForward, "ff"),
                ] {
                    let s = Adapters::site(&c, decoder, layer, sub);
                    assert_eq!(
                        Adapters::site_label(s, sites),
                        format!("{stack} {layer} {name}")
                    );
                }
            }
        }
    }
}
