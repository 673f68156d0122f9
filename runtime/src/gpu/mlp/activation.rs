//! The CPU reference of templates/act.cu.tera: the same f32 operations in the same order, each
//! rounded once to nearest (`mul_add` is the fused `__fmaf_rn`; `+ - * /` are IEEE), so its output
//! equals the GPU kernels' bit for bit. No cudarc: CPU-tested against the true functions here.

use unweight_codegen::space::act_math as m;
use unweight_codegen::variant::ActOp;

fn bits(b: u32) -> f32 {
    f32::from_bits(b)
}

fn pow2i(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

/// The kernels' `uw_exp`.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > bits(m::EXP_HI) {
        return f32::INFINITY;
    }
    if x < bits(m::EXP_LO) {
        return 0.0;
    }
    let magic = bits(m::ROUND_MAGIC);
    let n = x.mul_add(bits(m::LOG2E), magic) + -magic;
    let r = n.mul_add(-bits(m::LN2_HI), x);
    let r = n.mul_add(-bits(m::LN2_LO), r);
    let p = m::EXP_POLY[1..]
        .iter()
        .fold(bits(m::EXP_POLY[0]), |p, &c| p.mul_add(r, bits(c)));
    let ni = n as i32;
    let n1 = ni / 2;
    p * pow2i(n1) * pow2i(ni - n1)
}

/// The kernels' `uw_erfc`.
pub fn erfc(v: f32) -> f32 {
    let z = v.abs();
    let t = 1.0 / 0.5f32.mul_add(z, 1.0);
    let p = m::ERFC_POLY[1..]
        .iter()
        .fold(bits(m::ERFC_POLY[0]), |p, &c| p.mul_add(t, bits(c)));
    let ans = t * exp((-z).mul_add(z, p));
    if v >= 0.0 {
        ans
    } else {
        2.0 + -ans
    }
}

/// `gelu(x) = x/2 * erfc(-x/√2)` as the kernel computes it.
pub fn gelu(x: f32) -> f32 {
    let c = erfc(x * -bits(m::FRAC_1_SQRT_2));
    (0.5 * x) * c
}

/// `silu(g) * u` as the kernel computes it.
pub fn silu_mul(g: f32, u: f32) -> f32 {
    let e = exp(-g.abs());
    let d = 1.0 + e;
    let s = if g >= 0.0 { g / d } else { (g * e) / d };
    s * u
}

/// bf16 bits → f32 (exact).
pub fn bf16_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 → bf16 bits, round to nearest even; every NaN becomes 0x7fc0 (as the kernels do).
pub fn f32_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return 0x7fc0;
    }
    ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// What `act_<op>` writes for inputs `a` (gate or x) and `b` (up; ignored by gelu).
