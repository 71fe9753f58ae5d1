//! Property test of the control API's request bodies (silences, approvals,
//! false alarms, missed anomalies): mutated JSON and garbage, read and
//! checked as the handlers do, never a panic. See `stdx::fuzz` for the seed
//! and replay.

use stdx::fuzz::{check, garbage, mutated};

use super::control::{check_new_silence, Approval, NewSilence};
use super::marks::{FalseAlarmBody, MissedBody};

#[test]
fn control_api_bodies_never_panic() {
    let bases: [&[u8]; 4] = [
        br#"{"matchers":["service=checkout","instance=~web-[0-9]+","zone!=eu","rule!~x.*"],"starts_at":"-1h","duration":"2h30m","created_by":"ana","comment":"deploy"}"#,
        br#"{"by":"ana"}"#,
        br#"{"note":"not a real outage"}"#,
        br#"{"signal":"http_error_ratio","at":"2026-01-05T00:00:00Z","note":"pager"}"#,
    ];
    let now_ms = 1_767_571_200_000;
    check(
        "control_api_body",
        5000,
        |rng| {
            if rng.one_in(10) {
                garbage(rng, 256)
            } else {
                let base = *rng.pick(&bases);
                mutated(rng, base, 6)
            }
        },
        |body| {
            if let Ok(silence) = serde_json::from_slice::<NewSilence>(body) {
                let _ = check_new_silence(&silence, now_ms);
            }
            let _ = serde_json::from_slice::<Approval>(body);
            let _ = serde_json::from_slice::<FalseAlarmBody>(body);
            if let Ok(missed) = serde_json::from_slice::<MissedBody>(body) {
                let _ = crate::text::parse_time("at", &missed.at, now_ms);
            }
        },
    );
}
