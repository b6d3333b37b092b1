//! GPT-2's byte-level alphabet: each byte is written as one printable character, so that a
//! vocabulary of strings can hold arbitrary bytes (a space is `Ġ`, a newline `Ċ`).

/// The character standing for each byte.
pub fn byte_to_char(b: u8) -> char {
    maps().to_char[usize::from(b)]
}

/// The byte a character stands for, if it is in the alphabet.
pub fn char_to_byte(c: char) -> Option<u8> {
    let maps = maps();
    let code = c as u32;
    if code < 256 {
        // A printable byte stands for itself.
        let b = code as u8;
        return (maps.to_char[usize::from(b)] == c).then_some(b);
    }
    // The others are U+0100 + n, in byte order.
    maps.high.get((code - 256) as usize).copied()
}

/// The vocabulary form of `bytes` (`b" world"` is `"Ġworld"`): for writing vocabularies.
pub fn bytes_to_token(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}

struct Maps {
    to_char: [char; 256],
    /// The byte for U+0100 + i.
    high: Vec<u8>,
}

fn maps() -> &'static Maps {
    static MAPS: std::sync::OnceLock<Maps> = std::sync::OnceLock::new();
    MAPS.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut to_char = ['\0'; 256];
        let mut high = Vec::new();
        for b in 0..=255u8 {
            to_char[usize::from(b)] = if printable(b) {
                char::from(b)
            } else {
                high.push(b);
                // At most 256 + 68: always a valid scalar value.
                char::from_u32(255 + high.len() as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
            };
        }
        Maps { to_char, high }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_characters_and_round_trip() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
        assert_eq!(bytes_to_token(b" world\n"), "ĠworldĊ");
    }
}
