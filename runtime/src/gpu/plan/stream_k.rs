//! Stream-K sizing of an rmm launch: output tiles, how many CTAs share their k blocks, and the
//! partials and flags those CTAs exchange.

use unweight_codegen::abi::{BK, BM, RMM_CONSUMER_THREADS};
use unweight_codegen::space::TILE_N;
use unweight_codegen::variant::{RegistryEntry, Variant};

use crate::gpu::jit::registry;

/// Output tiles of an rmm launch: `(n_out / BM) × ceil(m / tile_n)`.
pub fn rmm_tiles(e: &RegistryEntry, n_out: usize, m: usize) -> u32 {
    match e.variant {
        Variant::Rmm(v) => tiles_of(v.tile_n, n_out, m),
        Variant::Huff(_) | Variant::Act(_) | Variant::Relayout(_) => 0,
    }
}

fn tiles_of(tile_n: u32, n_out: usize, m: usize) -> u32 {
    ((n_out / BM as usize) * m.div_ceil(tile_n as usize)) as u32
}

/// Stream-K workspace bytes and flag bytes a launch of `e` with `ctas` CTAs needs: one f32
/// `[tile_n / 2][RMM_CONSUMER_THREADS]` partial and one u32 flag per CTA, none when every CTA holds
/// whole tiles.
pub fn split_buffers(e: &RegistryEntry, n_out: usize, m: usize, ctas: u32) -> (usize, usize) {
    let Variant::Rmm(v) = e.variant else {
        return (0, 0);
    };
    partial_bytes(v.tile_n, tiles_of(v.tile_n, n_out, m), ctas)
}

fn partial_bytes(tile_n: u32, tiles: u32, ctas: u32) -> (usize, usize) {
    if ctas == tiles {
        return (0, 0);
    }
    let ctas = ctas as usize;
    (
        ctas * (tile_n as usize / 2) * RMM_CONSUMER_THREADS as usize * 4,
        ctas * 4,
    )
}

/// Upper bound of [`split_buffers`] for a weight `n_out × k` over every tile width, batch up to
/// `max_m` and every `max_kb` cap of the registry, with the CTA counts [`choose_ctas`] picks on
/// `sm_count` SMs.
pub fn split_buffers_bound(n_out: usize, k: usize, max_m: usize, sm_count: u32) -> (usize, usize) {
    split_buffers_bound_in(registry::VARIANTS, n_out, k, max_m, sm_count)
}

/// [`split_buffers_bound`] over `entries`.
pub fn split_buffers_bound_in(
    entries: &[RegistryEntry],
    n_out: usize,
    k: usize,
    max_m: usize,
    sm_count: u32,
) -> (usize, usize) {
    let kblocks = (k / BK as usize) as u32;
    let mut caps: Vec<Option<u32>> = entries.iter().map(|e| e.max_kb).collect();
    caps.sort();
    caps.dedup();
    // CTA slots per SM of the registry's variants (two for the RS pairs).
    let mut per_sm: Vec<u32> = entries.iter().map(|e| cta_slots(e, 1)).collect();
    per_sm.sort();
    per_sm.dedup();
    let mut bound = (0, 0);
    for tile_n in TILE_N {
        for m in 1..=max_m {
            let tiles = tiles_of(tile_n, n_out, m);
            for &cap in &caps {
                for &slots in &per_sm {
                    for spread in [Spread::Even, Spread::WholeSplits, Spread::Persistent] {
                        let (w, f) = partial_bytes(
                            tile_n,
                            tiles,
                            choose_ctas(kblocks, tiles, sm_count * slots, cap, spread),
                        );
                        bound = (bound.0.max(w), bound.1.max(f));
                    }
                }
            }
            // The largest fixed count a tuned plan may launch (several waves per SM).
            let units = tiles as u64 * kblocks as u64;
            let most = (sm_count as u64 * MAX_CTAS_PER_SM as u64).min(units) as u32;
            if most > tiles {
                let (w, f) = partial_bytes(tile_n, tiles, most);
                bound = (bound.0.max(w), bound.1.max(f));
            }
        }
    }
    bound
}

