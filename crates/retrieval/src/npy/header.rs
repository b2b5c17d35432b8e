//! The `.npy` header: magic, format version, header length and the Python dict literal that
//! gives dtype, memory order and shape.

use super::Dtype;

/// `\x93NUMPY`, the first six bytes of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The parts of a `.npy` header that matter here.
#[derive(Debug, PartialEq)]
pub(super) struct Header {
    pub(super) dtype: Dtype,
    pub(super) rows: usize,
    pub(super) dims: usize,
    /// Byte offset of the data.
    pub(super) data: usize,
}

impl Header {
    /// Parses the magic, version, header length and header dict at the start of `bytes`.
    pub(super) fn parse(bytes: &[u8]) -> Result<Header, String> {
        if !bytes.starts_with(MAGIC) {
            return Err("not a .npy file (it does not start with \\x93NUMPY)".into());
        }
        if bytes.len() < 10 {
            return Err("truncated header".into());
        }
        let (major, minor) = (bytes[6], bytes[7]);
        let (len, start): (usize, usize) = match major {
            1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            2 | 3 => return Err("truncated header".into()),
            _ => {
                return Err(format!(
                    "format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)"
                ));
            }
        };
        let end = start
            .checked_add(len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated header: it claims {len} bytes, the file has {}",
                    bytes.len() - start
                )
            })?;
        // Versions 1 and 2 are latin-1, 3 is UTF-8; every header numpy writes for float
        // matrices is ASCII, so anything else is rejected by the parser either way.
        let text = std::str::from_utf8(&bytes[start..end])
            .map_err(|_| "the header is not ASCII text".to_string())?;
        let dict = parse_dict(text)?;
        let descr = dict.descr.ok_or("the header has no 'descr'")?;
        let dtype = match descr.as_str() {
            "<f4" => Dtype::F32,
            "<f2" => Dtype::F16,
            other => {
                return Err(format!(
                    "dtype '{other}' is not supported: vectors must be little-endian float32 \
                     ('<f4') or float16 ('<f2')"
                ));
            }
        };
        match dict.fortran_order {
            Some(false) => {}
            Some(true) => {
                return Err("fortran_order is True: vectors must be in C order (rows \
                            contiguous); save with np.ascontiguousarray"
                    .into());
            }
            None => return Err("the header has no 'fortran_order'".into()),
        }
        let shape = dict.shape.ok_or("the header has no 'shape'")?;
        let [rows, dims] = shape[..] else {
            return Err(format!(
                "shape {} is not 2-D: vectors must be a (rows, dims) matrix",
                show_shape(&shape)
            ));
        };
        if dims == 0 && rows > 0 {
            return Err(format!("shape {} has dimension 0", show_shape(&shape)));
        }
        Ok(Header {
            dtype,
            rows,
            dims,
            data: end,
        })
    }
}

/// `shape` as Python writes a tuple.
fn show_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// The keys of a header dict.
#[derive(Default)]
struct Dict {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<usize>>,
}

/// Parses numpy's header, a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces and a
/// newline. Unknown keys are an error, as in numpy.
fn parse_dict(text: &str) -> Result<Dict, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut dict = Dict::default();
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(
                        "structured dtypes are not supported: vectors must be a plain \
                                '<f4' or '<f2' matrix"
                            .into(),
                    );
                }
                dict.descr = Some(p.string()?);
            }
            "fortran_order" => dict.fortran_order = Some(p.boolean()?),
            "shape" => dict.shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key '{other}' in the header")),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.skip_ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err("unexpected text after the header dict".into());
    }
    Ok(dict)
}

/// A cursor over the header text.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed header: expected '{}' at byte {}",
                char::from(c),
                self.i
            ))
        }
    }

    /// A `'…'` or `"…"` string without escapes.
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(format!(
                    "malformed header: expected a string at byte {}",
                    self.i
                ));
            }
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or("malformed header: unterminated string")?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        for (word, value) in [("True", true), ("False", false)] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(value);
            }
        }
        Err(format!(
            "malformed header: expected True or False at byte {}",
            self.i
        ))
    }

    /// A tuple of non-negative integers: `()`, `(3,)`, `(3, 4)`, `(3, 4, )`.
    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Ok(out);
            }
            let start = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            // Python 2 era files may write `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
            let n = digits
                .parse::<usize>()
                .map_err(|_| format!("malformed header: expected a dimension at byte {start}"))?;
            self.eat(b'L');
            out.push(n);
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                self.expect(b')')?;
                return Ok(out);
            }
        }
    }
}
