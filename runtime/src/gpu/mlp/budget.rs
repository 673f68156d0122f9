//! Which layers of an MLP stack stay easy (palette-resident) and which hard (Huffman-resident)
//! under a device-memory budget. Pure bookkeeping, no cudarc: CPU-tested.
//!
//! Rule: as many easy layers as fit. Hard layers need the two preprocess slots (one when there is
//! a single hard layer), each as large as the largest hard layer's preprocess output, so those
//! count against the budget too. For `h` hard layers the hard ones are spread evenly, the last
//! layer first ([`spread`]), so each has the longest run of earlier layers to hide its decode
//! behind.

use std::fmt;

/// Where one layer's weights live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Palette-resident: the direct-palette rmm reads it, no preprocess.
    Easy,
    /// Huffman-resident: decoded into a preprocess slot (palette indices) before its matmuls.
    Hard,
}

impl LayerKind {
    /// `easy` / `hard`, as logs and bench rows spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Easy => "easy",
            LayerKind::Hard => "hard",
        }
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Device bytes of one layer in each residency, and what a preprocess slot needs to hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerBytes {
    /// Palette-resident bytes of all its matrices.
    pub easy: usize,
    /// Huffman-resident bytes of all its matrices.
    pub hard: usize,
    /// Preprocess output of all its matrices (a slot holds one whole layer).
    pub slot: usize,
}

/// The outcome: each layer's kind and the bytes it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetPlan {
    /// Easy or hard, per layer in stack order.
    pub kinds: Vec<LayerKind>,
    /// Resident weight bytes of all layers.
    pub weights: usize,
    /// Bytes of the preprocess slots (0 when every layer is easy).
    pub slots: usize,
}

impl BudgetPlan {
    /// Weights plus slots: what the stack holds on the device for its weights.
    pub fn total(&self) -> usize {
        self.weights + self.slots
    }

    /// How many layers are hard.
    pub fn hard_layers(&self) -> usize {
        self.kinds.iter().filter(|k| **k == LayerKind::Hard).count()
    }
}

/// Why no residency mix fits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a budget of {budget} bytes does not hold the MLP stack: all hard needs {all_hard} bytes (weights + preprocess slots)")]
pub struct OverBudget {
    /// The budget the caller gave (bytes).
    pub budget: usize,
    /// The smallest the stack can be: every layer hard, plus the slots (bytes).
    pub all_hard: usize,
}

/// Preprocess slots `hard` hard layers need.
pub fn slot_count(hard: usize) -> usize {
    hard.min(2)
}

/// The positions of `hard` hard layers among `layers`, spread evenly with the last layer hard:
/// layer `⌈(i+1)·L/h⌉ - 1` for i < h, so at most `⌈L/h⌉ - 1` easy layers precede each.
pub fn spread(layers: usize, hard: usize) -> Vec<LayerKind> {
    let mut kinds = vec![LayerKind::Easy; layers];
    for i in 0..hard.min(layers) {
        kinds[((i + 1) * layers).div_ceil(hard) - 1] = LayerKind::Hard;
    }
    kinds
}

/// Bytes of `kinds` over `layers`.
pub fn cost(layers: &[LayerBytes], kinds: &[LayerKind]) -> BudgetPlan {
    let hard: Vec<&LayerBytes> = layers
        .iter()
        .zip(kinds)
        .filter(|(_, k)| **k == LayerKind::Hard)
        .map(|(l, _)| l)
        .collect();
    let slot = hard.iter().map(|l| l.slot).max().unwrap_or(0);
    BudgetPlan {
        kinds: kinds.to_vec(),
        weights: layers
            .iter()
            .zip(kinds)
            .map(|(l, k)| match k {
                LayerKind::Easy => l.easy,
                LayerKind::Hard => l.hard,
            })
            .sum(),
        slots: slot_count(hard.len()) * slot,
    }
}