/// The most CTAs per SM a plan launches: the tuner's largest fixed count. Beyond one wave the
/// hardware hands each SM its next CTA as one finishes, which evens out SMs that stream at
/// different speeds (a range still waits only for lower-numbered CTAs, which start first).
pub const MAX_CTAS_PER_SM: u32 = 4;

/// CTA slots of `e` on `sm_count` SMs: its co-resident CTAs per SM (two for the RS pairs) times
/// the SMs, what [`choose_ctas`] spreads a launch over.
pub fn cta_slots(e: &RegistryEntry, sm_count: u32) -> u32 {
    match e.variant {
        Variant::Rmm(v) => sm_count * v.ctas_per_sm.max(1),
        Variant::Huff(_) | Variant::Act(_) | Variant::Relayout(_) => sm_count,
    }
}

/// k blocks a CTA takes at least when the tiles are spread over more CTAs (the ring fill amortized).
const MIN_KBLOCKS_PER_CTA: u64 = 4;

/// The kernel's schedule of `tiles × kblocks` units on `ctas` CTAs (templates/rmm.cu.tera
/// `range_begin`, `segments`): `tiles / ctas` data-parallel waves, CTA `c` taking whole tiles
/// `c, c + ctas, …`, then the tail's units dealt out to every CTA in contiguous stream-K ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// k blocks per tile.
    pub kblocks: u64,
    /// Output tiles ([`rmm_tiles`]).
    pub tiles: u64,
    /// CTAs of the launch (`gridDim.x`).
    pub ctas: u64,
}

impl Schedule {
    /// Whole tiles each CTA takes before its stream-K range.
    pub fn dp_waves(&self) -> u64 {
        self.tiles / self.ctas.max(1)
    }

    /// Units of the stream-K tail.
    fn tail_units(&self) -> u64 {
        (self.tiles - self.dp_waves() * self.ctas) * self.kblocks
    }

    /// CTA `c`'s stream-K range `[begin, end)` in units.
    pub fn range(&self, c: u64) -> (u64, u64) {
        let base = self.dp_waves() * self.ctas * self.kblocks;
        let at = |c: u64| base + self.tail_units() * c / self.ctas;
        (at(c), at(c + 1))
    }

    /// The most k blocks one CTA runs (data-parallel tiles and its stream-K range).
    pub fn max_kblocks(&self) -> u64 {
        self.dp_waves() * self.kblocks + self.tail_units().div_ceil(self.ctas.max(1))
    }

    /// Whether the kernel accepts it: at least one CTA, none without work (a CTA with no
    /// data-parallel tile needs a unit of the tail), none over `max_kb` k blocks.
    pub fn valid(&self, max_kb: Option<u32>) -> bool {
        let units = self.tiles * self.kblocks;
        self.ctas >= 1
            && self.ctas <= units.max(1)
            && max_kb.is_none_or(|cap| self.max_kblocks() <= cap as u64)
    }
}

/// Tiles that fill the GPU run one CTA per tile (whole waves of data-parallel CTAs) unless the
/// last wave would be less than this many tenths full; then one wave of persistent CTAs takes
/// the data-parallel waves and shares the tail. H200, 2026-12-04 (`…-8b-s10b.md`, `…-70b-s10b.md`
/// against s9c and s4, µs one CTA per tile → persistent): last wave 39% full (14336×4096,
/// m = 1024, 448 tiles) raw 225.5 → 197.4, palette 255.0 → 238.4; 58% (28672×8192, m = 2048)
/// raw 1730.8 → 1615.4; but 70% (224 tiles) raw 101.6 → 102.9 and 191.4 → 202.8, 79% (896)
/// raw 765.9 → 803.0, 94% (256) 714.8 → 843.3: a wave that is mostly full costs less than the
/// tail's hand-offs and the persistent CTAs' lost overlap. Same run (`…-spread-*.md`, persistent
/// / one CTA per tile): 39% full, 14336×4096 m = 1024 palette 0.92, raw 0.92, 28672×8192 m = 512
/// palette 0.92; 58%, 28672×8192 m = 2048 palette 0.95, raw 0.99; 70% (224 tiles) palette
/// 0.91–0.99, raw 1.02–1.07; 79% (896) 0.96–1.04; 88% (8192×28672 raw, 512 tiles of 128) 1.10.
const LAST_WAVE_TENTHS: u64 = 6;

