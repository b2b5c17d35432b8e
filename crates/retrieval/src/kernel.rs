//! The one inner-product arithmetic every dense score goes through: [`dot`], with a fixed
//! order of operations, and [`tile`], which computes the same sums for several (query, row)
//! pairs at once in registers. Flat and HNSW search, `score`, L2 offsets and padding all call
//! these, so a pair gets the same bits whatever path scored it.

/// [`dot`] of each of `Q` queries with each of `R` rows: the same operations in the same order
/// for every pair (so the same bits), interleaved so that the sums do not wait on each other
/// and each loaded chunk of a row serves every query.
#[inline(always)]
pub(crate) fn tile<const R: usize, const Q: usize>(
    qs: [&[f32]; Q],
    rows: [&[f32]; R],
) -> [[f32; R]; Q] {
    let dim = qs[0].len();
    let chunks = dim / 8;
    let split = chunks * 8;
    let qc = qs.map(|q| &q.as_chunks::<8>().0[..chunks]);
    let rc = rows.map(|r| &r.as_chunks::<8>().0[..chunks]);
    let mut acc = [[[0f32; 8]; R]; Q];
    sums(&qc, &rc, &mut acc);
    std::array::from_fn(|qi| {
        std::array::from_fn(|ri| {
            let a = &mut acc[qi][ri];
            for (i, (x, y)) in qs[qi][split..].iter().zip(&rows[ri][split..]).enumerate() {
                a[i] = madd(a[i], *x, *y);
            }
            reduce(a)
        })
    })
}

/// The eight running sums of every (query, row) pair over whole chunks: lane `l` of pair
/// `(i, j)` adds `q_i[8c + l] * r_j[8c + l]` for c = 0, 1, … in order, exactly as [`dot`].
#[inline(always)]
fn sums<const R: usize, const Q: usize>(
    qc: &[&[[f32; 8]]; Q],
    rc: &[&[[f32; 8]]; R],
    acc: &mut [[[f32; 8]; R]; Q],
) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    {
        // SAFETY: AVX is enabled at compile time (this cfg); every slice holds the same number
        // of whole chunks (the caller cut them to `chunks`), so each load reads 8 in-bounds
        // floats.
        unsafe { sums_avx(qc, rc, acc) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
    for c in 0..qc[0].len() {
        let x: [[f32; 8]; Q] = std::array::from_fn(|i| qc[i][c]);
        let y: [[f32; 8]; R] = std::array::from_fn(|j| rc[j][c]);
        for i in 0..Q {
            for j in 0..R {
                for l in 0..8 {
                    acc[i][j][l] = madd(acc[i][j][l], x[i][l], y[j][l]);
                }
            }
        }
    }
}

/// [`sums`] with the running sums in AVX registers: per lane the same [`madd`] as the portable
/// loop (a fused multiply-add where the build has FMA, else a multiply then an add).
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
#[inline(always)]
unsafe fn sums_avx<const R: usize, const Q: usize>(
    qc: &[&[[f32; 8]]; Q],
    rc: &[&[[f32; 8]]; R],
    acc: &mut [[[f32; 8]; R]; Q],
) {
    use std::arch::x86_64::{__m256, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps};
    let chunks = qc[0].len();
    debug_assert!(qc.iter().all(|q| q.len() == chunks) && rc.iter().all(|r| r.len() == chunks));
    // SAFETY (whole body): see `sums`; pointers come from slices of `chunks` chunks.
    unsafe {
        let mut a: [[__m256; R]; Q] = [[_mm256_setzero_ps(); R]; Q];
        for c in 0..chunks {
            let mut y: [__m256; R] = [_mm256_setzero_ps(); R];
            for j in 0..R {
                y[j] = _mm256_loadu_ps(rc[j].as_ptr().add(c).cast());
            }
            for i in 0..Q {
                let x = _mm256_loadu_ps(qc[i].as_ptr().add(c).cast());
                for j in 0..R {
                    a[i][j] = madd_avx(a[i][j], x, y[j]);
                }
            }
        }
        for i in 0..Q {
            for j in 0..R {
                _mm256_storeu_ps(acc[i][j].as_mut_ptr(), a[i][j]);
            }
        }
    }
}

/// `acc + x·y` in eight lanes, as [`madd`] does it lane by lane.
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
#[inline(always)]
unsafe fn madd_avx(
    acc: std::arch::x86_64::__m256,
    x: std::arch::x86_64::__m256,
    y: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m256 {
    // SAFETY: register arithmetic only; AVX (and FMA where used) are enabled at compile time.
    unsafe {
        #[cfg(target_feature = "fma")]
        {
            std::arch::x86_64::_mm256_fmadd_ps(x, y, acc)
        }
        #[cfg(not(target_feature = "fma"))]
        {
            std::arch::x86_64::_mm256_add_ps(acc, std::arch::x86_64::_mm256_mul_ps(x, y))
        }
    }
}

/// `acc + x·y`: one fused multiply-add (one rounding) where the build targets FMA, which
/// doubles the arithmetic a core does per cycle; otherwise a multiply and an add. Every dense
/// score goes through it, so the choice is the same for all of them in a build.
#[inline(always)]
fn madd(acc: f32, x: f32, y: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        x.mul_add(y, acc)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        acc + x * y
    }
}

/// The fixed final sum of [`dot`]'s eight lanes.
#[inline]
fn reduce(acc: &[f32; 8]) -> f32 {
    let s4 = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

/// Inner product with a fixed order of operations: eight running sums (lane `i` takes
/// elements `i, i+8, …`, each added with [`madd`]), the tail into lane 0.. in order, then the
/// lanes added pairwise.
/// Every score in this module goes through here.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let (ac, at) = a.as_chunks::<8>();
    let (bc, bt) = b.as_chunks::<8>();
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..8 {
            acc[i] = madd(acc[i], x[i], y[i]);
        }
    }
    for (i, (x, y)) in at.iter().zip(bt).enumerate() {
        acc[i] = madd(acc[i], *x, *y);
    }
    reduce(&acc)
}
