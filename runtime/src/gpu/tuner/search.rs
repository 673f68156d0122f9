//! Plan search: coordinate descent over the plan axes from the default, and exhaustive search
//! over the same space for comparison. The timer is a closure, so the descent is unit-tested
//! with synthetic costs; on the GPU it is CUDA-event timing (`tuner::run`).
//!
//! Axes: pipeline (those of the weight's residency), tile width, ring depth (rank from the
//! deepest ring the registry kept for the tile, so every tile has a rank 0), CTA count (stream-K
//! sizing by [`choose_ctas`], or a fixed count) and spread (for the stream-K sizing). The
//! decode/matmul SM split for Huffman-resident weights is not an axis: the Huffman kernels take
//! no CTA count on this branch, so there is nothing to split yet.
//!
//! A point is resolved to a [`Candidate`] (what would run); points that resolve to the same
//! candidate are timed once, and points the kernels cannot run resolve to none and are never
//! timed.

use std::collections::HashMap;
use std::hash::Hash;

use unweight_codegen::variant::{ASource, RegistryEntry, Variant};

use crate::gpu::layout::{Geometry, Residency};
use crate::gpu::plan::{self, cta_slots, ctas_valid, rmm_tiles, ExecPipeline, Spread};

/// A move must gain more than this fraction to be taken.
pub const MIN_GAIN: f64 = 0.01;

/// What a search found.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<C> {
    pub best: C,
    pub us: f64,
    /// Distinct candidates timed.
    pub timings: usize,
}

/// Times each distinct candidate once.
struct Memo<C, F> {
    seen: HashMap<C, f64>,
    time: F,
}

impl<C: Clone + Eq + Hash, E, F: FnMut(&C) -> Result<f64, E>> Memo<C, F> {
    fn cost(&mut self, c: &C) -> Result<f64, E> {
        if let Some(&t) = self.seen.get(c) {
            return Ok(t);
        }
        let t = (self.time)(c)?;
        self.seen.insert(c.clone(), t);
        Ok(t)
    }
}

