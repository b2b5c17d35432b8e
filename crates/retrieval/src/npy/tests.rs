//! `.npy` files written byte by byte, good and bad.

use super::*;

/// A `.npy` file: magic, version, header length, the dict padded to a multiple of 64 bytes
/// with a final newline, then `data`.
fn npy(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let prefix = if major == 1 { 10 } else { 12 };
    let mut header = dict.to_string();
    while !(prefix + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([major, 0]);
    if major == 1 {
        out.extend((header.len() as u16).to_le_bytes());
    } else {
        out.extend((header.len() as u32).to_le_bytes());
    }
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

fn dict(descr: &str, fortran: bool, shape: &str) -> String {
    let order = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}")
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

/// Writes `bytes` to `vectors.npy` in a fresh folder.
fn write(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.npy");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn open_err(bytes: &[u8]) -> String {
    let (_dir, path) = write(bytes);
    let err = NpyVectors::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("vectors.npy"), "{msg}");
    assert!(matches!(err, RetrievalError::BadNpy { .. }), "{err:?}");
    msg
}

/// Three unit rows of dimension 4.
const ROWS: [f32; 12] = [
    1.0, 0.0, 0.0, 0.0, //
    0.0, 0.6, 0.8, 0.0, //
    0.5, 0.5, 0.5, 0.5,
];

#[test]
fn reads_f32_v1() {
    let (_dir, path) = write(&npy(1, &dict("<f4", false, "(3, 4)"), &f32_bytes(&ROWS)));
    let v = NpyVectors::open(&path).unwrap();
    assert_eq!((v.rows(), v.dims(), v.dtype()), (3, 4, Dtype::F32));
    assert_eq!(v.read_rows(0..3).unwrap(), ROWS);
    assert_eq!(v.read_rows(1..2).unwrap(), ROWS[4..8]);
    assert_eq!(v.read_rows(2..2).unwrap(), Vec::<f32>::new());
    v.check(3, 4).unwrap();
    v.validate(true).unwrap();
}

#[test]
fn reads_f16_v2_and_v3() {
    for major in [2, 3] {
        let (_dir, path) = write(&npy(
            major,
            &dict("<f2", false, "(3, 4)"),
            &f16_bytes(&ROWS),
        ));
        let v = NpyVectors::open(&path).unwrap();
        assert_eq!((v.rows(), v.dims(), v.dtype()), (3, 4, Dtype::F16));
        // 0.6 and 0.8 are not exact in f16; the rest are.
        let got = v.read_rows(0..3).unwrap();
        for (g, w) in got.iter().zip(ROWS) {
            assert!((g - w).abs() < 1e-3, "{got:?}");
        }
        assert_eq!(got[..4], ROWS[..4]);
        v.validate(true).unwrap();
    }
}

#[test]
fn header_variants_numpy_writes() {
    // Double quotes, no trailing comma, keys in another order, `3L` from Python 2.
    let d = r#"{"shape": (3L, 4L), "fortran_order": False, "descr": "<f4"}"#;
    let (_dir, path) = write(&npy(1, d, &f32_bytes(&ROWS)));
    let v = NpyVectors::open(&path).unwrap();
    assert_eq!((v.rows(), v.dims()), (3, 4));
    // An empty matrix.
    let (_dir, path) = write(&npy(1, &dict("<f4", false, "(0, 384)"), &[]));
    let v = NpyVectors::open(&path).unwrap();
    assert_eq!((v.rows(), v.dims()), (0, 384));
    assert_eq!(v.chunks(10).count(), 0);
}

#[test]
fn chunks_cover_every_row_in_order() {
    let values: Vec<f32> = (0..7 * 3).map(|i| i as f32 + 1.0).collect();
    let (_dir, path) = write(&npy(1, &dict("<f4", false, "(7, 3)"), &f32_bytes(&values)));
    let v = NpyVectors::open(&path).unwrap();
    let chunks: Vec<Chunk> = v.chunks(3).collect();
    assert_eq!(v.chunks(3).size_hint(), (3, Some(3)));
    assert_eq!(
        chunks.iter().map(|c| c.first_row).collect::<Vec<_>>(),
        [0, 3, 6]
    );
    let all: Vec<f32> = chunks.into_iter().flat_map(|c| c.values).collect();
    assert_eq!(all, values);
    assert_eq!(v.chunks(0).count(), 7, "a chunk holds at least one row");
}

#[test]
fn out_of_range_rows_are_an_error() {
    let (_dir, path) = write(&npy(1, &dict("<f4", false, "(3, 4)"), &f32_bytes(&ROWS)));
    let v = NpyVectors::open(&path).unwrap();
    let err = v.read_rows(2..4).unwrap_err().to_string();
    assert!(err.contains("has 3 rows"), "{err}");
}

#[test]
fn bad_magic_version_and_header() {
    let good = npy(1, &dict("<f4", false, "(3, 4)"), &f32_bytes(&ROWS));
    let mut bad = good.clone();
    bad[1] = b'X';
    assert!(open_err(&bad).contains("not a .npy file"));
    assert!(open_err(b"\x93NUM").contains("too short"));
    assert!(open_err(b"").contains("too short"));
    let mut v9 = good.clone();
    v9[6] = 9;
    assert!(open_err(&v9).contains("version 9.0"));
    // Header length beyond the end of the file.
    assert!(open_err(&good[..40]).contains("truncated header"));
    for d in [
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': Nope, 'shape': (3, 4)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'extra': 1}",
        "['descr', '<f4']",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, x)}",
    ] {
        let msg = open_err(&npy(1, d, &f32_bytes(&ROWS)));
        assert!(
            msg.contains("malformed") || msg.contains("no 'shape'") || msg.contains("key"),
            "{d}: {msg}"
        );
    }
}

