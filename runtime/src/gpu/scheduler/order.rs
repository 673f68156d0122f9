//! The order in which an MLP stack forward enqueues its work: when each hard layer's decode is
//! issued (on the second stream, into which of the two preprocess slots) and which layers' matmuls
//! may share the GPU with a decode (and so leave SMs to it). Pure bookkeeping: CPU-tested.
//!
//! Rules:
//! - Hard layer `i` (in layer order among the hard ones) decodes into slot `i % 2`; it may start
//!   only once the matmuls of hard layer `i - 2`, the slot's previous user, are enqueued (the
//!   executor orders them on the GPU with the slot's event).
//! - Its decode is issued `window` layers before its own compute (earlier than that would only
//!   take SMs from layers that do not need the decode yet), or when the slot frees, if later.
//! - Within a layer the matrices decode in the order they are consumed (gate, up, down; fc1,
//!   fc2) and the consumer waits per matrix, so the down projection, consumed last, has the
//!   longest runway: its decode may still run while gate, up and the activation compute.
//! - A layer *overlaps* a decode when some hard layer's decode is issued at or before it and
//!   consumed at or after it; those layers' matmuls leave the decode its SMs.

use crate::gpu::mlp::budget::LayerKind;

/// One enqueue step of a stack forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Decode all matrices of hard layer `layer` into preprocess slot `slot`.
    Decode {
        /// The hard layer.
        layer: usize,
        /// The preprocess slot it decodes into.
        slot: usize,
    },
    /// The matmuls (and activation) of `layer`; `slot` holds its decoded weights when it is hard.
    Compute {
        /// The layer.
        layer: usize,
        /// The slot holding its decode (hard layers only).
        slot: Option<usize>,
    },
}

/// The enqueue order of a forward over `kinds` and, per layer, whether it overlaps a decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The steps, in enqueue order.
    pub steps: Vec<Step>,
    /// Per layer: whether a decode runs beside its compute (its matmuls then leave SMs free).
    pub overlaps: Vec<bool>,
}

/// Preprocess slots the schedule alternates.
pub const SLOTS: usize = 2;

/// The overlapped order: decodes on the second stream, `window` layers ahead (see the module
/// rules). `window = 0` decodes each hard layer right before its compute (still on the second
/// stream, so only its own matrices overlap each other).
pub fn overlapped(kinds: &[LayerKind], window: usize) -> Order {
    let hard: Vec<usize> = (0..kinds.len())
        .filter(|&l| kinds[l] == LayerKind::Hard)
        .collect();
    let mut steps = Vec::with_capacity(kinds.len() + hard.len());
    let mut overlaps = vec![false; kinds.len()];
    let (mut next, mut computed) = (0usize, 0usize);
    for (l, kind) in kinds.iter().enumerate() {
        // Issue every decode whose slot is free and whose window has opened.
        while next < hard.len() && next < computed + SLOTS && hard[next] <= l + window {
            steps.push(Step::Decode {
                layer: hard[next],
                slot: next % SLOTS,
            });
            for o in &mut overlaps[l..=hard[next]] {
                *o = true;
            }
            next += 1;
        }
        let slot = (*kind == LayerKind::Hard).then_some(computed % SLOTS);
        steps.push(Step::Compute { layer: l, slot });
        if slot.is_some() {
            computed += 1;
        }
    }
    Order { steps, overlaps }
}

