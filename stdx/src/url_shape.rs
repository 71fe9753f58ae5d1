//! The shape of a URL template: which component of the URL each substituted
//! value stands in, and whether a value stays inside it.
//!
//! A label value filled into `http://{{instance}}:18081/hook` must be a host
//! and nothing more: `127.0.0.1:18082/` would send the request to another
//! port, `evil@127.0.0.1` would turn the host into a user name. So every
//! value is checked against the component the template puts it in, before
//! the URL is used: the rendered URL has the template's scheme, userinfo,
//! host, port and path structure, with the value only filling its own part.
//! (Issue 10, point 3. The action templates of `remediate` and the probe
//! URLs of `ingest` both check here.)

use std::fmt;

/// A piece of a URL template being rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text of the template, copied as is.
    Literal(&'a str),
    /// A value substituted for a variable (`name` for messages).
    Value {
        /// The variable or label name.
        name: &'a str,
        /// The value.
        value: &'a str,
    },
}

/// The component of a URL a value stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Before `://`: no value may choose the scheme.
    Scheme,
    /// Before an `@` of the authority.
    Userinfo,
    /// The host, with a literal `:port` after it.
    Host,
    /// The port, after a literal `host:`.
    Port,
    /// The whole authority's host part, no literal port: `host` or `host:port`.
    HostPort,
    /// A path segment.
    Path,
    /// The query.
    Query,
    /// The fragment.
    Fragment,
    /// After an `${env:...}` reference that hides the scheme and authority,
    /// before any literal `/`: where it lands cannot be known.
    Unknown,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Scheme => "scheme",
            Component::Userinfo => "userinfo",
            Component::Host => "host",
            Component::Port => "port",
            Component::HostPort => "host and port",
            Component::Path => "path segment",
            Component::Query => "query",
            Component::Fragment => "fragment",
            Component::Unknown => "position after an ${env:...} reference",
        }
    }

    /// Whether `value` stays within this component.
    fn admits(self, value: &str) -> bool {
        let host_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_';
        let b = value.as_bytes();
        match self {
            Component::Scheme | Component::Unknown => false,
            Component::Userinfo | Component::Host => !b.is_empty() && b.iter().all(|&c| host_char(c)),
            Component::Port => !b.is_empty() && b.len() <= 5 && b.iter().all(u8::is_ascii_digit),
            Component::HostPort => {
                let (host, port) = match value.split_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (value, None),
                };
                Component::Host.admits(host) && port.is_none_or(|p| Component::Port.admits(p))
            }
            // One segment: a `/` would add segments, `?` or `#` would end
            // the path; `..` or `.` alone would walk it.
            Component::Path => {
                !b.is_empty()
                    && value != "."
                    && value != ".."
                    && !b.iter().any(|c| matches!(c, b'/' | b'\\' | b'?' | b'#' | b'%'))
                    && !b.iter().any(|c| c.is_ascii_control() || *c == b' ')
            }
            Component::Query => !b
                .iter()
                .any(|c| matches!(c, b'#' | b'&' | b'=' | b'%' | b'+' | b' ') || c.is_ascii_control()),
            Component::Fragment => !b.iter().any(|c| c.is_ascii_control() || *c == b' '),
        }
    }
}

/// A value that would leave its component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// The variable or label name.
    pub name: String,
    /// The value.
    pub value: String,
    /// Where the template puts it.
    pub component: Component,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "label {:?} has value {:?}, which would change the URL beyond the {} it stands in",
            self.name,
            self.value,
            self.component.name()
        )
    }
}

impl std::error::Error for ShapeError {}

