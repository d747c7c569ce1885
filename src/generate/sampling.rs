//! Token choice on the CPU: the same rules as the GPU sampler (shaders/sample.wgsl; settings in
//! `Sampling`), for the CPU fallback and for settings that the GPU sampler does not apply
//! (repetition penalty), where the logits are read back.

use crate::gpu::ops::sample::Sampling;

/// HF's repetition penalty: each distinct token in `context` has its logit divided by `penalty`
/// when positive, multiplied when negative.
pub fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &id in context {
        if let (Some(l), Some(s)) = (logits.get_mut(id as usize), seen.get_mut(id as usize))
            && !*s
        {
            *s = true;
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// OpenAI's frequency and presence penalties over the tokens generated so far (`output`):
/// `logit[j] -= count[j] * frequency + (count[j] > 0) * presence`.
pub fn apply_frequency_penalties(logits: &mut [f32], output: &[u32], frequency: f32, presence: f32) {
    if frequency == 0.0 && presence == 0.0 {
        return;
    }
    let mut counts = std::collections::HashMap::<u32, u32>::new();
    for &id in output {
        *counts.entry(id).or_default() += 1;
    }
    for (id, n) in counts {
        if let Some(l) = logits.get_mut(id as usize) {
            *l -= n as f32 * frequency + presence;
        }
    }
}

/// log Σ exp(logits), in f64 (−∞ for none finite).
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let m = logits.iter().copied().filter(|l| !l.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    let sum: f64 = logits.iter().filter(|l| !l.is_nan()).map(|&l| f64::from(l - m).exp()).sum();
    (f64::from(m) + sum.ln()) as f32
}

/// The indices of the `k` largest logits, largest first (ties: lower index first; −∞ and NaN
/// never listed).
pub fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut ids: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize] > f32::NEG_INFINITY).collect();
    let order = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    // The k best first (a step's logprobs: k ≤ 20 of a whole vocabulary), then only they sorted.
    if ids.len() > k {
        ids.select_nth_unstable_by(k - 1, order);
        ids.truncate(k);
    }
    ids.sort_by(order);
    ids
}

/// The first index of the largest logit (NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() && !l.is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Draws a token: temperature, then min-p, top-k (ties at the k-th all kept) and top-p filters,
/// then the inverse CDF in vocabulary order at `u` ∈ [0, 1), as the GPU sampler does.
/// `None` settings are greedy.
pub fn sample(logits: &[f32], sampling: Option<&Sampling>, u: f32) -> u32 {
    let Some(s) = sampling else { return argmax(logits) };
    if logits.is_empty() {
        return 0;
    }
    let z: Vec<f32> = logits.iter().map(|&x| if x.is_nan() { f32::NEG_INFINITY } else { x / s.temperature }).collect();
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut cut = if s.min_p > 0.0 { m + s.min_p.ln() } else { f32::NEG_INFINITY };
    if s.top_k > 0 && (s.top_k as usize) < z.len() {
        let mut values = z.clone();
        let (_, kth, _) = values.select_nth_unstable_by(s.top_k as usize - 1, |a, b| b.total_cmp(a));
        cut = cut.max(*kth);
    }
    if s.top_p < 1.0 {
        let mut kept: Vec<f32> = z.iter().copied().filter(|&v| v >= cut).collect();
        kept.sort_unstable_by(|a, b| b.total_cmp(a));
        let total: f32 = kept.iter().map(|v| (v - m).exp()).sum();
        let mut acc = 0.0;
        for v in kept {
            acc += (v - m).exp();
            if acc >= s.top_p * total {
                cut = cut.max(v);
                break;
            }
        }
    }
    let weight = |v: f32| if v >= cut { (v - m).exp() } else { 0.0 };
    let total: f32 = z.iter().map(|&v| weight(v)).sum();
    let target = u * total;
    let mut run = 0.0;
    let mut last_kept = argmax(logits);
    for (i, &v) in z.iter().enumerate() {
        let w = weight(v);
        if w > 0.0 {
            run += w;
            last_kept = i as u32;
            if target < run {
                return i as u32;
            }
        }
    }
    last_kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn matches_the_exact_reference_on_random_logits() {
        let mut rng = SeededRng::new(7);
        let settings = [
            Sampling { temperature: 0.7, top_k: 0, top_p: 1.0, min_p: 0.0 },
            Sampling { temperature: 1.0, top_k: 5, top_p: 1.0, min_p: 0.0 },
            Sampling { temperature: 0.9, top_k: 0, top_p: 0.8, min_p: 0.0 },
            Sampling { temperature: 1.3, top_k: 40, top_p: 0.95, min_p: 0.05 },
        ];
        let mut checked = 0;
        for s in settings {
            for _ in 0..50 {
                let logits: Vec<f32> = rng.signed_unit_vec(97).iter().map(|v| v * 6.0).collect();
                let u = rng.next_unit();
                let (keep, pick, margin) = s.reference(&logits, f64::from(u));
                let got = sample(&logits, Some(&s), u) as usize;
                assert!(keep[got], "{s:?}: drew {got}, which the reference filters out");
                if margin > 1e-4 {
                    assert_eq!(got, pick, "{s:?} u={u}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 150, "only {checked} draws were far from a CDF boundary");
    }

    #[test]
    fn top_k_is_the_head_of_the_full_order() {
        let mut rng = SeededRng::new(3);
        for n in [1, 7, 97, 1000] {
            // Rounded so that ties occur; some −∞ (masked) and a NaN never listed.
            let mut logits: Vec<f32> = rng.signed_unit_vec(n).iter().map(|v| (v * 8.0).round()).collect();
            logits[0] = f32::NEG_INFINITY;
            logits[n / 2] = if n > 2 { f32::NAN } else { logits[n / 2] };
            let mut full: Vec<u32> = (0..n as u32).filter(|&i| logits[i as usize] > f32::NEG_INFINITY).collect();
            full.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
            for k in [1, 2, 5, 20, n + 3] {
                assert_eq!(top_k(&logits, k), full[..k.min(full.len())], "n {n} k {k}");
            }
        }
    }

    #[test]
    fn greedy_and_penalty() {
        assert_eq!(sample(&[0.5, 2.0, 2.0, -1.0], None, 0.3), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.0]), 1);
        let mut l = vec![2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1, 0, 9], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }
}
