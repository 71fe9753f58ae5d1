//! The Atom feed of closed incidents (RFC 4287): what `GET /feed.atom`
//! serves and `heal replay --report` writes, so that a feed reader, a chat
//! bridge or a ticket system learns of every incident heal closed.
//!
//! Only resolved incidents are entries: an entry's `updated` is its
//! resolution time, and an open incident would have to change its entry
//! (and readers would show it again) every time it moved.

use std::fmt::Write as _;

use super::{escape, status, title};
use crate::engine::{series_selector, Incident};
use crate::time::rfc3339;

/// The Atom feed of the resolved incidents among `incidents`, newest
/// resolution first. `feed_url` is where the feed is served (its `id` and
/// `self` link); each entry links to `incidents/ID` beside it (for
/// `http://host:9090/feed.atom`, `http://host:9090/incidents/inc-000001`).
/// `updated_ms` is the feed's `updated` (the time of the newest change the
/// caller knows of: no clock is read here).
pub fn atom(incidents: &[Incident], feed_url: &str, updated_ms: i64) -> String {
    let base = &feed_url[..feed_url.rfind('/').map_or(0, |i| i + 1)];
    atom_linked(incidents, feed_url, updated_ms, &|inc: &Incident| {
        format!("{base}incidents/{}", inc.id)
    })
}

/// As [`atom`], with each entry's link made by `link` (a relative link is
/// resolved against the feed's location: `inc-000001.html` beside a
/// `feed.atom` written to disk).
pub fn atom_linked(
    incidents: &[Incident],
    feed_url: &str,
    updated_ms: i64,
    link: &dyn Fn(&Incident) -> String,
) -> String {
    let mut closed: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.resolved_ms.is_some())
        .collect();
    // Newest first; ties by id so the bytes never depend on input order.
    closed.sort_by(|a, b| b.resolved_ms.cmp(&a.resolved_ms).then(a.id.cmp(&b.id)));

    let mut out = String::new();
    let url = escape(feed_url);
    let _ = writeln!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n  <id>{url}</id>\n  <title>heal: closed incidents</title>\n  <updated>{}</updated>\n  <link rel=\"self\" type=\"application/atom+xml\" href=\"{url}\"/>\n  <author><name>heal</name></author>\n  <generator>heal</generator>",
        rfc3339(updated_ms)
    );
    for inc in closed {
        let resolved = inc
            .resolved_ms
            .expect("only resolved incidents are entries");
        let (word, rest) = status(inc);
        let summary = format!(
            "{word} {rest} Series {}; rule {}; {} step(s) planned.",
            series_selector(&inc.series),
            inc.rule,
            inc.actions.len()
        );
        let _ = writeln!(
            out,
            "  <entry>\n    <id>urn:heal:incident:{}</id>\n    <title>{}</title>\n    <updated>{}</updated>\n    <published>{}</published>\n    <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n    <category term=\"{}\"/>\n    <summary type=\"text\">{}</summary>\n  </entry>",
            escape(&inc.id),
            escape(&title(inc, None)),
            rfc3339(resolved),
            rfc3339(inc.opened_ms),
            escape(&link(inc)),
            escape(inc.severity.as_str()),
            escape(&summary)
        );
    }
    out.push_str("</feed>\n");
    out
}