/// The component each value of `pieces` stands in, in order, read from the
/// template's literal text alone (values never move a boundary).
pub fn components(pieces: &[Piece<'_>]) -> Vec<Component> {
    // Walk the literal text, tracking where we are; a value is placed at the
    // current state, with a look-ahead into the literals for the authority.
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        Scheme,
        Authority,
        Path,
        Query,
        Fragment,
        AfterEnv,
    }
    let literal_after = |i: usize| -> String {
        pieces[i + 1..]
            .iter()
            .map(|p| match p {
                Piece::Literal(t) => *t,
                Piece::Value { .. } => "\u{0}",
            })
            .collect()
    };
    let mut at = At::Scheme;
    // The authority's literal text so far (for `@` and `:` before a value).
    let mut authority = String::new();
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Value { .. } => {
                let c = match at {
                    At::Scheme => Component::Scheme,
                    At::AfterEnv => Component::Unknown,
                    At::Path => Component::Path,
                    At::Query => Component::Query,
                    At::Fragment => Component::Fragment,
                    At::Authority => {
                        // The rest of the authority after this value.
                        let rest = literal_after(i);
                        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                        let rest = &rest[..end];
                        if rest.contains('@') {
                            Component::Userinfo
                        } else {
                            let host_part = authority.rsplit('@').next().unwrap_or("");
                            if host_part.contains(':') {
                                Component::Port
                            } else if rest.contains(':') {
                                Component::Host
                            } else {
                                Component::HostPort
                            }
                        }
                    }
                };
                out.push(c);
                if at == At::Authority {
                    authority.push('\u{0}');
                }
            }
            Piece::Literal(text) => {
                let mut rest = *text;
                while !rest.is_empty() {
                    match at {
                        At::Scheme => {
                            if let Some(env) = rest.strip_prefix("${env:") {
                                // The scheme and authority come from the
                                // environment; only a literal `/` after the
                                // reference tells where the path begins.
                                let close = env.find('}').map_or(env.len(), |c| c + 1);
                                rest = &env[close..];
                                at = At::AfterEnv;
                            } else if let Some(p) = rest.find("://") {
                                rest = &rest[p + 3..];
                                at = At::Authority;
                            } else {
                                rest = "";
                            }
                        }
                        At::AfterEnv => match rest.find(['/', '?', '#']) {
                            Some(p) => {
                                at = match rest.as_bytes()[p] {
                                    b'/' => At::Path,
                                    b'?' => At::Query,
                                    _ => At::Fragment,
                                };
                                rest = &rest[p + 1..];
                            }
                            None => rest = "",
                        },
                        At::Authority => match rest.find(['/', '?', '#']) {
                            Some(p) => {
                                authority.push_str(&rest[..p]);
                                at = match rest.as_bytes()[p] {
                                    b'/' => At::Path,
                                    b'?' => At::Query,
                                    _ => At::Fragment,
                                };
                                rest = &rest[p + 1..];
                            }
                            None => {
                                authority.push_str(rest);
                                rest = "";
                            }
                        },
                        At::Path => match rest.find(['?', '#']) {
                            Some(p) => {
                                at = if rest.as_bytes()[p] == b'?' {
                                    At::Query
                                } else {
                                    At::Fragment
                                };
                                rest = &rest[p + 1..];
                            }
                            None => rest = "",
                        },
                        At::Query => match rest.find('#') {
                            Some(p) => {
                                at = At::Fragment;
                                rest = &rest[p + 1..];
                            }
                            None => rest = "",
                        },
                        At::Fragment => rest = "",
                    }
                }
            }
        }
    }
    out
}

/// Renders `pieces` into a URL after checking that every value stays within
/// the component the template puts it in.
///
/// # Errors
///
/// The first value that would leave its component.
pub fn render(pieces: &[Piece<'_>]) -> Result<String, ShapeError> {
    let components = components(pieces);
    let mut out = String::new();
    let mut next = components.iter();
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Value { name, value } => {
                let component = *next.next().expect("one component per value");
                if !component.admits(value) {
                    return Err(ShapeError {
                        name: (*name).to_owned(),
                        value: (*value).to_owned(),
                        component,
                    });
                }
                out.push_str(value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v<'a>(value: &'a str) -> Piece<'a> {
        Piece::Value {
            name: "instance",
            value,
        }
    }

    fn l(text: &str) -> Piece<'_> {
        Piece::Literal(text)
    }

    #[test]
    fn each_value_gets_the_component_of_its_place() {
        let pieces = [
            l("http://"),
            v("u"),
            l("@"),
            v("h"),
            l(":"),
            v("1"),
            l("/a/"),
            v("p"),
            l("?q="),
            v("x"),
            l("#"),
            v("f"),
        ];
        use Component::*;
        assert_eq!(
            components(&pieces),
            [Userinfo, Host, Port, Path, Query, Fragment]
        );
        assert_eq!(components(&[l("http://"), v("h"), l("/x")]), [HostPort]);
        assert_eq!(components(&[v("h"), l("://x/")]), [Scheme]);
        assert_eq!(
            components(&[l("${env:HOOK}"), v("a"), l("/"), v("b")]),
            [Unknown, Path]
        );
    }

    #[test]
    fn values_that_would_move_the_request_are_refused() {
        let hook = |value| render(&[l("http://"), v(value), l(":18081/hook")]);
        assert_eq!(hook("127.0.0.1").unwrap(), "http://127.0.0.1:18081/hook");
        assert_eq!(hook("checkout-0.svc").unwrap(), "http://checkout-0.svc:18081/hook");
        for bad in ["127.0.0.1:18082/", "127.0.0.1:18082", "evil@127.0.0.1", "a/b", "a?b", "a#b", ""] {
            let e = hook(bad).unwrap_err();
            assert_eq!(e.component, Component::Host, "{bad}");
        }
        assert_eq!(
            hook("evil@127.0.0.1").unwrap_err().to_string(),
            "label \"instance\" has value \"evil@127.0.0.1\", which would change the URL beyond the host it stands in"
        );
        let auth = |value| render(&[l("http://"), v(value), l("/x")]);
        assert!(auth("h:9100").is_ok());
        assert!(auth("h:9100:1").is_err());
        assert!(auth("u@h").is_err());
        let path = |value| render(&[l("http://h/a/"), v(value), l("/b")]);
        assert!(path("ns:pod@x").is_ok());
        for bad in ["ns/pod", "..", ".", "a?b", "a#b", "a%2f"] {
            assert!(path(bad).is_err(), "{bad}");
        }
        assert!(render(&[v("http"), l("://h/")]).is_err());
        assert!(render(&[l("http://h/?a="), v("x&b=y")]).is_err());
        assert!(render(&[l("http://h/?a="), v("x/y:z@w")]).is_ok());
        assert!(render(&[l("${env:HOOK}"), v("x")]).is_err());
        assert!(render(&[l("${env:HOOK}/"), v("x")]).is_ok());
    }
}
