//! AVX2 + FMA block kernels (x86-64-v3).
//!
//! Every function here is `unsafe` because it reads raw block pointers; the bodies are one unsafe
//! scope each (the intrinsics themselves need it too).

#![allow(unsafe_op_in_unsafe_fn)]
// Kernels index several per-(row, token) arrays by the same loop counters on purpose.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

/// One block format: load a block and return its 32 weights as four 8-lane vectors.
pub trait Block {
    const BYTES: usize;
    /// # Safety
    /// `p` must point at `BYTES` readable bytes.
    unsafe fn load(p: *const u8) -> [__m256; 4];
}

/// Broadcasts the f16 scale at `p`. Goes through a general register and `movd` on purpose: an
/// insert into a vector register would merge with (and wait for) its previous contents, chaining
/// every block's dequantization to the previous accumulator.
#[inline(always)]
unsafe fn scale(p: *const u8) -> __m256 {
    let bits = (p as *const u16).read_unaligned() as i32;
    _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

/// Splits 16 bytes of packed nibbles into elements 0..16 (low) and 16..32 (high).
#[inline(always)]
unsafe fn unpack_nibbles(p: *const u8) -> (__m128i, __m128i) {
    let bytes = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let mask = _mm_set1_epi8(15);
    let lo = _mm_and_si128(bytes, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    (lo, hi)
}

/// Widens 16 unsigned bytes to two vectors of 8 i32.
#[inline(always)]
unsafe fn widen_u8(v: __m128i) -> (__m256i, __m256i) {
    (
        _mm256_cvtepu8_epi32(v),
        _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)),
    )
}

#[inline(always)]
unsafe fn nibble_ints(p: *const u8) -> [__m256i; 4] {
    let (lo, hi) = unsafe { unpack_nibbles(p) };
    let (a, b) = unsafe { widen_u8(lo) };
    let (c, d) = unsafe { widen_u8(hi) };
    [a, b, c, d]
}

pub struct F32;
impl Block for F32 {
    const BYTES: usize = 128;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [__m256; 4] {
        let p = p as *const f32;
        std::array::from_fn(|i| unsafe { _mm256_loadu_ps(p.add(8 * i)) })
    }
}

pub struct Q4_0;
impl Block for Q4_0 {
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [__m256; 4] {
        let d = unsafe { scale(p) };
        let q = unsafe { nibble_ints(p.add(2)) };
        let eight = _mm256_set1_epi32(8);
        std::array::from_fn(|g| unsafe {
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[g], eight)), d)
        })
    }
}

pub struct Q4_1;
impl Block for Q4_1 {
    const BYTES: usize = 20;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [__m256; 4] {
        let d = unsafe { scale(p) };
        let m = unsafe { scale(p.add(2)) };
        let q = unsafe { nibble_ints(p.add(4)) };
        std::array::from_fn(|g| unsafe { _mm256_fmadd_ps(_mm256_cvtepi32_ps(q[g]), d, m) })
    }
}

pub struct Q5_0;
impl Block for Q5_0 {
    const BYTES: usize = 22;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [__m256; 4] {
        let d = unsafe { scale(p) };
        let qh = unsafe { (p.add(2) as *const i32).read_unaligned() };
        let q = unsafe { nibble_ints(p.add(6)) };
        let bits = _mm256_set1_epi32(qh);
        let one = _mm256_set1_epi32(1);
        let sixteen = _mm256_set1_epi32(16);
        let mut out = [_mm256_setzero_ps(); 4];
        for (g, q) in q.into_iter().enumerate() {
            let shifts = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let shifts = _mm256_add_epi32(shifts, _mm256_set1_epi32(8 * g as i32));
            let high = _mm256_and_si256(_mm256_srlv_epi32(bits, shifts), one);
            let v = _mm256_or_si256(q, _mm256_slli_epi32(high, 4));
            out[g] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, sixteen)), d);
        }
        out
    }
}

pub struct Q8_0;
impl Block for Q8_0 {
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [__m256; 4] {
        let d = unsafe { scale(p) };
        {
            std::array::from_fn(|g| unsafe {
                let bytes = _mm_loadl_epi64(p.add(2 + 8 * g) as *const __m128i);
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), d)
            })
        }
    }
}

/// Sums the 8 lanes in a fixed order.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// The f32 path (weights stored as f32): one accumulator per (row, token), blocks in order.
///
/// # Safety
/// Every row must hold `cols / 32` blocks and `x` must hold `B * cols` values.
#[inline(always)]
pub unsafe fn tile_f32<const R: usize, const B: usize>(
    rows: [&[u8]; R],
    x: &[f32],
    cols: usize,
    acc: &mut [[f32; B]; R],
) {
    let mut sums = [[_mm256_setzero_ps(); B]; R];
    let xp = x.as_ptr();
    for blk in 0..cols / 32 {
        for r in 0..R {
            let w = F32::load(rows[r].as_ptr().add(blk * F32::BYTES));
            for b in 0..B {
                let xb = xp.add(b * cols + blk * 32);
                let mut s = sums[r][b];
                for (g, w) in w.iter().enumerate() {
                    s = _mm256_fmadd_ps(*w, _mm256_loadu_ps(xb.add(8 * g)), s);
                }
                sums[r][b] = s;
            }
        }
    }
    for r in 0..R {
        for b in 0..B {
            acc[r][b] = hsum(sums[r][b]);
        }
    }
}

