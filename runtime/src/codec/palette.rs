//! The per-tensor palette: the 16 most frequent exponents.

/// Marks an exponent that is not in the palette in an [`index_map`].
pub const NOT_IN_PALETTE: u8 = 0xFF;

/// The 16 most frequent exponents, most frequent first (ties: smaller exponent first); when fewer
/// than 16 distinct exponents occur, the rest are the smallest unused exponent values, ascending.
pub fn choose(hist: &[u64; 256]) -> [u8; 16] {
    let mut order: Vec<u8> = (0..=255u8).filter(|&e| hist[e as usize] > 0).collect();
    order.sort_by(|&a, &b| hist[b as usize].cmp(&hist[a as usize]).then(a.cmp(&b)));
    order.truncate(16);
    let mut fill = (0..=255u8).filter(|&e| hist[e as usize] == 0);
    while order.len() < 16 {
        // 256 values and at most 15 used ones: the filter always has enough left.
        order.extend(fill.next());
    }
    let mut palette = [0u8; 16];
    palette.copy_from_slice(&order);
    palette
}

/// Exponent → palette index, or [`NOT_IN_PALETTE`]. A duplicated entry (only possible in a
/// hand-made tensor) maps to its first index.
pub fn index_map(palette: &[u8; 16]) -> [u8; 256] {
    let mut map = [NOT_IN_PALETTE; 256];
    for (i, &e) in palette.iter().enumerate().rev() {
        map[e as usize] = i as u8;
    }
    map
}
