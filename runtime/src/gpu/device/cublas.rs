//! cuBLAS BF16 GEMM for `y = x·Wᵀ` (bf16 in/out, f32 compute): the full-decode pipeline's
//! matmul and the reference every benchmark row is measured beside.
//!
//! cuBLAS is column-major. Row-major `y[m][n_out]` is column-major `Yc (n_out × m)`, row-major
//! `x[m][k]` is `Xc (k × m)`, so `Yc = op(A) · Xc` with A the weight as stored:
//! standard `W[n_out][k]` is column-major `k × n_out` → `op = T`, `lda = k`;
//! transposed `Wᵀ[k][n_out]` is column-major `n_out × k` → `op = N`, `lda = n_out`.

use std::sync::{Arc, Mutex};

use cudarc::cublas::{result, sys, CudaBlas};
use cudarc::driver::CudaStream;

use crate::codec::Orientation;

use crate::gpu::error::{CublasContext, GpuError};

/// The arguments of one `cublasGemmEx` call (A = weight, B = x, C = y).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmParams {
    pub transa: bool,
    pub transb: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub lda: i32,
    pub ldb: i32,
    pub ldc: i32,
}

/// `y[m][n_out] = x[m][k] · W[n_out][k]ᵀ` with the weight stored in `orientation`.
pub fn gemm_params(
    orientation: Orientation,
    m: usize,
    n_out: usize,
    k: usize,
) -> Result<GemmParams, GpuError> {
    let int = |v: usize, what: &str| {
        i32::try_from(v).map_err(|_| GpuError::TooLarge {
            what: format!("cuBLAS {what}"),
            value: v,
            limit: i32::MAX as usize,
        })
    };
    let (m, n_out, k) = (int(m, "m")?, int(n_out, "n_out")?, int(k, "k")?);
    let (transa, lda) = match orientation {
        Orientation::Standard => (true, k),
        Orientation::Transposed => (false, n_out),
    };
    Ok(GemmParams {
        transa,
        transb: false,
        m: n_out,
        n: m,
        k,
        lda,
        ldb: k,
        ldc: n_out,
    })
}

/// A cuBLAS handle moved to whichever stream each call uses.
pub struct Blas {
    handle: Mutex<CudaBlas>,
}

impl Blas {
    pub fn new(stream: Arc<CudaStream>) -> Result<Self, GpuError> {
        // SAFETY: only probes whether the shared library can be opened.
        if !unsafe { sys::is_culib_present() } {
            return Err(GpuError::LibraryMissing {
                library: "libcublas (cuBLAS 13)",
                detail: "needed for full decode and the reference",
            });
        }
        let blas = CudaBlas::new(stream).ctx(|| "creating a handle".into())?;
        Ok(Blas {
            handle: Mutex::new(blas),
        })
    }

    /// Enqueues `C = op(A)·B` on `stream` with bf16 matrices at raw device addresses.
    ///
    /// # Safety
    /// `a`, `b`, `c` must be live device allocations holding the matrices `p` describes.
    pub unsafe fn gemm_bf16(
        &self,
        stream: &CudaStream,
        p: &GemmParams,
        a: u64,
        b: u64,
        c: u64,
    ) -> Result<(), GpuError> {
        let blas = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        stream
            .context()
            .bind_to_thread()
            .map_err(|source| GpuError::Driver {
                context: "binding the context".into(),
                source,
            })?;
        let op = |t: bool| {
            if t {
                sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the handle is locked and bound to `stream`; alpha/beta outlive the call; the
        // caller vouches that a, b and c hold the matrices `p` describes (this fn's contract).
        unsafe {
            result::set_stream(*blas.handle(), stream.cu_stream() as _)
                .ctx(|| "cublasSetStream".into())?;
            result::gemm_ex(
                *blas.handle(),
                op(p.transa),
                op(p.transb),
                p.m,
                p.n,
                p.k,
                &alpha as *const f32 as *const _,
                a as *const _,
                sys::cudaDataType_t::CUDA_R_16BF,
                p.lda,
                b as *const _,
                sys::cudaDataType_t::CUDA_R_16BF,
                p.ldb,
                &beta as *const f32 as *const _,
                c as *mut _,
                sys::cudaDataType_t::CUDA_R_16BF,
                p.ldc,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .ctx(|| format!("gemm {p:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column-major `C = op(A)·op(B)` exactly as BLAS defines it, in f64.
    fn colmajor_gemm(p: &GemmParams, a: &[f64], b: &[f64]) -> Vec<f64> {
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let at = |i: usize, l: usize| {
            if p.transa {
                a[l + i * p.lda as usize]
            } else {
                a[i + l * p.lda as usize]
            }
        };
        let bt = |l: usize, j: usize| {
            if p.transb {
                b[j + l * p.ldb as usize]
            } else {
                b[l + j * p.ldb as usize]
            }
        };
        let mut c = vec![0.0; p.ldc as usize * n];
        for j in 0..n {
            for i in 0..m {
                c[i + j * p.ldc as usize] = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            }
        }
        c
    }

    #[test]
    fn both_orientations_compute_x_times_w_transposed() {
        let (m, n_out, k) = (3, 5, 4);
        let w: Vec<f64> = (0..n_out * k).map(|i| (i as f64 * 0.37).sin()).collect(); // [n_out][k]
        let x: Vec<f64> = (0..m * k).map(|i| (i as f64 * 1.3).cos()).collect(); // [m][k]
        let mut want = vec![0.0; m * n_out];
        for r in 0..m {
            for c in 0..n_out {
                want[r * n_out + c] = (0..k).map(|l| x[r * k + l] * w[c * k + l]).sum();
            }
        }
        let wt: Vec<f64> = (0..k * n_out)
            .map(|i| w[(i % n_out) * k + i / n_out])
            .collect(); // [k][n_out]
        for (o, a) in [(Orientation::Standard, &w), (Orientation::Transposed, &wt)] {
            let p = gemm_params(o, m, n_out, k).unwrap();
            let got = colmajor_gemm(&p, a, &x);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() < 1e-12, "{o:?}: {got:?} vs {want:?}");
            }
        }
    }
}
