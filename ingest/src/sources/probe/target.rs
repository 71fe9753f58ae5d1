//! Probe URLs: a template over a target's labels, and the check every label value passes before
//! it becomes part of a URL.

use crate::series::Labels;

/// One piece of a probe URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlPart {
    /// Text copied as is.
    Literal(String),
    /// The value of this label of the target series, checked with [`is_safe_target_value`].
    Label(String),
}

/// A probe URL: literal text and label values of the target series, e.g.
/// `http://` + `{{label.address}}` + `/healthz`.
///
/// The template language itself (`{{instance}}`, `{{label.NAME}}`) belongs to the runbooks; the
/// binary resolves it into these parts, so this crate only ever substitutes label values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(Vec<UrlPart>);

/// Why a target was not probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadTarget {
    /// The target series has no such label.
    Missing(String),
    /// The label's value is not safe in a URL.
    Unsafe { label: String, value: String },
    /// The rendered text is not a plain `http://` URL.
    NotHttp(String),
    /// The value would leave the URL component it stands in.
    Shape(stdx::url_shape::ShapeError),
}

impl std::fmt::Display for BadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadTarget::Missing(label) => write!(f, "label {label:?} is missing on the target"),
            BadTarget::Unsafe { label, value } => write!(
                f,
                "label {label:?} has value {value:?}, not a host, port or DNS name"
            ),
            BadTarget::NotHttp(url) => write!(f, "{url:?} is not a plain http:// URL"),
            BadTarget::Shape(e) => write!(f, "{e}"),
        }
    }
}

impl UrlTemplate {
    /// A template made of `parts`.
    pub fn new(parts: Vec<UrlPart>) -> Self {
        UrlTemplate(parts)
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[UrlPart] {
        &self.0
    }

    /// The URL for the target with `labels`, every substituted value checked first; the result
    /// must parse as an `http://` URL with a host.
    pub(crate) fn render(&self, labels: &Labels) -> Result<reqwest::Url, BadTarget> {
        let mut pieces = Vec::with_capacity(self.0.len());
        for part in &self.0 {
            match part {
                UrlPart::Literal(text) => pieces.push(stdx::url_shape::Piece::Literal(text)),
                UrlPart::Label(name) => {
                    let value = labels
                        .get(name)
                        .ok_or_else(|| BadTarget::Missing(name.clone()))?;
                    if !is_safe_target_value(value) {
                        return Err(BadTarget::Unsafe {
                            label: name.clone(),
                            value: value.to_owned(),
                        });
                    }
                    pieces.push(stdx::url_shape::Piece::Value { name, value });
                }
            }
        }
        // Each value stays in its component: `host:port` only where the
        // template has no port of its own, one segment in a path.
        let out = stdx::url_shape::render(&pieces).map_err(BadTarget::Shape)?;
        match reqwest::Url::parse(&out) {
            Ok(url) if url.scheme() == "http" && url.host_str().is_some_and(|h| !h.is_empty()) => {
                Ok(url)
            }
            _ => Err(BadTarget::NotHttp(out)),
        }
    }
}

/// Whether a label value may go into a probe URL: a host name, an IPv4 address, `host:port`,
/// or a DNS-safe name for a path segment.
///
/// Label values come from whatever Prometheus scrapes, so they are untrusted: a value with `@`
/// would turn the host into a user name (`http://evil@victim/`), one with `/`, `?` or `#`
/// would move the request to another path, and `..` walks up one. Only ASCII letters, digits,
/// `.`, `-`, `_` and `:` pass, starting with a letter or a digit, at most 253 bytes (the
/// longest DNS name), without `..`. IPv6 literals (`[::1]:80`) are refused: the lab and most
/// service discovery give IPv4 or names, and brackets would widen what a value can say.
pub fn is_safe_target_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(b))
        && !value.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> UrlTemplate {
        UrlTemplate::new(vec![
            UrlPart::Literal("http://".into()),
            UrlPart::Label("address".into()),
            UrlPart::Literal("/healthz".into()),
        ])
    }

    #[test]
    fn safe_values_are_hosts_and_ports_only() {
        for ok in ["127.0.0.1:8080", "web-0", "web.svc.cluster.local:80", "a_b"] {
            assert!(is_safe_target_value(ok), "{ok}");
        }
        for bad in [
            "",
            "evil@127.0.0.1",
            "127.0.0.1/admin",
            "h?x=1",
            "h#f",
            "a b",
            "a\nb",
            "a..b",
            "-h",
            "[::1]:80",
            "é",
            &"a".repeat(254),
        ] {
            assert!(!is_safe_target_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn renders_checked_urls() {
        let labels: Labels = r#"up{address="127.0.0.1:8001"}"#.parse().unwrap();
        assert_eq!(
            template().render(&labels).unwrap().as_str(),
            "http://127.0.0.1:8001/healthz"
        );
        let hostile: Labels = r#"up{address="evil.example@127.0.0.1:8001"}"#.parse().unwrap();
        assert_eq!(
            template().render(&hostile).unwrap_err().to_string(),
            r#"label "address" has value "evil.example@127.0.0.1:8001", not a host, port or DNS name"#
        );
        let missing: Labels = r#"up{instance="a"}"#.parse().unwrap();
        assert_eq!(
            template().render(&missing).unwrap_err(),
            BadTarget::Missing("address".into())
        );
        let no_host = UrlTemplate::new(vec![
            UrlPart::Literal("http://:".into()),
            UrlPart::Label("address".into()),
        ]);
        assert!(matches!(
            no_host.render(&labels),
            Err(BadTarget::Shape(_))
        ));
        let no_host = UrlTemplate::new(vec![UrlPart::Literal("ftp://h/".into())]);
        assert!(matches!(no_host.render(&labels), Err(BadTarget::NotHttp(_))));
    }

    #[test]
    fn a_value_cannot_move_the_probe_to_another_port() {
        // Issue 10, 3: with a literal port in the template, a value with a
        // port of its own would have replaced it.
        let with_port = UrlTemplate::new(vec![
            UrlPart::Literal("http://".into()),
            UrlPart::Label("host".into()),
            UrlPart::Literal(":18081/healthz".into()),
        ]);
        let ok: Labels = r#"up{host="127.0.0.1"}"#.parse().unwrap();
        assert_eq!(
            with_port.render(&ok).unwrap().as_str(),
            "http://127.0.0.1:18081/healthz"
        );
        let moved: Labels = r#"up{host="127.0.0.1:18082"}"#.parse().unwrap();
        assert_eq!(
            with_port.render(&moved).unwrap_err().to_string(),
            r#"label "host" has value "127.0.0.1:18082", which would change the URL beyond the host it stands in"#
        );
    }
}
