//! `{{variable}}` templates in action targets, argv, URLs and bodies, and the
//! label-value check that runs before any rendered value leaves the engine.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stdx::url_shape::Piece;

/// A string with `{{variable}}` placeholders, filled in per incident.
///
/// Variables: `{{service}}` and `{{instance}}` (the values of the signal's
/// `service_label` and `instance_label`), `{{label.NAME}}` (any label of the
/// series), `{{signal}}` and `{{rule}}`. Anything else is a validation error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Template(
    /// The template text.
    pub String,
);

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Text copied as is.
    Literal(String),
    /// A variable to substitute.
    Var(Var),
}

/// A template variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    /// Value of the signal's service label.
    Service,
    /// Value of the signal's instance label.
    Instance,
    /// Value of the named label.
    Label(String),
    /// The signal name.
    Signal,
    /// The rule name.
    Rule,
}

impl Var {
    fn from_name(name: &str) -> Option<Var> {
        match name {
            "service" => Some(Var::Service),
            "instance" => Some(Var::Instance),
            "signal" => Some(Var::Signal),
            "rule" => Some(Var::Rule),
            _ => {
                let label = name.strip_prefix("label.")?;
                is_label_name(label).then(|| Var::Label(label.to_owned()))
            }
        }
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Service => f.write_str("service"),
            Var::Instance => f.write_str("instance"),
            Var::Label(name) => write!(f, "label.{name}"),
            Var::Signal => f.write_str("signal"),
            Var::Rule => f.write_str("rule"),
        }
    }
}

/// Why a template does not parse; the text is the validation message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    /// `{{name}}` with a name that is not a template variable.
    #[error(
        "unknown template variable {0:?} (known: service, instance, signal, rule, label.NAME)"
    )]
    UnknownVariable(String),
    /// A `{{` without its `}}`.
    #[error("unclosed \"{{{{\" at byte {0}")]
    Unclosed(usize),
}

impl Template {
    /// Splits the text into literals and variables; `{{ name }}` may have
    /// spaces inside the braces.
    pub(crate) fn parse(&self) -> Result<Vec<Part>, Vec<TemplateError>> {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut rest = self.0.as_str();
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                errors.push(TemplateError::Unclosed(offset + open));
                rest = "";
                break;
            };
            let name = after[..close].trim();
            match Var::from_name(name) {
                Some(var) => parts.push(Part::Var(var)),
                None => errors.push(TemplateError::UnknownVariable(name.to_owned())),
            }
            offset += open + 2 + close + 2;
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if errors.is_empty() {
            Ok(parts)
        } else {
            Err(errors)
        }
    }

    /// Whether the text has any `{{`.
    pub(crate) fn has_variables(&self) -> bool {
        self.0.contains("{{")
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What templates are filled in from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Labels of the series.
    pub labels: &'a BTreeMap<String, String>,
    /// Name of the signal's service label.
    pub service_label: &'a str,
    /// Name of the signal's instance label.
    pub instance_label: &'a str,
    /// Signal name.
    pub signal: &'a str,
    /// Rule name.
    pub rule: &'a str,
}

/// A label value that may not be substituted into an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnsafeLabel {
    /// The series has no such label.
    #[error("label {0:?} is missing on the series")]
    Missing(String),
    /// The value does not match the safe pattern.
    #[error("label {name:?} has unsafe value {value:?} (allowed: {SAFE_VALUE_RULE})")]
    Unsafe {
        /// Label name.
        name: String,
        /// Offending value.
        value: String,
    },
    /// The value is safe in itself but would leave the URL component it
    /// stands in (a port after a host, a user name, another path segment).
    #[error("{0}")]
    UrlShape(stdx::url_shape::ShapeError),
}

/// The rule [`is_safe_label_value`] enforces, for messages.
pub const SAFE_VALUE_RULE: &str = "^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$ without \"..\"";

/// Whether a label value may be substituted into an action.
///
/// Label values come from whatever exports the metrics, so they are
/// untrusted input that ends up in argv, URLs and API object names. The
/// pattern admits host names, pod and deployment names, `host:port`,
/// `ns/name` and e-mail-like ids, and nothing a shell, a URL or a path would
/// read specially: no spaces, quotes, `$`, backticks, `;`, `|`, `&`, newlines,
/// no leading `-` (option injection) and no `..` (path traversal). It is
/// checked on every substitution, before any executor sees the value; the
/// alternative of escaping per executor was rejected because one forgotten
/// escape is one incident too many.
pub fn is_safe_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && bytes.len() <= 253
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@/-".contains(b))
        && !value.contains("..")
}