/// Cyclic coordinate descent from `start` over axes of `sizes[i]` values: each axis in turn is
/// set to its best value with the others fixed, when that gains more than [`MIN_GAIN`]; stops
/// after a pass over every axis moves nothing. `None` when `start` resolves to no candidate.
pub fn descend<C, E>(
    sizes: &[usize],
    start: &[usize],
    resolve: impl Fn(&[usize]) -> Option<C>,
    time: impl FnMut(&C) -> Result<f64, E>,
) -> Result<Option<Outcome<C>>, E>
where
    C: Clone + Eq + Hash,
{
    let mut memo = Memo {
        seen: HashMap::new(),
        time,
    };
    let mut point = start.to_vec();
    let Some(mut best) = resolve(&point) else {
        return Ok(None);
    };
    let mut us = memo.cost(&best)?;
    loop {
        let mut moved = false;
        for axis in 0..sizes.len() {
            let mut pick: Option<(usize, C, f64)> = None;
            for v in 0..sizes[axis] {
                if v == point[axis] {
                    continue;
                }
                let mut p = point.clone();
                p[axis] = v;
                let Some(c) = resolve(&p) else { continue };
                let t = memo.cost(&c)?;
                if pick.as_ref().is_none_or(|(_, _, bt)| t < *bt) {
                    pick = Some((v, c, t));
                }
            }
            if let Some((v, c, t)) = pick {
                if t < us * (1.0 - MIN_GAIN) {
                    point[axis] = v;
                    best = c;
                    us = t;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    Ok(Some(Outcome {
        best,
        us,
        timings: memo.seen.len(),
    }))
}

/// The best of an exhaustive search and every distinct candidate's time.
pub type Exhaustive<C> = (Outcome<C>, HashMap<C, f64>);

/// Every point of the space, each distinct candidate timed once; `None` when none resolves.
pub fn exhaustive<C, E>(
    sizes: &[usize],
    resolve: impl Fn(&[usize]) -> Option<C>,
    time: impl FnMut(&C) -> Result<f64, E>,
) -> Result<Option<Exhaustive<C>>, E>
where
    C: Clone + Eq + Hash,
{
    let mut memo = Memo {
        seen: HashMap::new(),
        time,
    };
    let mut best: Option<(C, f64)> = None;
    let mut point = vec![0; sizes.len()];
    if sizes.contains(&0) {
        return Ok(None);
    }
    loop {
        if let Some(c) = resolve(&point) {
            let t = memo.cost(&c)?;
            if best.as_ref().is_none_or(|(_, bt)| t < *bt) {
                best = Some((c, t));
            }
        }
        // Odometer increment over the axes.
        let mut axis = 0;
        loop {
            if axis == sizes.len() {
                let timings = memo.seen.len();
                return Ok(best.map(|(best, us)| (Outcome { best, us, timings }, memo.seen)));
            }
            point[axis] += 1;
            if point[axis] < sizes[axis] {
                break;
            }
            point[axis] = 0;
            axis += 1;
        }
    }
}

/// What one tuned call runs: a pipeline, its rmm variant and the rmm's CTA count.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub pipeline: ExecPipeline,
    pub rmm: Option<&'static RegistryEntry>,
    pub ctas: u32,
    /// The spread the CTA count came from (`Even` for fixed counts and pipelines without an rmm).
    pub spread: Spread,
}

impl Candidate {
    /// Identity: everything but the entry's address (entries compare by name).
    fn id(&self) -> (ExecPipeline, Option<&'static str>, u32, Spread) {
        (self.pipeline, self.variant_name(), self.ctas, self.spread)
    }

    pub fn variant_name(&self) -> Option<&'static str> {
        self.rmm.map(|e| e.name)
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Candidate {}

impl Hash for Candidate {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.id().hash(h)
    }
}

/// The CTA-count axis: stream-K sizing, then fixed counts in SMs (½, 1, 1½, 2, 3, 4 per SM;
/// counts past the co-resident slots run in waves, which the hardware balances across SMs).
const CTA_AXIS: [Option<(u32, u32)>; 7] = [
    None,
    Some((1, 2)),
    Some((1, 1)),
    Some((3, 2)),
    Some((2, 1)),
    Some((3, 1)),
    Some((plan::MAX_CTAS_PER_SM, 1)),
];
const SPREAD_AXIS: [Spread; 3] = [Spread::Even, Spread::WholeSplits, Spread::Persistent];

/// The search space of one weight: its geometry, residency, batch and the GPU's SM count.
pub struct Space {
    pub geometry: Geometry,
    pub m: usize,
    pub sm_count: u32,
    pub entries: &'static [RegistryEntry],
    /// The rmm form the weights feed (fragment-layout palette: RS; everything else: SS).
    pub a_src: ASource,
    pipelines: Vec<ExecPipeline>,
    tiles: Vec<u32>,
    max_ranks: usize,
}

/// The pipelines a weight of `residency` can run.
pub fn pipelines_of(residency: Residency) -> Vec<ExecPipeline> {
    ExecPipeline::ALL
        .into_iter()
        .filter(|p| p.residency() == residency)
        .collect()
}

impl Space {
    pub fn new(
        geometry: Geometry,
        residency: Residency,
        a_src: ASource,
        m: usize,
        sm_count: u32,
        entries: &'static [RegistryEntry],
    ) -> Space {
        let pipelines = pipelines_of(residency);
        let mut tiles = Vec::new();
        let mut max_ranks = 1;
        for p in &pipelines {
            let Some(fam) = p.rmm() else { continue };
            let c = plan::rmm_candidates_of(entries, fam, geometry.transposed(), a_src);
            for (_, v) in &c {
                tiles.push(v.tile_n);
                max_ranks = max_ranks.max(c.iter().filter(|(_, w)| w.tile_n == v.tile_n).count());
            }
        }
        tiles.sort();
        tiles.dedup();
        if tiles.is_empty() {
            tiles.push(0);
        }
        Space {
            geometry,
            m,
            sm_count,
            entries,
            a_src,
            pipelines,
            tiles,
            max_ranks,
        }
    }

    /// Values per axis: pipeline, tile, ring rank, CTA count, spread.
    pub fn sizes(&self) -> [usize; 5] {
        [
            self.pipelines.len(),
            self.tiles.len(),
            self.max_ranks,
            CTA_AXIS.len(),
            SPREAD_AXIS.len(),
        ]
    }

    /// The point of `pipeline`'s default plan (default variant, stream-K sizing, the plan's
    /// spread), or `None` when the weight cannot run it.
    pub fn start(&self, pipeline: ExecPipeline) -> Option<Vec<usize>> {
        let p = self.pipelines.iter().position(|&q| q == pipeline)?;
        let effective = self.effective(pipeline);
        let (tile, rank, spread) = match effective.rmm() {
            Some(fam) => {
                let t = self.geometry.transposed();
                let def = plan::default_variant_sized(
                    self.entries,
                    fam,
                    t,
                    self.a_src,
                    self.m,
                    self.geometry.n_out,
                    self.sm_count,
                )?;
                let Variant::Rmm(v) = def.variant else {
                    return None;
                };
                let mut same: Vec<u32> = plan::rmm_candidates_of(self.entries, fam, t, self.a_src)
                    .into_iter()
                    .filter(|(_, w)| w.tile_n == v.tile_n)
                    .map(|(_, w)| w.stages)
                    .collect();
                same.sort_by(|a, b| b.cmp(a));
                let tiles = rmm_tiles(def, self.geometry.n_out, self.m);
                let spread =
                    plan::default_spread(effective, def, tiles, cta_slots(def, self.sm_count));
                (
                    self.tiles.iter().position(|&t| t == v.tile_n)?,
                    same.iter().position(|&s| s == v.stages)?,
                    SPREAD_AXIS.iter().position(|&s| s == spread)?,
                )
            }
            None => (0, 0, 0),
        };
        Some(vec![p, tile, rank, 0, spread])
    }

    /// What runs when `pipeline` is asked for (the rmm fallback of `plan::plan`).
    fn effective(&self, pipeline: ExecPipeline) -> ExecPipeline {
        if pipeline.rmm().is_some() && !self.geometry.rmm_ok() {
            pipeline.fallback()
        } else {
            pipeline
        }
    }

    /// What `point` runs, or `None` when the kernels cannot run it.
    pub fn resolve(&self, point: &[usize]) -> Option<Candidate> {
        let requested = *self.pipelines.get(point[0])?;
        let g = &self.geometry;
        let pipeline = self.effective(requested);
        let Some(fam) = pipeline.rmm() else {
            return Some(Candidate {
                pipeline,
                rmm: None,
                ctas: 1,
                spread: Spread::Even,
            });
        };
        let tile = *self.tiles.get(point[1])?;
        let mut same: Vec<_> =
            plan::rmm_candidates_of(self.entries, fam, g.transposed(), self.a_src)
                .into_iter()
                .filter(|(_, v)| v.tile_n == tile)
                .collect();
        same.sort_by_key(|c| std::cmp::Reverse(c.1.stages));
        let (e, _) = *same.get(point[2])?;
        let (ctas, spread) = match CTA_AXIS[point[3]] {
            None => {
                let spread = SPREAD_AXIS[point[4]];
                (
                    plan::ctas_for(e, g.n_out, g.k, self.m, self.sm_count, spread),
                    spread,
                )
            }
            Some((num, den)) => (self.sm_count * num / den, Spread::Even),
        };
        ctas_valid(e, g.n_out, g.k, self.m, ctas).then_some(Candidate {
            pipeline,
            rmm: Some(e),
            ctas,
            spread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::plan::tests::entries;
    use std::cell::Cell;
    use unweight_codegen::variant::Operand;

    /// A separable cost over 4 axes of 6 values with its optimum at (4, 1, 5, 2).
    fn separable(p: &[usize]) -> f64 {
        let opt = [4.0, 1.0, 5.0, 2.0];
        100.0
            + p.iter()
                .zip(opt)
                .map(|(&v, o)| (v as f64 - o).powi(2) * 3.0)
                .sum::<f64>()
    }

    #[test]
    fn descent_finds_a_separable_optimum_with_few_timings() {
        let sizes = [6; 4];
        let count = Cell::new(0);
        let out = descend(
            &sizes,
            &[0, 0, 0, 0],
            |p| Some(p.to_vec()),
            |c| {
                count.set(count.get() + 1);
                Ok::<f64, ()>(separable(c))
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.best, vec![4, 1, 5, 2]);
        assert_eq!(out.us, 100.0);
        assert_eq!(out.timings, count.get());
        let (ex, seen) = exhaustive(
            &sizes,
            |p| Some(p.to_vec()),
            |c| Ok::<f64, ()>(separable(c)),
        )
        .unwrap()
        .unwrap();
        assert_eq!(ex.best, out.best);
        assert_eq!(ex.timings, 6usize.pow(4));
        assert_eq!(seen.len(), ex.timings);
        assert!(out.timings * 3 <= ex.timings, "{} timings", out.timings);
    }

    #[test]
    fn descent_stops_by_the_one_percent_rule() {
        // Axis 0 gains 0.4 % per step: below the threshold, so the descent stays at 0 there;
        // axis 1 gains 5 % at value 2 and is taken.
        let cost = |p: &Vec<usize>| 100.0 - 0.4 * p[0] as f64 - if p[1] == 2 { 5.0 } else { 0.0 };
        let out = descend(
            &[3, 3],
            &[0, 0],
            |p| Some(p.to_vec()),
            |c| Ok::<f64, ()>(cost(c)),
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.best, vec![0, 2]);
        assert_eq!(out.us, 95.0);
        // A 2 % step is taken.
        let out = descend(
            &[3],
            &[0],
            |p| Some(p.to_vec()),
            |c: &Vec<usize>| Ok::<f64, ()>(100.0 - 2.0 * c[0] as f64),
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.best, vec![2]);
    }

    #[test]
    fn invalid_points_are_never_timed() {
        // Odd values of axis 1 are invalid; the optimum (3, 3) is among them.
        let resolve = |p: &[usize]| (p[1] % 2 == 0).then(|| p.to_vec());
        let time = |c: &Vec<usize>| {
            assert!(c[1] % 2 == 0, "timed invalid {c:?}");
            Ok::<f64, ()>(separable(&[c[0], c[1], 5, 2]) - if c == &[3, 3] { 50.0 } else { 0.0 })
        };
        let out = descend(&[6, 6], &[0, 0], resolve, time).unwrap().unwrap();
        assert_eq!(out.best[1] % 2, 0);
        assert!(descend(&[6, 6], &[0, 1], resolve, time).unwrap().is_none());
        let (ex, _) = exhaustive(&[6, 6], resolve, time).unwrap().unwrap();
        assert_eq!(ex.timings, 18);
    }

    #[test]
    fn the_plan_space_starts_at_the_default_and_resolves_only_runnable_plans() {
        let g = Geometry::raw(14336, 4096, crate::codec::Orientation::Standard);
        let e = entries();
        let space = Space::new(g, Residency::Huffman, ASource::Smem, 1, 132, e);
        let sizes = space.sizes();
        assert_eq!(sizes[0], 3);
        let start = space.start(ExecPipeline::Exponent).unwrap();
        let c = space.resolve(&start).unwrap();
        assert_eq!(c.pipeline, ExecPipeline::Exponent);
        assert_eq!(
            c.rmm.unwrap().name,
            plan::default_variant_in(e, unweight_codegen::variant::Operand::Exponent, false, 1)
                .unwrap()
                .name
        );
        let (ex, seen) = exhaustive(
            &sizes,
            |p| space.resolve(p),
            |c: &Candidate| {
                let Some(r) = c.rmm else {
                    return Ok::<f64, ()>(1.0);
                };
                assert!(ctas_valid(r, 14336, 4096, 1, c.ctas), "{c:?}");
                assert_eq!(r.variant.to_string(), r.name);
                Ok(1.0)
            },
        )
        .unwrap()
        .unwrap();
        assert!(ex.timings == seen.len() && ex.timings > 10);
        // Raw residency: raw and cuBLAS; cuBLAS resolves to one candidate whatever the other axes.
        let space = Space::new(g, Residency::Raw, ASource::Smem, 64, 132, e);
        let cublas: Vec<_> = (0..space.sizes()[1])
            .filter_map(|t| space.resolve(&[1, t, 0, 0, 0]))
            .collect();
        assert!(cublas.iter().all(|c| *c == cublas[0] && c.rmm.is_none()));
    }

    #[test]
    fn fragment_palette_weights_search_the_rs_variants() {
        let g = Geometry::raw(14336, 4096, crate::codec::Orientation::Standard);
        let e = entries();
        let space = Space::new(g, Residency::Palette, ASource::Regs, 1, 132, e);
        let start = space.start(ExecPipeline::DirectPalette).unwrap();
        let c = space.resolve(&start).unwrap();
        assert_eq!(
            c.rmm.unwrap().name,
            plan::default_variant_of(e, Operand::Palette, false, ASource::Regs, 1)
                .unwrap()
                .name
        );
        let (_, seen) = exhaustive(
            &space.sizes(),
            |p| space.resolve(p),
            |c: &Candidate| {
                let r = c.rmm.expect("direct palette runs an rmm");
                assert!(
                    matches!(r.variant, Variant::Rmm(v) if v.a_src == ASource::Regs),
                    "{} is not RS",
                    r.name
                );
                Ok::<f64, ()>(1.0)
            },
        )
        .unwrap()
        .unwrap();
        assert!(seen.len() > 4);
    }

    #[test]
    fn cta_validity() {
        let e = entries()
            .iter()
            .find(|e| e.name == "rmm_palette_n8_s6_nt")
            .unwrap();
        // 14336 x 4096 at m = 1: 112 tiles of 64 k blocks = 7168 units, max_kb 256: the cap
        // needs 28 CTAs; fewer CTAs than tiles is fine (ranges span several tiles).
        assert!(ctas_valid(e, 14336, 4096, 1, 112));
        assert!(ctas_valid(e, 14336, 4096, 1, 264));
        assert!(ctas_valid(e, 14336, 4096, 1, 28));
        assert!(!ctas_valid(e, 14336, 4096, 1, 27));
        assert!(!ctas_valid(e, 14336, 4096, 1, 0));
        assert!(!ctas_valid(e, 14336, 4096, 1, 112 * 64 + 1));
    }
}