/// The mix with the fewest hard layers (evenly spread) whose weights and slots fit `budget`.
pub fn plan(layers: &[LayerBytes], budget: usize) -> Result<BudgetPlan, OverBudget> {
    for hard in 0..=layers.len() {
        let p = cost(layers, &spread(layers.len(), hard));
        if p.total() <= budget {
            return Ok(p);
        }
    }
    Err(OverBudget {
        budget,
        all_hard: cost(layers, &spread(layers.len(), layers.len())).total(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use LayerKind::{Easy as E, Hard as H};

    /// One Llama-3.1-8B MLP layer: gate, up (14336×4096) and down (4096×14336) at the design's
    /// ~12.1 (palette) and ~10.7 (Huffman) bits per weight; a slot holds their nibbles.
    fn llama_layer() -> LayerBytes {
        let w = 3 * 14336 * 4096;
        LayerBytes {
            easy: w * 121 / 80,
            hard: w * 107 / 80,
            slot: w / 2,
        }
    }

    #[test]
    fn spread_puts_hard_layers_evenly_and_last() {
        assert_eq!(spread(4, 0), [E, E, E, E]);
        assert_eq!(spread(4, 1), [E, E, E, H]);
        assert_eq!(spread(4, 2), [E, H, E, H]);
        assert_eq!(spread(6, 3), [E, H, E, H, E, H]);
        assert_eq!(spread(5, 2), [E, E, H, E, H]);
        assert_eq!(spread(3, 3), [H, H, H]);
        for l in 1..40 {
            for h in 0..=l {
                let k = spread(l, h);
                assert_eq!(k.iter().filter(|x| **x == H).count(), h, "{l} {h}");
                if h > 0 {
                    assert_eq!(k[l - 1], H);
                    // No run of easy layers longer than ⌈L/h⌉ - 1.
                    let longest = k.split(|x| *x == H).map(<[_]>::len).max().unwrap();
                    assert!(longest < l.div_ceil(h), "{l} {h}: {k:?}");
                }
            }
        }
    }

    #[test]
    fn a_roomy_budget_keeps_every_layer_easy_and_no_slots() {
        let layers = vec![llama_layer(); 32];
        let p = plan(&layers, usize::MAX).unwrap();
        assert_eq!(p.hard_layers(), 0);
        assert_eq!(p.slots, 0);
        assert_eq!(p.weights, 32 * llama_layer().easy);
        let exact = plan(&layers, 32 * llama_layer().easy).unwrap();
        assert_eq!(exact.hard_layers(), 0);
    }

    #[test]
    fn slots_are_counted_in() {
        let l = llama_layer();
        let layers = vec![l; 32];
        // One byte short of all easy: one hard layer, which needs one slot; saving it must pay
        // for that slot, so more layers go hard than the weights alone would say.
        let p = plan(&layers, 32 * l.easy - 1).unwrap();
        let per_layer_saving = l.easy - l.hard;
        let hard = p.hard_layers();
        assert!(hard > 1, "{hard}");
        assert_eq!(p.slots, slot_count(hard) * l.slot);
        assert!(p.total() < 32 * l.easy);
        // The fewest: one hard layer fewer does not fit.
        let fewer = cost(&layers, &spread(32, hard - 1));
        assert!(fewer.total() > 32 * l.easy - 1);
        assert_eq!(
            p.weights,
            32 * l.easy - hard * per_layer_saving,
            "weights of {hard} hard layers"
        );
    }

    #[test]
    fn budgets_between_pick_monotone_mixes() {
        let l = llama_layer();
        let layers = vec![l; 32];
        let all_hard = cost(&layers, &spread(32, 32)).total();
        let all_easy = 32 * l.easy;
        let mut last = 33;
        for step in 0..=20 {
            let budget = all_hard + (all_easy - all_hard) * step / 20;
            let p = plan(&layers, budget).unwrap();
            assert!(p.total() <= budget);
            assert!(p.hard_layers() <= last, "budget {budget}");
            last = p.hard_layers();
        }
        assert_eq!(last, 0);
        assert_eq!(plan(&layers, all_hard).unwrap().hard_layers(), 32);
    }

    #[test]
    fn too_small_a_budget_names_the_minimum() {
        // (With 4 layers all easy would be smaller: the slots cost more than 4 layers save.)
        let layers = vec![llama_layer(); 32];
        let all_hard = 32 * llama_layer().hard + 2 * llama_layer().slot;
        let e = plan(&layers, all_hard - 1).unwrap_err();
        assert_eq!(e.all_hard, all_hard);
        assert!(e.to_string().contains(&all_hard.to_string()), "{e}");
    }

    #[test]
    fn one_hard_layer_needs_one_slot() {
        let l = LayerBytes {
            easy: 100,
            hard: 10,
            slot: 30,
        };
        let p = plan(&[l, l, l], 100 + 100 + 10 + 30).unwrap();
        assert_eq!(p.kinds, [E, E, H]);
        assert_eq!(p.slots, 30);
    }
}