/// Whether `name` is a valid Prometheus label name.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Fills in parsed template parts; every label value is checked first.
pub(crate) fn render(parts: &[Part], ctx: &Context<'_>) -> Result<String, UnsafeLabel> {
    let mut out = String::new();
    for piece in pieces(parts, ctx)? {
        match piece {
            Piece::Literal(text) | Piece::Value { value: text, .. } => out.push_str(text),
        }
    }
    Ok(out)
}

/// Fills in the parts of a URL template (a webhook's or an agent's `url`):
/// every label value is checked as by [`render`], and then against the
/// component of the URL the template puts it in
/// ([`stdx::url_shape`]), so that no value changes the scheme, userinfo,
/// host, port or path structure beyond its own part. Nothing is sent to a
/// URL that fails.
pub(crate) fn render_url(parts: &[Part], ctx: &Context<'_>) -> Result<String, UnsafeLabel> {
    stdx::url_shape::render(&pieces(parts, ctx)?).map_err(UnsafeLabel::UrlShape)
}

/// Why the variables of a URL template cannot all be placed in a URL
/// component, for `heal runbooks check`: a variable where the scheme goes,
/// or right after an `${env:...}` reference with no literal `/` between
/// them, would be refused on every render.
pub(crate) fn url_template_problem(t: &Template) -> Option<String> {
    use stdx::url_shape::{components, Component};
    let parts = t.parse().ok()?;
    let pieces: Vec<Piece<'_>> = parts
        .iter()
        .map(|part| match part {
            Part::Literal(text) => Piece::Literal(text),
            // The runbook's own names: text, like the literals.
            Part::Var(Var::Signal | Var::Rule) => Piece::Literal("x"),
            Part::Var(_) => Piece::Value {
                name: "",
                value: "x",
            },
        })
        .collect();
    let vars = parts.iter().filter_map(|p| match p {
        Part::Var(v @ (Var::Service | Var::Instance | Var::Label(_))) => Some(v),
        _ => None,
    });
    for (var, component) in vars.zip(components(&pieces)) {
        match component {
            Component::Scheme => {
                return Some(format!(
                    "{{{{{var}}}}} stands where the URL's scheme is: a label value cannot choose it"
                ))
            }
            Component::Unknown => {
                return Some(format!(
                    "{{{{{var}}}}} follows an ${{env:...}} reference without a `/` between them: \
                     where a label value would land in the URL cannot be known; put a literal `/` before it"
                ))
            }
            _ => {}
        }
    }
    None
}

