//! Text from outside (label values, file names, messages) on its way to a
//! person: one escape per output format, and table padding that takes any
//! width.
//!
//! Label values are whatever an exporter sent: newlines, carriage returns,
//! ESC sequences that recolour or clear a terminal, `<script>`, 70 kB. Every
//! table and report heal prints passes each such value through the escape of
//! its format here, so that a value shows as text and never acts as markup or
//! as a terminal command. (HTML and XML have theirs in `remediate::report`.)

use std::borrow::Cow;

/// Whether a character must not reach a terminal raw: C0 and C1 controls
/// (newline, carriage return, ESC, DEL...) and the bidirectional overrides
/// and isolates that reorder what follows them ("Trojan Source",
/// CVE-2021-42574).
fn is_terminal_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text for a terminal: control and bidi characters become visible Rust-style
/// escapes (`\n`, `\r`, `\t`, `\u{1b}`), everything else is kept, and a
/// backslash is kept as is (the result is for reading, not for parsing back).
pub fn terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_terminal_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text for inline Markdown (a heading, a table cell, a list item): shown
/// as the same characters, never read as markup. HTML's `<`, `>` and `&`
/// become entities (raw HTML passes through Markdown renderers), the
/// characters that start emphasis, code, links or escape (`\` `` ` `` `*`
/// `[` `]`) and the table separator `|` are backslash-escaped, and control
/// characters become visible escapes as for a [`terminal`], so a newline
/// can never end a heading or a table row. `_` is kept: inside a word it is
/// not emphasis in CommonMark, and every metric name has one.
pub fn markdown(text: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '<' | '>' | '&' | '\\' | '`' | '*' | '[' | ']' | '|');
    if !text.chars().any(|c| special(c) || is_terminal_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '[' | ']' | '|' => {
                out.push('\\');
                out.push(c);
            }
            c if is_terminal_unsafe(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` padded with spaces on the right to `width` characters.
///
/// `format!("{text:<width$}")` panics ("Formatting argument out of range")
/// once `width` exceeds 65,535, which one long label value is enough for;
/// this has no such limit.
pub fn pad_right(text: &str, width: usize) -> String {
    let n = text.chars().count();
    let mut out = String::with_capacity(text.len() + width.saturating_sub(n));
    out.push_str(text);
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(n)));
    out
}

/// `text` padded with spaces on the left to `width` characters; see
/// [`pad_right`].
pub fn pad_left(text: &str, width: usize) -> String {
    let n = text.chars().count();
    let mut out = String::with_capacity(text.len() + width.saturating_sub(n));
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(n)));
    out.push_str(text);
    out
}

/// `text` percent-encoded for a URL: every byte outside RFC 3986's
/// unreserved set (`A-Z a-z 0-9 - _ . ~`) and outside `keep` becomes
/// `%XX`. With no `keep` it fits a query value or a path segment; a path
/// keeps `/`.
pub fn percent_encode(text: &str, keep: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_bytes_and_what_is_asked() {
        assert_eq!(percent_encode("count(a[5s])", b""), "count%28a%5B5s%5D%29");
        assert_eq!(percent_encode("a-b_c.d~e", b""), "a-b_c.d~e");
        assert_eq!(percent_encode("/tmp/a b", b"/"), "/tmp/a%20b");
        assert_eq!(percent_encode("é&=", b""), "%C3%A9%26%3D");
    }

    #[test]
    fn terminal_escapes_controls_and_bidi_only() {
        assert!(matches!(terminal("checkout-0 é ✓"), Cow::Borrowed(_)));
        assert_eq!(
            terminal("a\nb\rc\td\u{1b}[2Je\u{7f}f\u{202e}g"),
            "a\\nb\\rc\\td\\u{1b}[2Je\\u{7f}f\\u{202e}g"
        );
    }

    #[test]
    fn markdown_escapes_markup_html_and_line_breaks() {
        assert!(matches!(
            markdown("http_error_ratio{a=\"b\"}"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            markdown("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            markdown("a\n# b | `c` [x](y) *z* \\"),
            "a\\n# b \\| \\`c\\` \\[x\\](y) \\*z\\* \\\\"
        );
        assert_eq!(markdown("a & b"), "a &amp; b");
    }

    #[test]
    fn padding_takes_any_width() {
        assert_eq!(pad_right("ab", 4), "ab  ");
        assert_eq!(pad_left("ab", 4), "  ab");
        assert_eq!(pad_right("abcdef", 4), "abcdef");
        assert_eq!(pad_left("é", 2), " é");
        let long = "x".repeat(70_000);
        assert_eq!(pad_right(&long, 70_001).len(), 70_001);
        assert_eq!(pad_left("", 70_000).len(), 70_000);
    }
}
