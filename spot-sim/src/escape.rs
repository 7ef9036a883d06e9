//! Text that comes from a target (a process name, a cgroup or pod path, a request path or
//! header value) is shown only through [`untrusted`]: a `comm` of `"\x1b]0;PWNED\x07"` must not
//! retitle the operator's terminal, and a `\n` in it must not forge a log line.

use std::fmt::Write as _;

/// `bytes` with every byte outside printable ASCII (and the backslash itself, so an escape
/// cannot be faked) written as `\xNN`.
pub fn untrusted_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`untrusted_bytes`] of a string (UTF-8 beyond ASCII is escaped byte by byte too).
pub fn untrusted(s: impl AsRef<[u8]>) -> String {
    untrusted_bytes(s.as_ref())
}

/// A path the same way (paths are bytes on Linux).
pub fn untrusted_path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    untrusted_bytes(p.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_newlines_and_backslashes_are_escaped_printable_ascii_is_kept() {
        assert_eq!(
            untrusted("\x1b]0;PWNED\x07\x1b[2J"),
            "\\x1b]0;PWNED\\x07\\x1b[2J"
        );
        assert_eq!(untrusted("a\nINFO forged"), "a\\x0aINFO forged");
        assert_eq!(untrusted("back\\slash"), "back\\x5cslash");
        assert_eq!(untrusted("é"), "\\xc3\\xa9");
        assert_eq!(untrusted("curl 8.1 /latest"), "curl 8.1 /latest");
        assert_eq!(untrusted_bytes(&[0, 0x7f, 0xff]), "\\x00\\x7f\\xff");
    }
}
