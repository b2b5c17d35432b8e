//! GPT-2's byte-to-character table.
//!
//! Byte-level BPE vocabularies spell every token as a string of printable characters, one per
//! byte: the 188 printable bytes stand for themselves and the other 68 (controls, space, some
//! Latin-1) are moved to U+0100 onwards, in byte order. So the space byte is `Ġ` (U+0120) and
//! the newline byte is `Ċ` (U+010A). This module undoes that spelling.

/// True for the bytes that GPT-2 spells as the character with the same code point.
fn is_printable(byte: u8) -> bool {
    matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character GPT-2 uses to spell each byte, indexed by byte.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_moved = 256u32;
    for byte in 0..=255u8 {
        table[usize::from(byte)] = if is_printable(byte) {
            char::from(byte)
        } else {
            let c = char::from_u32(next_moved).expect("U+0100..U+0143 are valid characters");
            next_moved += 1;
            c
        };
    }
    table
}

/// Decodes GPT-2 byte spelling back into bytes. Maps every character of the table back to its
/// byte; returns `None` if `spelled` holds a character outside the table (such tokens, e.g.
/// mislabelled special tokens, are then taken as their plain UTF-8).
pub(crate) struct ByteDecoder {
    /// Byte for each character below U+0144 that is in the table, else `None`.
    by_char: Vec<Option<u8>>,
}

impl ByteDecoder {
    pub(crate) fn new() -> ByteDecoder {
        let mut by_char = vec![None; 0x144];
        for (byte, c) in byte_chars().iter().enumerate() {
            by_char[*c as usize] = Some(byte as u8);
        }
        ByteDecoder { by_char }
    }

    /// The bytes `spelled` stands for, or `None` if it is not in GPT-2 byte spelling.
    pub(crate) fn decode(&self, spelled: &str) -> Option<Vec<u8>> {
        spelled
            .chars()
            .map(|c| self.by_char.get(c as usize).copied().flatten())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_with_known_landmarks() {
        let table = byte_chars();
        assert_eq!(table[usize::from(b' ')], 'Ġ');
        assert_eq!(table[usize::from(b'\n')], 'Ċ');
        assert_eq!(table[usize::from(b'a')], 'a');
        assert_eq!(table[0], '\u{100}');
        let mut seen: Vec<char> = table.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        let decoder = ByteDecoder::new();
        for (byte, c) in table.iter().enumerate() {
            assert_eq!(decoder.decode(&c.to_string()), Some(vec![byte as u8]));
        }
        assert_eq!(decoder.decode("ĠhelloĊ"), Some(b" hello\n".to_vec()));
        assert_eq!(decoder.decode("日本"), None);
    }
}