#[test]
fn unsupported_dtypes() {
    for descr in ["<f8", ">f4", ">f2", "<i4", "|u1", "<c8"] {
        let msg = open_err(&npy(1, &dict(descr, false, "(3, 4)"), &[0; 96]));
        assert!(
            msg.contains(&format!("dtype '{descr}' is not supported")),
            "{msg}"
        );
    }
    let structured = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }";
    assert!(open_err(&npy(1, structured, &[0; 12])).contains("structured"));
}

#[test]
fn fortran_order_is_an_error() {
    let msg = open_err(&npy(1, &dict("<f4", true, "(3, 4)"), &f32_bytes(&ROWS)));
    assert!(msg.contains("fortran_order is True"), "{msg}");
}

#[test]
fn shapes_other_than_2d() {
    let msg = open_err(&npy(1, &dict("<f4", false, "(12,)"), &f32_bytes(&ROWS)));
    assert!(msg.contains("shape (12,) is not 2-D"), "{msg}");
    let msg = open_err(&npy(1, &dict("<f4", false, "(3, 2, 2)"), &f32_bytes(&ROWS)));
    assert!(msg.contains("shape (3, 2, 2) is not 2-D"), "{msg}");
    let msg = open_err(&npy(1, &dict("<f4", false, "()"), &f32_bytes(&ROWS[..1])));
    assert!(msg.contains("shape () is not 2-D"), "{msg}");
    let msg = open_err(&npy(1, &dict("<f4", false, "(3, 0)"), &[]));
    assert!(msg.contains("dimension 0"), "{msg}");
    let huge = format!("({}, 4)", usize::MAX / 2);
    let msg = open_err(&npy(1, &dict("<f4", false, &huge), &[]));
    assert!(msg.contains("too large"), "{msg}");
}

#[test]
fn truncated_or_overlong_data() {
    let data = f32_bytes(&ROWS);
    let msg = open_err(&npy(1, &dict("<f4", false, "(3, 4)"), &data[..47]));
    assert!(
        msg.contains("truncated") && msg.contains("needs 48 bytes") && msg.contains("holds 47"),
        "{msg}"
    );
    let msg = open_err(&npy(1, &dict("<f2", false, "(3, 4)"), &data));
    assert!(msg.contains("trailing bytes"), "{msg}");
}

