//! The vector table of a dense index and the precision it is stored in ([`Precision`]): f32,
//! or IEEE binary16 (f16), which halves the memory and the bytes a search streams (a 21M × 384
//! padded index is 16 GB in f16, 32 GB in f32).
//!
//! Whatever the storage, every score is computed in f32 by the same kernel
//! ([`crate::kernel::dot`]): an f16 row is first widened to f32, which is exact, so scores are a
//! function of the stored values alone, and `score` equals `search` bit for bit in both
//! precisions. Rounding to f16 happens once, when a table is converted or written
//! ([`to_f16`]).
//!
//! Measured (`examples/flat_batch.rs --rows 2000000 --dim 384 --k 20 --metric ip`, 2 vCPUs,
//! medians of 7 calls, on a machine shared with other jobs, the quietest run): one query
//! b(1) = 167 ms in f32, 95 ms in f16 (a scan streams the table, so half the bytes is about
//! half the time); each further query of a batch c ≈ 11 ms in f32, 12 ms in f16 (the tiles
//! are the same f32 arithmetic; the block is widened once per batch). Under load f16 kept
//! b(1) at ~0.6× f32's. On real MiniLM vectors and FanOutQA questions an f16 index finds
//! 99.95% of the f32 index's top-10 (`tests/flat_f16.rs`).

use half::f16;
use half::slice::HalfFloatSliceExt;
use serde::{Deserialize, Serialize};

use crate::slab::{Slab, le_bytes};

/// How a dense index stores its vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 4-byte IEEE floats (`vectors.f32`): the values as computed.
    #[default]
    F32,
    /// 2-byte IEEE floats (`vectors.f16`): each value rounded to nearest (ties to even), with
    /// magnitudes beyond f16's largest finite value (65504) stored as ±65504 ([`to_f16`]).
    /// Unit vectors (MiniLM's) keep ~11 significant bits per component.
    F16,
}

impl Precision {
    /// True for the default, f32 (manifests leave it out).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// The name of the vectors file in an index folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Precision::F32 => "vectors.f32",
            Precision::F16 => "vectors.f16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

/// `x` rounded to f16 (to nearest, ties to even), finite values beyond ±65504 saturating to
/// ±65504 so that a finite table stays finite.
pub fn to_f16(x: f32) -> f16 {
    saturate(f16::from_f32(x), x)
}

/// `h` (the rounding of `x`) with an overflow to infinity of a finite `x` replaced by ±max.
#[inline]
fn saturate(h: f16, x: f32) -> f16 {
    if h.is_infinite() && x.is_finite() {
        if x > 0.0 { f16::MAX } else { f16::MIN }
    } else {
        h
    }
}

/// Rounds `src` into `dst` (same length) as [`to_f16`] does each value, with the vector
/// conversion instructions where the build has them (F16C on x86-64-v3).
pub(crate) fn round_into(src: &[f32], dst: &mut [f16]) {
    dst.convert_from_f32_slice(src);
    for (h, &x) in dst.iter_mut().zip(src) {
        *h = saturate(*h, x);
    }
}

/// A stored value type the search kernel can read: f32 as it is, f16 widened.
pub(crate) trait Value: Copy + Send + Sync + 'static {
    /// `values` as f32: borrowed for f32, widened into `scratch` (resized to fit) for f16.
    fn widen<'a>(values: &'a [Self], scratch: &'a mut Vec<f32>) -> &'a [f32];
}

impl Value for f32 {
    #[inline]
    fn widen<'a>(values: &'a [f32], _: &'a mut Vec<f32>) -> &'a [f32] {
        values
    }
}

impl Value for f16 {
    #[inline]
    fn widen<'a>(values: &'a [f16], scratch: &'a mut Vec<f32>) -> &'a [f32] {
        scratch.resize(values.len(), 0.0);
        values.convert_to_f32_slice(scratch);
        scratch
    }
}

/// The row-major values of a dense index in its precision, in memory or memory-mapped.
#[derive(Clone, Debug)]
pub(crate) enum Table {
    F32(Slab<f32>),
    F16(Slab<f16>),
}

impl Table {
    /// The precision of the values.
    pub(crate) fn precision(&self) -> Precision {
        match self {
            Table::F32(_) => Precision::F32,
            Table::F16(_) => Precision::F16,
        }
    }

    /// Number of values (rows × dim).
    pub(crate) fn len(&self) -> usize {
        match self {
            Table::F32(s) => s.as_slice().len(),
            Table::F16(s) => s.as_slice().len(),
        }
    }