/// How [`choose_ctas`] spreads the units over CTAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Spread {
    /// Tiles that do not fill the GPU: one CTA per SM, ranges starting mid-tile (the compressed
    /// pipelines, bound by their consumers' rebuild, gain from every SM: 14336×4096, m = 1,
    /// 112 → 132 CTAs, palette 47.0 → 45.8 µs on the H100). Tiles that fill it: one CTA per
    /// tile, or, where the last wave would be mostly empty ([`LAST_WAVE_TENTHS`]), one wave of
    /// persistent CTAs (more where `max_kb` needs them) that run the data-parallel waves and
    /// share the tail.
    Even,
    /// Each tile split into the same whole number of ranges, or whole tiles one per CTA when
    /// they fill the GPU: raw at small batch, bound by its 2-D TMA boxes' DRAM traffic, lost
    /// from more concurrent streams (same case: 44.8 → 48.3 µs).
    WholeSplits,
    /// As `Even`, but tiles that fill the GPU always run on persistent CTAs, however full the
    /// last wave of one CTA per tile would be (for the tuner and same-run comparisons).
    Persistent,
}

/// CTAs of an rmm launch over `tiles × kblocks` units on `slots` co-resident CTA slots.
///
/// Tiles that fill the slots: `WholeSplits` takes one CTA per tile, `Even` too unless the last
/// wave would be less than [`LAST_WAVE_TENTHS`] full, else the fewest whole waves of `slots`
/// persistent CTAs whose work fits `max_kb`. Fewer tiles: up to one CTA per slot
/// as `spread` says (but at least `MIN_KBLOCKS_PER_CTA` k blocks each), never fewer CTAs than
/// tiles. Never more than units (none empty), and enough that no CTA exceeds `max_kb`.
pub fn choose_ctas(
    kblocks: u32,
    tiles: u32,
    slots: u32,
    max_kb: Option<u32>,
    spread: Spread,
) -> u32 {
    let units = tiles as u64 * kblocks as u64;
    if units == 0 {
        return tiles.max(1);
    }
    let (tiles, slots) = (tiles as u64, slots.max(1) as u64);
    let cap = max_kb.map(|c| c.max(1) as u64);
    let ctas = match spread {
        Spread::Even | Spread::Persistent if tiles >= slots => {
            let fits = |ctas| {
                Schedule {
                    kblocks: kblocks as u64,
                    tiles,
                    ctas,
                }
                .valid(max_kb)
            };
            let last_wave = tiles % slots;
            let mostly_full = last_wave == 0 || last_wave * 10 >= slots * LAST_WAVE_TENTHS;
            if spread == Spread::Even && mostly_full && fits(tiles) {
                tiles
            } else {
                let mut ctas = slots;
                while ctas < units && !fits(ctas) {
                    ctas += slots;
                }
                ctas
            }
        }
        _ => {
            let mut ctas = tiles;
            if tiles < slots {
                let fill = slots.min(units / MIN_KBLOCKS_PER_CTA);
                ctas = ctas.max(match spread {
                    Spread::Even | Spread::Persistent => fill,
                    Spread::WholeSplits => fill / tiles * tiles,
                });
            }
            cap.map_or(ctas, |c| ctas.max(units.div_ceil(c)))
        }
    };
    ctas.min(units) as u32
}

/// [`choose_ctas`] for `e` on `n_out × k` at batch `m` on `sm_count` SMs.
pub fn ctas_for(
    e: &RegistryEntry,
    n_out: usize,
    k: usize,
    m: usize,
    sm_count: u32,
    spread: Spread,
) -> u32 {
    choose_ctas(
        (k / BK as usize) as u32,
        rmm_tiles(e, n_out, m),
        cta_slots(e, sm_count),
        e.max_kb,
        spread,
    )
}

