//! Document ids ↔ rows: retrievers keep vectors in rows 0..n but answer with the corpus's own
//! passage ids. Contiguous ids (the knowledge base's 0..n, DPR's 1..n) need no table.

use std::collections::HashMap;

/// Maps passage ids to row numbers.
#[derive(Clone, Debug)]
pub(crate) enum IdMap {
    /// Row `r` holds id `first + r`.
    Contiguous { first: u32, len: usize },
    /// Any other set of distinct ids.
    Table(HashMap<u32, u32>),
}

impl IdMap {
    /// Builds the map; `Err(id)` names the first duplicated id.
    pub(crate) fn new(ids: &[u32]) -> Result<IdMap, u32> {
        let contiguous = ids.first().is_none_or(|&first| {
            ids.iter()
                .enumerate()
                .all(|(r, &id)| u64::from(id) == u64::from(first) + r as u64)
        });
        if contiguous {
            return Ok(IdMap::Contiguous {
                first: ids.first().copied().unwrap_or(0),
                len: ids.len(),
            });
        }
        let mut table = HashMap::with_capacity(ids.len());
        for (row, &id) in ids.iter().enumerate() {
            if table.insert(id, row as u32).is_some() {
                return Err(id);
            }
        }
        Ok(IdMap::Table(table))
    }

    /// The row holding `id`, if any.
    pub(crate) fn row(&self, id: u32) -> Option<usize> {
        match self {
            IdMap::Contiguous { first, len } => {
                let r = id.checked_sub(*first)? as usize;
                (r < *len).then_some(r)
            }
            IdMap::Table(t) => t.get(&id).map(|&r| r as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_and_table() {
        let m = IdMap::new(&[5, 6, 7]).unwrap();
        assert!(matches!(m, IdMap::Contiguous { first: 5, len: 3 }));
        assert_eq!(m.row(5), Some(0));
        assert_eq!(m.row(7), Some(2));
        assert_eq!(m.row(8), None);
        assert_eq!(m.row(4), None);
        let m = IdMap::new(&[9, 2, 4]).unwrap();
        assert_eq!(m.row(2), Some(1));
        assert_eq!(m.row(3), None);
        assert_eq!(IdMap::new(&[1, 3, 1]).unwrap_err(), 1);
        assert_eq!(IdMap::new(&[]).unwrap().row(0), None);
    }
}