/// The order without overlap (one stream): each hard layer decodes into slot 0 right before its
/// compute, and no layer shares the GPU.
pub fn serial(kinds: &[LayerKind]) -> Order {
    let mut steps = Vec::new();
    for (l, kind) in kinds.iter().enumerate() {
        if *kind == LayerKind::Hard {
            steps.push(Step::Decode { layer: l, slot: 0 });
            steps.push(Step::Compute {
                layer: l,
                slot: Some(0),
            });
        } else {
            steps.push(Step::Compute {
                layer: l,
                slot: None,
            });
        }
    }
    Order {
        steps,
        overlaps: vec![false; kinds.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::mlp::budget::spread;
    use LayerKind::{Easy as E, Hard as H};

    /// Checks the rules on an order: every hard layer decoded once, before its compute, into a
    /// slot nobody still needs; every layer computed once, in order; easy layers use no slot.
    fn check(kinds: &[LayerKind], o: &Order, slots: usize) {
        let mut occupant: Vec<Option<usize>> = vec![None; slots];
        let mut decoded = vec![None; kinds.len()];
        let mut computed = Vec::new();
        for s in &o.steps {
            match *s {
                Step::Decode { layer, slot } => {
                    assert_eq!(kinds[layer], H, "{o:?}");
                    assert!(decoded[layer].is_none(), "decoded twice: {o:?}");
                    assert!(occupant[slot].is_none(), "slot {slot} still in use: {o:?}");
                    occupant[slot] = Some(layer);
                    decoded[layer] = Some(slot);
                }
                Step::Compute { layer, slot } => {
                    assert_eq!(layer, computed.len(), "out of order: {o:?}");
                    computed.push(layer);
                    match kinds[layer] {
                        E => assert_eq!(slot, None),
                        H => {
                            assert_eq!(slot, decoded[layer], "{o:?}");
                            let s = slot.unwrap();
                            assert_eq!(occupant[s], Some(layer));
                            occupant[s] = None;
                        }
                    }
                }
            }
        }
        assert_eq!(computed.len(), kinds.len());
        assert!(kinds
            .iter()
            .zip(&decoded)
            .all(|(k, d)| (*k == H) == d.is_some()));
    }

    #[test]
    fn every_mix_follows_the_rules() {
        for layers in 1..12 {
            for hard in 0..=layers {
                let kinds = spread(layers, hard);
                for window in [0, 1, 2, 100] {
                    check(&kinds, &overlapped(&kinds, window), SLOTS);
                }
                check(&kinds, &serial(&kinds), 1);
            }
        }
        // Irregular mixes too.
        for kinds in [vec![H, H, E, H, E, E, H, H], vec![H, E, E, E, E, H]] {
            for window in [0, 1, 3] {
                check(&kinds, &overlapped(&kinds, window), SLOTS);
            }
        }
    }

    #[test]
    fn all_hard_decodes_the_next_layer_while_one_computes() {
        let o = overlapped(&[H, H, H, H], 1);
        use Step::*;
        assert_eq!(
            o.steps,
            [
                Decode { layer: 0, slot: 0 },
                Decode { layer: 1, slot: 1 },
                Compute {
                    layer: 0,
                    slot: Some(0)
                },
                Decode { layer: 2, slot: 0 },
                Compute {
                    layer: 1,
                    slot: Some(1)
                },
                Decode { layer: 3, slot: 1 },
                Compute {
                    layer: 2,
                    slot: Some(0)
                },
                Compute {
                    layer: 3,
                    slot: Some(1)
                },
            ]
        );
        assert_eq!(o.overlaps, [true; 4]);
    }

    #[test]
    fn the_window_bounds_how_early_a_decode_starts() {
        use Step::*;
        let kinds = [E, E, E, H, E, E, E, H];
        let o = overlapped(&kinds, 1);
        let pos = |s: Step| o.steps.iter().position(|x| *x == s).unwrap();
        // Issued right before layer 2 (one layer ahead), not at the start.
        assert_eq!(
            pos(Decode { layer: 3, slot: 0 }) + 1,
            pos(Compute {
                layer: 2,
                slot: None
            })
        );
        assert_eq!(
            pos(Decode { layer: 7, slot: 1 }) + 1,
            pos(Compute {
                layer: 6,
                slot: None
            })
        );
        assert_eq!(
            o.overlaps,
            [false, false, true, true, false, false, true, true]
        );
        // A wide window issues both at once, at the start: both slots free.
        let wide = overlapped(&kinds, 100);
        assert_eq!(
            wide.steps[..2],
            [Decode { layer: 3, slot: 0 }, Decode { layer: 7, slot: 1 }]
        );
        assert_eq!(wide.overlaps, [true; 8]);
    }

    #[test]
    fn a_third_hard_layer_waits_for_the_first_slot() {
        use Step::*;
        let o = overlapped(&[H, H, H], 100);
        let pos = |s: Step| o.steps.iter().position(|x| *x == s).unwrap();
        assert!(
            pos(Decode { layer: 2, slot: 0 })
                > pos(Compute {
                    layer: 0,
                    slot: Some(0)
                })
        );
    }

    #[test]
    fn serial_has_no_overlap() {
        let o = serial(&[E, H, E]);
        assert_eq!(o.overlaps, [false; 3]);
        assert_eq!(o.steps.len(), 4);
    }
}