/// Whether `ctas` CTAs can run `e` on `n_out × k` at batch `m` ([`Schedule::valid`]): any count
/// from one to one per unit is correct, within the variant's `max_kb` (the kernel traps
/// otherwise).
pub fn ctas_valid(e: &RegistryEntry, n_out: usize, k: usize, m: usize, ctas: u32) -> bool {
    Schedule {
        kblocks: (k / BK as usize) as u64,
        tiles: rmm_tiles(e, n_out, m) as u64,
        ctas: ctas as u64,
    }
    .valid(e.max_kb)
}

#[cfg(test)]
mod tests {
    use super::super::tests::entries;
    use super::*;
    use unweight_codegen::variant::Operand;

    /// The kernel's segments of CTA `c` in processing order, `(tile, kb0, kb1)`
    /// (templates/rmm.cu.tera `segments`, `Segs::at`): its data-parallel tiles, then its
    /// stream-K range from its last tile down to its first.
    fn segments(s: &Schedule, c: u64) -> Vec<(u64, u64, u64)> {
        let kb = s.kblocks;
        let mut segs: Vec<_> = (0..s.dp_waves()).map(|i| (c + i * s.ctas, 0, kb)).collect();
        let (a, b) = s.range(c);
        if b > a {
            let (t0, t1) = (a / kb, (b - 1) / kb);
            segs.extend((t0..=t1).rev().map(|t| {
                let kb0 = if t == t0 { a - t0 * kb } else { 0 };
                let kb1 = if t == t1 { b - t1 * kb } else { kb };
                (t, kb0, kb1)
            }));
        }
        segs
    }

    /// The schedule's invariants for `ctas` CTAs (what the kernel's hand-off relies on): every
    /// CTA has work; every unit in exactly one segment; at most one hand-off per CTA (one `ws`
    /// slot), its first stream-K segment, before any wait; each tile stored by exactly one owner,
    /// whose waits (the lower CTAs whose non-empty range ends inside the tile, the kernel's wait
    /// loop) are all hand-offs of that tile; data-parallel waves in lockstep (wave i of CTA c is
    /// tile i·C + c).
    fn check_schedule(kb: u64, tiles: u64, ctas: u32) {
        let s = Schedule {
            kblocks: kb,
            tiles,
            ctas: ctas as u64,
        };
        let units = tiles * kb;
        let what = format!("kb {kb} tiles {tiles} CTAs {ctas}");
        let mut covered = vec![0u32; units as usize];
        let mut owners = vec![0u32; tiles as usize];
        let mut handoffs = std::collections::HashMap::new();
        let dp = s.dp_waves() as usize;
        for c in 0..s.ctas {
            let segs = segments(&s, c);
            assert!(!segs.is_empty(), "{what}: CTA {c} has no work");
            let total: u64 = segs.iter().map(|&(_, a, b)| b - a).sum();
            assert!(total <= s.max_kblocks(), "{what}: CTA {c} over max_kblocks");
            for (i, &(t, kb0, kb1)) in segs.iter().enumerate() {
                assert!(
                    kb0 < kb1 && kb1 <= kb,
                    "{what}: CTA {c}: segment {t} {kb0}..{kb1}"
                );
                if i < dp {
                    assert_eq!(t, i as u64 * s.ctas + c, "{what}: wave {i} of CTA {c}");
                }
                for u in t * kb + kb0..t * kb + kb1 {
                    covered[u as usize] += 1;
                }
                if kb1 < kb {
                    assert_eq!(i, dp, "{what}: CTA {c} hands off late");
                    handoffs.insert(c, t);
                } else {
                    owners[t as usize] += 1;
                    if kb0 > 0 {
                        assert_eq!(
                            i,
                            segs.len() - 1,
                            "{what}: CTA {c}: an owner that waits is last"
                        );
                    }
                }
            }
        }
        assert!(covered.iter().all(|&n| n == 1), "{what}: coverage");
        assert!(owners.iter().all(|&n| n == 1), "{what}: owners");
        // The owner's wait loop: lower CTAs whose range ends inside the tile, nearest first,
        // skipping empty ranges; each one it waits on hands off that tile, and every hand-off
        // of the tile is waited on.
        let mut waited = std::collections::HashSet::new();
        for c in 0..s.ctas {
            let segs = segments(&s, c);
            let &(t, kb0, kb1) = segs.last().unwrap();
            if kb0 == 0 || kb1 < kb {
                continue;
            }
            let mut p = c;
            while p > 0 && s.range(p - 1).1 > t * kb {
                p -= 1;
                let (a, b) = s.range(p);
                if a == b {
                    continue;
                }
                assert_eq!(handoffs.get(&p), Some(&t), "{what}: CTA {c} waits on {p}");
                waited.insert(p);
            }
        }
        assert_eq!(
            waited.len(),
            handoffs.len(),
            "{what}: a hand-off nobody adds"
        );
    }

