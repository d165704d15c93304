//! Text that came from a peer, made safe to show. A user agent, a `reject` reason or a command
//! name is whatever bytes the peer chose: printed raw, an OSC sequence (`ESC ] 0 ; … BEL`) can
//! retitle the user's terminal and a CSI sequence (`ESC [ 31 m`) recolour or clear it. Every
//! tool that prints peer-supplied text passes it through [`printable`] first; JSON output is
//! already safe (serde escapes control characters).

/// `s` with every control character (C0, DEL and C1, as `char::is_control` defines them)
/// escaped as Rust does (`\u{1b}`, `\n`), so text from a peer cannot drive a terminal. Other
/// characters, non-ASCII ones included, are kept.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("/Bitcoin SV:1.2.2/ é"), "/Bitcoin SV:1.2.2/ é");
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }

    #[test]
    fn terminal_sequences_lose_their_escape_byte() {
        let ua = "/x\u{1b}]0;pwned\u{7}\u{1b}[31m\u{9b}y/";
        let p = printable(ua);
        assert!(!p.chars().any(char::is_control), "{p:?}");
        assert_eq!(p, "/x\\u{1b}]0;pwned\\u{7}\\u{1b}[31m\\u{9b}y/");
    }
}
