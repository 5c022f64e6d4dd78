//! Which program a file holds, told by its first bytes: a Wasm component, a
//! core module, or what it is instead (for the error message).
//!
//! Kept apart from the rest of `image`, with no dependency, so that the
//! fuzzer (`fuzz/`) builds it on its own.

/// The two kinds of Wasm program wpod runs.
pub(super) enum Kind {
    Component,
    Module,
}

/// Tells a component from a core module by the header; anything else is
/// named for the error message.
pub(super) fn detect(bytes: &[u8]) -> Result<Kind, &'static str> {
    match bytes {
        [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => Ok(Kind::Module),
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => Ok(Kind::Component),
        [0, b'a', b's', b'm', ..] => Err("a WebAssembly file of an unknown version (truncated?)"),
        [0x7f, b'E', b'L', b'F', ..] => Err("a native ELF executable"),
        [b'M', b'Z', ..] => Err("a native Windows executable"),
        [0xcf, 0xfa, 0xed, 0xfe, ..] | [0xca, 0xfe, 0xba, 0xbe, ..] => {
            Err("a native macOS executable")
        }
        [b'#', b'!', ..] => Err("a script"),
        [] => Err("an empty file"),
        _ if bytes
            .iter()
            .take(512)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
        {
            Err("a text file")
        }
        _ => Err("not WebAssembly (no `\\0asm` header)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert!(matches!(detect(b"\0asm\x01\0\0\0"), Ok(Kind::Module)));
        assert!(matches!(detect(b"\0asm\x0d\0\x01\0"), Ok(Kind::Component)));
        assert_eq!(
            detect(b"\x7fELF\x02").err(),
            Some("a native ELF executable")
        );
        assert_eq!(detect(b"hello world\n").err(), Some("a text file"));
        assert_eq!(
            detect(b"\0as").err(),
            Some("not WebAssembly (no `\\0asm` header)")
        );
    }
}