#[test]
fn shape_checks_name_file_rows_and_dims() {
    let (_dir, path) = write(&npy(1, &dict("<f4", false, "(3, 4)"), &f32_bytes(&ROWS)));
    let v = NpyVectors::open(&path).unwrap();
    let err = v.check(4, 4).unwrap_err();
    assert!(
        matches!(
            err,
            RetrievalError::VectorRows {
                rows: 3,
                passages: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("vectors.npy has 3 rows, the corpus 4 passages"),
        "{err}"
    );
    let err = v.check(3, 384).unwrap_err().to_string();
    assert!(
        err.ends_with("vectors.npy has dimension 4, the encoder gives 384"),
        "{err}"
    );
    let err = RetrievalError::VectorDims {
        path: "vectors.npy".into(),
        dims: 768,
        expected: 384,
        encoder: Some("all-MiniLM-L6-v2".into()),
    };
    assert_eq!(
        err.to_string(),
        "vectors.npy has dimension 768, the encoder all-MiniLM-L6-v2 gives 384"
    );
}

/// `ROWS` with row `row`'s first value replaced by `value`, as f32 and f16 files.
fn check_fault(row: usize, value: f32, unit_norm: bool, want: VectorFault) {
    let mut rows = ROWS;
    rows[row * 4] = value;
    if value == 0.0 {
        rows[row * 4..row * 4 + 4].fill(0.0);
    }
    for (descr, bytes) in [("<f4", f32_bytes(&rows)), ("<f2", f16_bytes(&rows))] {
        let (_dir, path) = write(&npy(1, &dict(descr, false, "(3, 4)"), &bytes));
        let v = NpyVectors::open(&path).unwrap();
        let err = v.validate(unit_norm).unwrap_err();
        match &err {
            RetrievalError::BadVector { row: r, fault, .. } => {
                assert_eq!((*r, fault), (row, &want), "{descr}: {err}");
            }
            other => panic!("{descr}: {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.ends_with(&format!("vectors.npy: row {row} {want}")),
            "{msg}"
        );
        // The same rows as a chunk that starts further on report the file's row number.
        let err = v
            .check_values(100, &v.read_rows(0..3).unwrap(), unit_norm)
            .unwrap_err();
        assert!(matches!(err, RetrievalError::BadVector { row: r, .. } if r == 100 + row));
    }
}

#[test]
fn nan_inf_zero_and_non_unit_rows() {
    check_fault(1, f32::NAN, false, VectorFault::NaN);
    check_fault(2, f32::INFINITY, false, VectorFault::Infinite);
    check_fault(0, f32::NEG_INFINITY, true, VectorFault::Infinite);
    check_fault(0, 0.0, false, VectorFault::ZeroNorm);
    // Row 0 becomes (2, 0, 0, 0): fine without normalisation, an error with it.
    let (_dir, path) = write(&npy(
        1,
        &dict("<f4", false, "(3, 4)"),
        &f32_bytes(&{
            let mut r = ROWS;
            r[0] = 2.0;
            r
        }),
    ));
    let v = NpyVectors::open(&path).unwrap();
    v.validate(false).unwrap();
    let err = v.validate(true).unwrap_err();
    assert!(
        matches!(err, RetrievalError::BadVector { row: 0, fault: VectorFault::NotUnit { norm }, .. } if norm == 2.0),
        "{err:?}"
    );
    assert_eq!(
        RetrievalError::BadVector {
            path: "vectors.npy".into(),
            row: 17,
            fault: VectorFault::NaN
        }
        .to_string(),
        "vectors.npy: row 17 holds NaN"
    );
}

#[test]
fn missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = NpyVectors::open(&dir.path().join("vectors.npy")).unwrap_err();
    assert!(matches!(err, RetrievalError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("vectors.npy"), "{err}");
}