/// A quantized format read as 32-weight integer blocks (their scales come from the row's f32
/// scales). For the K formats a "block" is a 32-weight sub-block of a 256-weight super-block.
pub trait IntBlock {
    /// Bytes per stored block of `LEN` weights.
    const BYTES: usize;
    const LEN: usize = 32;
    /// The 32 integer weights of block `blk` of the row at `row`, as signed bytes.
    ///
    /// # Safety
    /// The row must hold block `blk`.
    unsafe fn ints(row: *const u8, blk: usize) -> __m256i;
    /// The f32 scale of block `blk`.
    ///
    /// # Safety
    /// The row must hold block `blk`.
    unsafe fn scale(row: *const u8, blk: usize) -> f32;
    /// The same weights widened to i16: elements 0..16 and 16..32.
    ///
    /// # Safety
    /// The row must hold block `blk`.
    #[inline(always)]
    unsafe fn ints16(row: *const u8, blk: usize) -> (__m256i, __m256i) {
        let w = Self::ints(row, blk);
        (
            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
            _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)),
        )
    }
}

/// 16 bytes of packed nibbles as 32 bytes in element order (low nibbles, then high nibbles).
#[inline(always)]
unsafe fn nibble_bytes(p: *const u8) -> __m256i {
    let (lo, hi) = unpack_nibbles(p);
    _mm256_set_m128i(hi, lo)
}

/// The 32-weight formats: block `blk` starts at byte `blk * BYTES` of the row.
macro_rules! int_block {
    ($name:ident, |$p:ident| $body:expr) => {
        impl IntBlock for $name {
            const BYTES: usize = <$name as Block>::BYTES;
            #[inline(always)]
            unsafe fn ints(row: *const u8, blk: usize) -> __m256i {
                let $p = row.add(blk * <$name as Block>::BYTES);
                $body
            }
            #[inline(always)]
            unsafe fn scale(row: *const u8, blk: usize) -> f32 {
                f16_at(row.add(blk * <$name as Block>::BYTES))
            }
        }
    };
}

int_block!(Q4_0, |p| _mm256_sub_epi8(
    nibble_bytes(p.add(2)),
    _mm256_set1_epi8(8)
));
int_block!(Q4_1, |p| nibble_bytes(p.add(4)));
int_block!(Q5_0, |p| {
    // Byte i takes bit i of qh (the fifth bit of element i) as 0x10.
    let qh = (p.add(2) as *const i32).read_unaligned();
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh),
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    let high = _mm256_and_si256(set, _mm256_set1_epi8(0x10));
    let q = _mm256_or_si256(nibble_bytes(p.add(6)), high);
    _mm256_sub_epi8(q, _mm256_set1_epi8(16))
});
int_block!(Q8_0, |p| _mm256_loadu_si256(p.add(2) as *const __m256i));

/// The f16 at `p` as f32 (through a general register, like [`scale`]).
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = (p as *const u16).read_unaligned() as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

/// `d·sc` of sub-block `blk` of a Q4_K/Q5_K row (`d` at byte 0 of the super-block, the packed
/// 6-bit scales at bytes 4..16).
#[inline(always)]
unsafe fn k4_scale(row: *const u8, bytes: usize, blk: usize) -> f32 {
    let p = row.add(blk / 8 * bytes);
    let packed = &*(p.add(4) as *const [u8; 12]);
    f16_at(p) * super::scale_min_k4(packed, blk % 8).0 as f32
}

/// The low (`j` even) or high (`j` odd) nibbles of 32 bytes at `p`, in byte order.
#[inline(always)]
unsafe fn nibbles_of(p: *const u8, j: usize) -> __m256i {
    let bytes = _mm256_loadu_si256(p as *const __m256i);
    let shifted = _mm256_srl_epi16(bytes, _mm_cvtsi32_si128(4 * (j as i32 & 1)));
    _mm256_and_si256(shifted, _mm256_set1_epi8(15))
}

#[allow(non_camel_case_types)]
pub struct Q4_K;
impl IntBlock for Q4_K {
    const BYTES: usize = 144;
    const LEN: usize = 256;
    #[inline(always)]
    unsafe fn scale(row: *const u8, blk: usize) -> f32 {
        k4_scale(row, Self::BYTES, blk)
    }
    #[inline(always)]
    unsafe fn ints(row: *const u8, blk: usize) -> __m256i {
        let (p, j) = (row.add(blk / 8 * Self::BYTES), blk % 8);
        nibbles_of(p.add(16 + 32 * (j / 2)), j)
    }
}