/// The parts with label values looked up and checked; the signal's and the
/// rule's names come from the runbook and count as its text.
fn pieces<'a>(parts: &'a [Part], ctx: &Context<'a>) -> Result<Vec<Piece<'a>>, UnsafeLabel> {
    parts
        .iter()
        .map(|part| {
            Ok(match part {
                Part::Literal(text) => Piece::Literal(text),
                Part::Var(Var::Signal) => Piece::Literal(ctx.signal),
                Part::Var(Var::Rule) => Piece::Literal(ctx.rule),
                Part::Var(var) => {
                    let name = match var {
                        Var::Service => ctx.service_label,
                        Var::Instance => ctx.instance_label,
                        Var::Label(name) => name.as_str(),
                        Var::Signal | Var::Rule => unreachable!("handled above"),
                    };
                    let value = ctx
                        .labels
                        .get(name)
                        .ok_or_else(|| UnsafeLabel::Missing(name.to_owned()))?;
                    if !is_safe_label_value(value) {
                        return Err(UnsafeLabel::Unsafe {
                            name: name.to_owned(),
                            value: value.clone(),
                        });
                    }
                    Piece::Value { name, value }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template(s.to_owned())
    }

    #[test]
    fn parses_variables_and_literals() {
        let parts = t("deploy/{{ service }}-{{label.zone}}").parse().unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Literal("deploy/".into()),
                Part::Var(Var::Service),
                Part::Literal("-".into()),
                Part::Var(Var::Label("zone".into())),
            ]
        );
    }

    #[test]
    fn reports_every_bad_variable() {
        let errors = t("{{svc}}/{{label.bad-name}}/{{rule").parse().unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "unknown template variable \"svc\" (known: service, instance, signal, rule, label.NAME)",
                "unknown template variable \"label.bad-name\" (known: service, instance, signal, rule, label.NAME)",
                "unclosed \"{{\" at byte 27",
            ]
        );
    }

    #[test]
    fn safe_label_values() {
        for ok in [
            "checkout",
            "checkout-0",
            "10.0.0.1:9090",
            "ns/pod",
            "a@b.c",
            "x_y",
        ] {
            assert!(is_safe_label_value(ok), "{ok}");
        }
        for bad in [
            "",
            "; rm -rf /",
            "$(id)",
            "`id`",
            "a\nb",
            "../etc/passwd",
            "a/../b",
            "-rf",
            "a b",
            "a;b",
            "a|b",
            "é",
            &"a".repeat(254),
        ] {
            assert!(!is_safe_label_value(bad), "{bad:?}");
        }
        assert!(is_safe_label_value(&"a".repeat(253)));
    }

    #[test]
    fn render_checks_every_label_value() {
        let mut labels = BTreeMap::new();
        labels.insert("service".to_owned(), "checkout".to_owned());
        labels.insert("instance".to_owned(), "$(id)".to_owned());
        let ctx = Context {
            labels: &labels,
            service_label: "service",
            instance_label: "instance",
            signal: "sig",
            rule: "r",
        };
        let render_str = |s: &str| render(&t(s).parse().unwrap(), &ctx);
        assert_eq!(
            render_str("{{rule}}:{{signal}}:{{service}}"),
            Ok("r:sig:checkout".to_owned())
        );
        assert_eq!(
            render_str("{{instance}}").unwrap_err().to_string(),
            "label \"instance\" has unsafe value \"$(id)\" (allowed: ^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}$ without \"..\")"
        );
        assert_eq!(
            render_str("{{label.zone}}").unwrap_err().to_string(),
            "label \"zone\" is missing on the series"
        );
    }

    #[test]
    fn url_values_stay_in_their_component() {
        let mut labels = BTreeMap::new();
        labels.insert("service".to_owned(), "checkout".to_owned());
        let ctx = |labels: &BTreeMap<String, String>| {
            render_url(
                &t("http://{{instance}}:18081/hook/{{service}}").parse().unwrap(),
                &Context {
                    labels,
                    service_label: "service",
                    instance_label: "instance",
                    signal: "sig",
                    rule: "r",
                },
            )
        };
        labels.insert("instance".to_owned(), "127.0.0.1".to_owned());
        assert_eq!(ctx(&labels), Ok("http://127.0.0.1:18081/hook/checkout".to_owned()));
        for bad in ["127.0.0.1:18082/", "evil@127.0.0.1", "127.0.0.1:18082"] {
            labels.insert("instance".to_owned(), bad.to_owned());
            assert_eq!(
                ctx(&labels).unwrap_err().to_string(),
                format!("label \"instance\" has value {bad:?}, which would change the URL beyond the host it stands in")
            );
        }
        labels.insert("instance".to_owned(), "h".to_owned());
        labels.insert("service".to_owned(), "a/b".to_owned());
        assert!(matches!(ctx(&labels), Err(UnsafeLabel::UrlShape(_))));
    }

    #[test]
    fn url_templates_whose_values_cannot_be_placed_are_reported() {
        assert_eq!(url_template_problem(&t("http://{{instance}}:1/{{rule}}/{{label.x}}")), None);
        assert_eq!(url_template_problem(&t("${env:HOOK}/{{service}}")), None);
        assert_eq!(
            url_template_problem(&t("${env:HOOK}{{service}}")).unwrap(),
            "{{service}} follows an ${env:...} reference without a `/` between them: where a label value would land in the URL cannot be known; put a literal `/` before it"
        );
        assert_eq!(
            url_template_problem(&t("{{label.scheme}}://h/")).unwrap(),
            "{{label.scheme}} stands where the URL's scheme is: a label value cannot choose it"
        );
    }
}
