//! Large read-only arrays of plain numbers (vectors, graph links) that either live in memory or
//! are memory-mapped from an index file, behind one `&[T]` view. Mapping is what lets a
//! 1M × 384 index open at once: pages are read when a search touches them.
//!
//! Index files are little-endian; on a little-endian machine a mapped file is used in place,
//! elsewhere it is decoded into memory.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Result, RetrievalError};

/// Numbers an index file stores: `SIZE` bytes (2 or 4), little-endian, no padding, aligned
/// to at most `SIZE`, every bit pattern valid.
pub(crate) trait Plain: Copy + Send + Sync + 'static {
    /// Bytes per value.
    const SIZE: usize;
    /// The value of `bytes` (exactly `SIZE` long).
    fn from_le(bytes: &[u8]) -> Self;
    /// Appends the value's little-endian bytes to `out`.
    fn put_le(self, out: &mut Vec<u8>);
}

macro_rules! plain {
    ($t:ty, $n:literal) => {
        impl Plain for $t {
            const SIZE: usize = $n;
            fn from_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect(concat!($n, " bytes")))
            }
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}

plain!(f32, 4);
plain!(u32, 4);
plain!(half::f16, 2);

/// A read-only `[T]`, owned or mapped from a file.
#[derive(Clone, Debug)]
pub(crate) enum Slab<T: Plain> {
    Owned(Arc<[T]>),
    Mapped { map: Arc<Mmap>, len: usize },
}

impl<T: Plain> Slab<T> {
    /// Maps `path`, which must hold exactly `len` values (checked by the caller beforehand;
    /// checked again here).
    pub(crate) fn map(path: &Path, file: &File, len: usize) -> Result<Slab<T>> {
        // SAFETY: the map is read-only and private to this process. Index folders are written
        // once, atomically, and never modified in place; replacing one renames a new folder
        // over it, which leaves this mapping's inode intact.
        let map = unsafe { Mmap::map(file) }.map_err(|e| RetrievalError::io(path, e))?;
        if map.len() != len * T::SIZE {
            return Err(RetrievalError::bad_index(
                path,
                format!(
                    "{} bytes, expected {} (truncated?)",
                    map.len(),
                    len * T::SIZE
                ),
            ));
        }
        if cfg!(target_endian = "little") {
            Ok(Slab::Mapped {
                map: Arc::new(map),
                len,
            })
        } else {
            Ok(Slab::Owned(decode(&map).into()))
        }
    }

    /// The values.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Slab::Owned(v) => v,
            Slab::Mapped { map, len } => {
                // SAFETY: `map` holds `len * T::SIZE` bytes (checked in `map`), starts on a page
                // boundary (so is aligned for `T`), every bit pattern is a valid `T`,
                // the bytes are little-endian like `T` on this machine, and the borrow keeps
                // the map alive.
                unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<T>(), *len) }
            }
        }
    }

    /// The values for writing, when they are in memory and not shared.
    pub(crate) fn get_mut(&mut self) -> Option<&mut [T]> {
        match self {
            Slab::Owned(v) => Arc::get_mut(v),
            Slab::Mapped { .. } => None,
        }
    }

    /// True when the values are mapped from a file.
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Slab::Mapped { .. })
    }
}

impl<T: Plain> From<Vec<T>> for Slab<T> {
    fn from(v: Vec<T>) -> Self {
        Slab::Owned(v.into())
    }
}

/// Decodes little-endian bytes (a multiple of `T::SIZE` long).
pub(crate) fn decode<T: Plain>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::from_le).collect()
}

/// The little-endian bytes of `values`: borrowed as they are on a little-endian machine.
pub(crate) fn le_bytes<T: Plain>(values: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: `T` is `T::SIZE` bytes of plain data with no padding; any byte view of it is
        // valid, and on this machine it is already little-endian.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        })
    } else {
        let mut out = Vec::with_capacity(values.len() * T::SIZE);
        values.iter().for_each(|v| v.put_le(&mut out));
        std::borrow::Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_equals_owned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.f32");
        let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.25 - 3.0).collect();
        std::fs::write(&path, le_bytes(&values)).unwrap();
        let file = File::open(&path).unwrap();
        let slab = Slab::<f32>::map(&path, &file, 1000).unwrap();
        assert_eq!(slab.as_slice(), &values[..]);
        assert_eq!(decode::<f32>(&le_bytes(&values)), values);
        let err = Slab::<f32>::map(&path, &file, 999).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn two_byte_values_map_and_decode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.f16");
        let values: Vec<half::f16> = (0..999)
            .map(|i| half::f16::from_f32(i as f32 * 0.5))
            .collect();
        let bytes = le_bytes(&values);
        assert_eq!(bytes.len(), 999 * 2);
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let slab = Slab::<half::f16>::map(&path, &file, 999).unwrap();
        assert_eq!(slab.as_slice(), &values[..]);
        assert_eq!(decode::<half::f16>(&bytes), values);
        assert!(Slab::<half::f16>::map(&path, &file, 1000).is_err());
    }
}