    #[test]
    fn ctas_fill_the_gpu_and_respect_limits() {
        // 14336 x 4096 at m = 1: 112 tiles of 64 k blocks spread over all 132 SMs.
        assert_eq!(choose_ctas(64, 112, 132, Some(256), Spread::Even), 132);
        assert_eq!(choose_ctas(64, 112, 132, None, Spread::WholeSplits), 112);
        // 4096 x 14336: 32 tiles of 224 k blocks.
        assert_eq!(choose_ctas(224, 32, 132, None, Spread::Even), 132);
        assert_eq!(choose_ctas(224, 32, 132, None, Spread::WholeSplits), 128);
        // Tiles that fill the GPU with a mostly empty last wave (m = 1024, 448 tiles: 3.4
        // waves): one wave of persistent CTAs, 3 data-parallel tiles each and a 52-tile stream-K
        // tail; one CTA per tile when whole splits are asked for.
        assert_eq!(choose_ctas(64, 448, 132, Some(256), Spread::Even), 132);
        assert_eq!(choose_ctas(64, 448, 132, None, Spread::WholeSplits), 448);
        // A mostly full last wave (m = 2048, 896 tiles: 6.8 waves, 224 tiles: 1.7): one CTA per
        // tile.
        assert_eq!(choose_ctas(64, 896, 132, Some(256), Spread::Even), 896);
        assert_eq!(choose_ctas(64, 224, 132, Some(256), Spread::Even), 224);
        // Persistent CTAs whatever the last wave: one wave where the cap allows.
        assert_eq!(choose_ctas(64, 896, 132, None, Spread::Persistent), 132);
        assert_eq!(
            choose_ctas(64, 224, 132, Some(256), Spread::Persistent),
            132
        );
        assert_eq!(
            choose_ctas(64, 112, 132, Some(256), Spread::Persistent),
            132
        );
        // 1792 tiles (13.6 waves) under a cap of 256 k blocks: 13 tiles per CTA exceed it, so
        // four waves of CTAs (3 tiles and 26 tail k blocks each).
        assert_eq!(choose_ctas(64, 1792, 132, Some(256), Spread::Even), 528);
        // One CTA per tile over the cap (448 k blocks a tile): persistent waves instead.
        assert_eq!(choose_ctas(448, 256, 132, Some(256), Spread::Even), 528);
        // One tile, one k block: one CTA.
        assert_eq!(choose_ctas(1, 1, 132, None, Spread::Even), 1);
        // Small k: at least 4 k blocks per CTA.
        assert_eq!(choose_ctas(8, 1, 132, None, Spread::Even), 2);
        // A MAX_KB cap forces more CTAs even when tiles fill the GPU: whole waves when spread
        // evenly (100352 units / (64 × 132) = 11.9 waves), else the cap alone.
        assert_eq!(choose_ctas(224, 448, 132, Some(64), Spread::Even), 12 * 132);
        assert_eq!(
            choose_ctas(224, 448, 132, Some(64), Spread::WholeSplits),
            1568
        );
        // The kernel's preconditions (it traps otherwise): every range non-empty and within the
        // cap; and the hand-off's invariants for the counts chosen.
        for kb in 1..300u32 {
            for tiles in [1u32, 3, 32, 112, 131, 132, 200, 450] {
                for (cap, spread) in [None, Some(16), Some(64)].into_iter().flat_map(|c| {
                    [Spread::Even, Spread::WholeSplits, Spread::Persistent].map(|s| (c, s))
                }) {
                    let ctas = choose_ctas(kb, tiles, 132, cap, spread);
                    if tiles < 132 || spread == Spread::WholeSplits {
                        assert!(ctas >= tiles, "kb {kb} tiles {tiles}: {ctas} CTAs");
                    } else {
                        assert!(
                            ctas == tiles || ctas % 132 == 0,
                            "kb {kb} tiles {tiles}: waves"
                        );
                    }
                    let s = Schedule {
                        kblocks: kb as u64,
                        tiles: tiles as u64,
                        ctas: ctas as u64,
                    };
                    assert!(s.valid(cap), "kb {kb} tiles {tiles}: {ctas} CTAs");
                    if kb % 37 == 1 || kb == 64 {
                        check_schedule(kb as u64, tiles as u64, ctas);
                    }
                }
            }
        }
    }