#[allow(non_camel_case_types)]
pub struct Q5_K;
impl IntBlock for Q5_K {
    const BYTES: usize = 176;
    const LEN: usize = 256;
    #[inline(always)]
    unsafe fn scale(row: *const u8, blk: usize) -> f32 {
        k4_scale(row, Self::BYTES, blk)
    }
    #[inline(always)]
    unsafe fn ints(row: *const u8, blk: usize) -> __m256i {
        let (p, j) = (row.add(blk / 8 * Self::BYTES), blk % 8);
        let low = nibbles_of(p.add(48 + 32 * (j / 2)), j);
        let bit = _mm256_set1_epi8(1 << j);
        let qh = _mm256_loadu_si256(p.add(16) as *const __m256i);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
    }
}

#[allow(non_camel_case_types)]
pub struct Q6_K;
impl IntBlock for Q6_K {
    const BYTES: usize = 210;
    const LEN: usize = 256;
    #[inline(always)]
    unsafe fn scale(row: *const u8, blk: usize) -> f32 {
        f16_at(row.add(blk / 8 * Self::BYTES + 208))
    }
    /// `q − 32` (without the sub-scales).
    #[inline(always)]
    unsafe fn ints(row: *const u8, blk: usize) -> __m256i {
        let (p, j) = (row.add(blk / 8 * Self::BYTES), blk % 8);
        let (h, k) = (j / 4, j % 4);
        let low = nibbles_of(p.add(64 * h + 32 * (k % 2)), k / 2);
        let qh = _mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i);
        let high = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k as i32));
        let high = _mm256_slli_epi16(_mm256_and_si256(high, _mm256_set1_epi8(3)), 4);
        _mm256_sub_epi8(_mm256_or_si256(low, high), _mm256_set1_epi8(32))
    }
    /// `sc·(q − 32)`: each half of the sub-block times its i8 scale (|product| ≤ 4096).
    #[inline(always)]
    unsafe fn ints16(row: *const u8, blk: usize) -> (__m256i, __m256i) {
        let w = Self::ints(row, blk);
        let (p, j) = (row.add(blk / 8 * Self::BYTES), blk % 8);
        let sc = p.add(192 + 8 * (j / 4) + 2 * (j % 4)) as *const i8;
        (
            _mm256_mullo_epi16(
                _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
                _mm256_set1_epi16(*sc as i16),
            ),
            _mm256_mullo_epi16(
                _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)),
                _mm256_set1_epi16(*sc.add(1) as i16),
            ),
        )
    }
}

/// Eight partial integer dot products of 32 weights (widened to i16, elements 0..16 and 16..32)
/// with 32 activations (i16).
#[inline(always)]
unsafe fn int_dot(lo: __m256i, hi: __m256i, x: *const i16) -> __m256 {
    let x0 = _mm256_loadu_si256(x as *const __m256i);
    let x1 = _mm256_loadu_si256(x.add(16) as *const __m256i);
    let sum = _mm256_add_epi32(_mm256_madd_epi16(lo, x0), _mm256_madd_epi16(hi, x1));
    _mm256_cvtepi32_ps(sum)
}

/// The integer path: per (row, token), `Σ_blocks d_w·d_x·(w·q_x)` in one 8-lane accumulator,
/// blocks in order, then the horizontal sum. (Q4_1's offset term is added by the caller.)
///
/// # Safety
/// Every row must hold `cols / 32` blocks; `x` must hold tokens `t0..t0 + B`.
#[inline(always)]
pub unsafe fn tile_int<K: IntBlock, const R: usize, const B: usize>(
    rows: [super::Row<'_>; R],
    x: &super::QuantizedActs,
    t0: usize,
    acc: &mut [[f32; B]; R],
) {
    let blocks = x.cols / 32;
    let mut sums = [[_mm256_setzero_ps(); B]; R];
    for blk in 0..blocks {
        for r in 0..R {
            let row = rows[r].bytes.as_ptr();
            if B == 1 {
                // Decoding streams every weight once: ask for the blocks a few iterations ahead
                // (eight 32-weight blocks on).
                let ahead = (blk + 8) * 32 * K::BYTES / K::LEN;
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(ahead) as *const i8);
            }
            let (lo, hi) = K::ints16(row, blk);
            let dw = K::scale(row, blk);
            for b in 0..B {
                let t = t0 + b;
                let xq = x.qs.as_ptr().add(t * x.cols + blk * 32);
                let scale = _mm256_set1_ps(dw * *x.d.get_unchecked(t * blocks + blk));
                sums[r][b] = _mm256_fmadd_ps(int_dot(lo, hi, xq), scale, sums[r][b]);
            }
        }
    }
    for r in 0..R {
        for b in 0..B {
            acc[r][b] = hsum(sums[r][b]);
        }
    }
}

/// Writes one dequantized block.
///
/// # Safety
/// `block` must hold one whole block.
pub unsafe fn store<K: Block>(block: &[u8], out: &mut [f32]) {
    let w = unsafe { K::load(block.as_ptr()) };
    for (g, w) in w.iter().enumerate() {
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * g), *w) };
    }
}