    /// True when the values are mapped from a file.
    pub(crate) fn is_mapped(&self) -> bool {
        match self {
            Table::F32(s) => s.is_mapped(),
            Table::F16(s) => s.is_mapped(),
        }
    }

    /// The f32 values (empty for an f16 table).
    pub(crate) fn f32s(&self) -> &[f32] {
        match self {
            Table::F32(s) => s.as_slice(),
            Table::F16(_) => &[],
        }
    }

    /// The f16 values (empty for an f32 table).
    pub(crate) fn f16s(&self) -> &[f16] {
        match self {
            Table::F32(_) => &[],
            Table::F16(s) => s.as_slice(),
        }
    }

    /// Row `r` (of `buf.len()` values) as f32: borrowed from an f32 table, widened into `buf`
    /// from an f16 one. `r` must be a row of the table.
    #[inline]
    pub(crate) fn row<'a>(&'a self, r: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let dim = buf.len();
        match self {
            Table::F32(s) => &s.as_slice()[r * dim..(r + 1) * dim],
            Table::F16(s) => {
                s.as_slice()[r * dim..(r + 1) * dim].convert_to_f32_slice(buf);
                buf
            }
        }
    }

    /// The little-endian bytes of the values, as the vectors file holds them.
    pub(crate) fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Table::F32(s) => le_bytes(s.as_slice()),
            Table::F16(s) => le_bytes(s.as_slice()),
        }
    }

    /// The position of the first non-finite value, if any.
    pub(crate) fn first_non_finite(&self) -> Option<usize> {
        match self {
            Table::F32(s) => s.as_slice().iter().position(|x| !x.is_finite()),
            Table::F16(s) => s.as_slice().iter().position(|x| !x.is_finite()),
        }
    }

    /// This table in `precision`: widening is exact, narrowing rounds with [`to_f16`].
    pub(crate) fn to_precision(&self, precision: Precision) -> Table {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 16;
        match (self, precision) {
            (Table::F32(_), Precision::F32) | (Table::F16(_), Precision::F16) => self.clone(),
            (Table::F32(s), Precision::F16) => {
                let src = s.as_slice();
                let mut out = vec![f16::ZERO; src.len()];
                out.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(d, s)| round_into(s, d));
                Table::F16(out.into())
            }
            (Table::F16(s), Precision::F32) => {
                let src = s.as_slice();
                let mut out = vec![0f32; src.len()];
                out.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(d, s)| s.convert_to_f32_slice(d));
                Table::F32(out.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_and_saturates() {
        let xs = [
            0.0f32,
            -0.0,
            1.0,
            1.0 / 3.0,
            1e-8,
            65504.0,
            65519.0,
            7e4,
            -1e9,
            1e-3,
        ];
        let mut out = vec![f16::ZERO; xs.len()];
        round_into(&xs, &mut out);
        for (&x, h) in xs.iter().zip(&out) {
            assert_eq!(h.to_bits(), to_f16(x).to_bits(), "{x}");
            assert!(h.is_finite(), "{x}");
            if x.abs() <= 65504.0 {
                assert_eq!(h.to_bits(), f16::from_f32(x).to_bits(), "{x}");
            }
        }
        assert_eq!(to_f16(7e4), f16::MAX);
        assert_eq!(to_f16(-1e9), f16::MIN);
        assert!(to_f16(f32::NAN).is_nan());
        assert!(to_f16(f32::INFINITY).is_infinite());
    }

    #[test]
    fn widening_is_exact_and_round_trips() {
        let src: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.731).sin() * 3.0).collect();
        let t16 = Table::F32(src.clone().into()).to_precision(Precision::F16);
        let back = t16.to_precision(Precision::F32);
        for (i, (&x, &y)) in src.iter().zip(back.f32s()).enumerate() {
            assert_eq!(y, f16::from_f32(x).to_f32(), "{i}");
        }
        assert_eq!(
            back.to_precision(Precision::F16).f16s(),
            t16.f16s(),
            "f16 → f32 → f16 is the identity"
        );
        let mut buf = [0f32; 10];
        assert_eq!(t16.row(3, &mut buf), &back.f32s()[30..40]);
        let mut scratch = Vec::new();
        assert_eq!(
            f16::widen(&t16.f16s()[..25], &mut scratch),
            &back.f32s()[..25]
        );
    }

    #[test]
    fn precision_serialises_lowercase() {
        assert_eq!(serde_json::to_string(&Precision::F16).unwrap(), "\"f16\"");
        assert_eq!(
            serde_json::from_str::<Precision>("\"f32\"").unwrap(),
            Precision::F32
        );
        assert_eq!(Precision::F16.file_name(), "vectors.f16");
    }
}