    #[test]
    fn any_cta_count_keeps_the_hand_off_invariants() {
        // Counts the tuner may fix: fewer CTAs than tiles (ranges over many tiles, mid-tile at
        // both ends), as many, more, one per unit.
        for (kb, tiles) in [(5u64, 8u64), (64, 448), (3, 7), (1, 9), (13, 3)] {
            for ctas in [1, 2, 3, 5, 7, 8, 9, 17, 131, 132, 133] {
                if (ctas as u64) <= kb * tiles {
                    check_schedule(kb, tiles, ctas);
                }
            }
        }
    }

    #[test]
    fn split_buffer_bound_covers_every_variant() {
        let e = entries();
        for (n_out, k) in [(128, 64), (4096, 14336), (14336, 4096), (128, 64 * 1000)] {
            let (wb, fb) = split_buffers_bound_in(e, n_out, k, 1024, 132);
            for m in [1, 7, 200, 1024] {
                for v in e.iter().filter(|v| matches!(v.variant, Variant::Rmm(_))) {
                    let ctas = choose_ctas(
                        (k / 64) as u32,
                        rmm_tiles(v, n_out, m),
                        132,
                        v.max_kb,
                        Spread::Even,
                    );
                    let (w, f) = split_buffers(v, n_out, m, ctas);
                    assert!(w <= wb && f <= fb, "{} {n_out} m={m}", v.name);
                    // The tuner's largest fixed count (waves of CTAs per SM) fits too.
                    let units = rmm_tiles(v, n_out, m) as u64 * (k / 64) as u64;
                    let most = (132 * MAX_CTAS_PER_SM as u64).min(units) as u32;
                    let (w, f) = split_buffers(v, n_out, m, most);
                    assert!(w <= wb && f <= fb, "{} {n_out} m={m} {most} CTAs", v.name);
                }
            }
        }
        // Whole tiles need no workspace; a spread tile does.
        assert_eq!(split_buffers(&e[0], 14336, 1, 112), (0, 0));
        assert!(split_buffers(&e[0], 14336, 1, 132).0 > 0);
    }

    #[test]
    fn max_kb_comes_from_the_registry_and_matches_the_source() {
        // The registry carries each variant's limit; its kernel declares the same `MAX_KB`.
        for e in registry::VARIANTS
            .iter()
            .filter(|e| matches!(e.variant, Variant::Rmm(_)))
        {
            let declared = format!("MAX_KB = {};", e.max_kb.unwrap_or(0));
            assert!(
                e.source.contains(&declared),
                "{}: source lacks `{declared}`",
                e.name
            );
            let palette = matches!(e.variant, Variant::Rmm(v) if v.operand == Operand::Palette);
            assert_eq!(e.max_kb.is_some(), palette, "{}", e.name);
        }
    }
}