pub fn reference(op: ActOp, a: &[u16], b: &[u16]) -> Vec<u16> {
    match op {
        ActOp::SiluMul => a
            .iter()
            .zip(b)
            .map(|(&g, &u)| f32_bf16(silu_mul(bf16_f32(g), bf16_f32(u))))
            .collect(),
        ActOp::Gelu => a.iter().map(|&x| f32_bf16(gelu(bf16_f32(x)))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in bf16 steps between two finite bf16 values of the same sign class (0 when equal).
    fn ulps(a: u16, b: u16) -> u32 {
        let key = |x: u16| {
            if x & 0x8000 != 0 {
                -((x & 0x7fff) as i32)
            } else {
                x as i32
            }
        };
        key(a).abs_diff(key(b))
    }

    /// The correctly rounded bf16 of an f64 (via f32 would round twice).
    fn bf16_of(x: f64) -> u16 {
        half::bf16::from_f64(x).to_bits()
    }

    fn every_bf16() -> impl Iterator<Item = u16> {
        (0..=u16::MAX).filter(|&b| !bf16_f32(b).is_nan())
    }

    #[test]
    fn exp_is_within_two_f32_ulps_everywhere() {
        let mut worst = 0u32;
        for b in every_bf16() {
            let x = bf16_f32(b);
            let got = exp(x);
            let want = (x as f64).exp();
            if want > f32::MAX as f64 {
                assert_eq!(got, f32::INFINITY, "exp({x})");
                continue;
            }
            let want32 = want as f32;
            if want32 < f32::MIN_POSITIVE {
                // Subnormal results: absolute error under one subnormal step.
                assert!(
                    (got as f64 - want).abs() <= 1.5e-45,
                    "exp({x}) = {got}, want {want}"
                );
                continue;
            }
            let d = got.to_bits().abs_diff(want32.to_bits());
            worst = worst.max(d);
            assert!(d <= 2, "exp({x}) = {got}, want {want32} ({d} ulps)");
        }
        assert!(worst <= 2);
    }

    /// The documented bound: over every finite bf16 input, gelu's output is the correctly rounded
    /// bf16 of the true value or its neighbour (at most one bf16 ulp off).
    #[test]
    fn gelu_is_within_one_bf16_ulp_of_the_true_function() {
        let mut off = 0usize;
        for b in every_bf16() {
            let x = bf16_f32(b) as f64;
            let want = 0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2);
            let got = reference(ActOp::Gelu, &[b], &[])[0];
            if want.is_nan() {
                assert_eq!(got, 0x7fc0, "gelu({x})");
                continue;
            }
            let d = ulps(got, bf16_of(want));
            assert!(
                d <= 1,
                "gelu({x}) = {got:#06x}, want {:#06x}",
                bf16_of(want)
            );
            off += (d > 0) as usize;
        }
        // Nearly all inputs round exactly as the true function does.
        assert!(off < 200, "{off} inputs one ulp off");
    }

    /// The documented bound: at most one bf16 ulp from the true `silu(g)·u` wherever `silu(g)` is
    /// a normal f32; where it is subnormal (g < -87), an absolute error of (|g|+2)·2^-149·|u|
    /// plus one bf16 ulp.
    #[test]
    fn silu_mul_is_within_one_bf16_ulp_of_the_true_function() {
        let ups = [0x3f80u16, 0xbfc0, 0x4049, 0x3c23, 0x0001, 0x7f7f, 0x0000];
        for b in every_bf16() {
            for &u in &ups {
                let (g, uf) = (bf16_f32(b) as f64, bf16_f32(u) as f64);
                let want = g / (1.0 + (-g).exp()) * uf;
                let got = reference(ActOp::SiluMul, &[b], &[u])[0];
                if want.is_nan() {
                    assert_eq!(got, 0x7fc0, "silu({g}) * {uf}");
                    continue;
                }
                let silu = g / (1.0 + (-g).exp());
                if silu != 0.0 && silu.abs() < f32::MIN_POSITIVE as f64 {
                    // silu(g) is an f32 subnormal (g < -87): e^-|g| keeps few bits, so the bound
                    // is absolute: (|g| + 2) subnormal steps scaled by u, plus the bf16 rounding.
                    let err = (bf16_f32(got) as f64 - want).abs();
                    let ulp = (want.abs() * 2f64.powi(-7)).max(2f64.powi(-133));
                    let bound = (g.abs() + 2.0) * 2f64.powi(-149) * uf.abs() + ulp;
                    assert!(err <= bound, "silu({g}) * {uf} = {got:#06x}, want {want}");
                    continue;
                }
                let d = ulps(got, bf16_of(want));
                assert!(
                    d <= 1,
                    "silu({g}) * {uf} = {got:#06x}, want {:#06x}",
                    bf16_of(want)
                );
            }
        }
    }

    #[test]
    fn specials_follow_the_float_rules() {
        let inf = 0x7f80u16;
        let ninf = 0xff80u16;
        let nan = 0x7fc1u16;
        let r = |op, a: u16, b: u16| reference(op, &[a], &[b])[0];
        assert_eq!(r(ActOp::Gelu, inf, 0), inf);
        assert_eq!(r(ActOp::Gelu, 0x8000, 0), 0x8000); // gelu(-0) = -0
        assert_eq!(r(ActOp::Gelu, nan, 0), 0x7fc0);
        assert_eq!(r(ActOp::Gelu, ninf, 0), 0x7fc0); // -inf * 0, as PyTorch gives
        assert_eq!(r(ActOp::SiluMul, inf, 0x3f80), inf);
        assert_eq!(r(ActOp::SiluMul, 0xc2c8, 0x3f80), 0x8000); // silu(-100) rounds to -0
        assert_eq!(r(ActOp::SiluMul, 0x3f80, nan), 0x7fc0);
        assert_eq!(f32_bf16(f32::from_bits(0xffc0_0001)), 0x7fc0);
        // Round to nearest even at the halfway points.
        assert_eq!(f32_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_bf16(f32::MAX), inf); // overflow rounds to inf
    }
}
