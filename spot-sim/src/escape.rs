//! Text that comes from a target (a process name or command line, a cgroup or pod path, a
//! request path or header value) is shown only through this module: a `comm` of
//! `"\x1b]0;PWNED\x07"` must not retitle the operator's terminal, a `\n` in it must not forge a
//! log line, a U+202E must not make "lruc" read as "curl", and a U+FFFE must not end the SVG
//! report as XML. [`is_unsafe`] is the one rule; [`untrusted`] applies it where such text
//! enters (and to logs), [`inert`] where text already escaped is shown again (the report's
//! terminal summary; `report/html.rs` adds HTML escaping on top).

use std::fmt::Write as _;

/// Whether `c` must not reach a terminal, a log or a page as itself:
/// - control characters (Cc: C0, DEL, C1), which drive terminals and split lines;
/// - the bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which
///   reorder what follows them on screen;
/// - the line and paragraph separators U+2028 and U+2029, which viewers break lines at;
/// - the noncharacters, U+FFFE and U+FFFF among them, which XML 1.0 does not allow
///   (surrogates cannot occur in a `str`; in bytes they are invalid UTF-8, escaped as bytes).
pub fn is_unsafe(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
        || matches!(c, '\u{2028}' | '\u{2029}')
        || (0xFDD0..=0xFDEF).contains(&u)
        || u & 0xFFFE == 0xFFFE
}

/// `bytes` as text safe anywhere: ASCII controls as `\xNN`, other [`is_unsafe`] characters as
/// `\u{NNNN}`, bytes that are not UTF-8 (a lone surrogate's encoding among them) as `\xNN`,
/// and the backslash itself as `\x5c`, so an escape cannot be faked. Everything else,
/// accented letters and other scripts included, is kept.
pub fn untrusted_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, true);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`untrusted_bytes`] of a string.
pub fn untrusted(s: impl AsRef<[u8]>) -> String {
    untrusted_bytes(s.as_ref())
}

/// A path the same way (paths are bytes on Linux).
pub fn untrusted_path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    untrusted_bytes(p.as_os_str().as_bytes())
}

/// Text that went through [`untrusted`] where it entered, shown again: the same rule, but a
/// backslash is left alone (it is the start of an escape already made). Applying it to text
/// that was escaped at its source changes nothing; applying it to anything else makes it safe.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_char(&mut out, c, false);
    }
    out
}

fn push_char(out: &mut String, c: char, escape_backslash: bool) {
    if c == '\\' && escape_backslash {
        out.push_str("\\x5c");
    } else if is_unsafe(c) {
        if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_newlines_and_backslashes_are_escaped_printable_text_is_kept() {
        assert_eq!(
            untrusted("\x1b]0;PWNED\x07\x1b[2J"),
            "\\x1b]0;PWNED\\x07\\x1b[2J"
        );
        assert_eq!(untrusted("a\nINFO forged"), "a\\x0aINFO forged");
        assert_eq!(untrusted("back\\slash"), "back\\x5cslash");
        assert_eq!(untrusted("é ü 日本"), "é ü 日本");
        assert_eq!(untrusted("curl 8.1 /latest"), "curl 8.1 /latest");
        assert_eq!(untrusted_bytes(&[0, 0x7f, 0xff]), "\\x00\\x7f\\xff");
        assert_eq!(untrusted("\u{85}"), "\\u{0085}");
    }

    #[test]
    fn bidi_controls_separators_and_xml_invalid_code_points_are_escaped() {
        // "lruc" behind a RIGHT-TO-LEFT OVERRIDE shows as "curl" unescaped.
        assert_eq!(untrusted("\u{202e}lruc"), "\\u{202e}lruc");
        for c in [
            '\u{061c}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{2028}',
            '\u{2029}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{fdd0}',
            '\u{1fffe}',
            '\u{10ffff}',
        ] {
            let shown = untrusted(c.to_string());
            assert!(shown.starts_with("\\u{") && !shown.contains(c), "{c:?}");
            assert_eq!(inert(&c.to_string()), shown);
        }
        assert_eq!(untrusted("\u{2069}\u{fffd}"), "\\u{2069}\u{fffd}");
    }

    #[test]
    fn a_lone_surrogate_in_bytes_is_escaped_byte_by_byte() {
        // U+D800 encoded as if it were a scalar value (CESU/WTF-8): not UTF-8.
        assert_eq!(untrusted_bytes(b"a\xed\xa0\x80b"), "a\\xed\\xa0\\x80b");
        assert_eq!(untrusted_bytes(b"\xef\xbf\xbe"), "\\u{fffe}");
    }

    #[test]
    fn inert_changes_nothing_already_escaped_and_makes_anything_else_safe() {
        for raw in ["\u{202e}lruc\x1b[2J", "a\\b", "plain", "\u{fffe}"] {
            let once = untrusted(raw);
            assert_eq!(inert(&once), once, "{raw:?}");
            assert!(!inert(raw).chars().any(is_unsafe), "{raw:?}");
        }
    }
}
