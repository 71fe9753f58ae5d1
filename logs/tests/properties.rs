//! Property tests of the log line formats (Loghub `log_format`, JSON lines,
//! logfmt, regex) and of the template miner behind them: mutated lines and
//! garbage, each read (an error is fine) and mined without a panic. See
//! `stdx::fuzz` for the seed and replay.

use logs::{
    FormatConfig, JsonFormatConfig, LineFormat, LogfmtFormatConfig, LoghubFormatConfig,
    MinerConfig, RegexFormatConfig, TemplateMiner, TimeField,
};
use stdx::fuzz::{check, garbage, mutated};

fn time(field: &str, format: &str) -> Option<TimeField> {
    Some(TimeField {
        field: field.into(),
        format: format.into(),
    })
}

fn formats() -> Vec<(LineFormat, &'static str)> {
    let f = |c: FormatConfig| LineFormat::new(&c).expect("a valid format");
    vec![
        (
            f(FormatConfig::LogFormat(LoghubFormatConfig {
                log_format: "<Date> <Time> <Pid> <Level> <Component>: <Content>".into(),
                message: "Content".into(),
                time: time("Date,Time", "%y%m%d %H%M%S"),
            })),
            "240102 030405 143 INFO dfs.DataNode: Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106",
        ),
        (
            f(FormatConfig::Json(JsonFormatConfig {
                message: "msg".into(),
                fields: vec!["level".into(), "svc".into()],
                time: time("ts", "rfc3339"),
            })),
            r#"{"ts":"2026-01-05T00:00:00.123Z","level":"warn","svc":"checkout","msg":"payment \"declined\" for order 4512","n":[1,{"a":null}]}"#,
        ),
        (
            f(FormatConfig::Logfmt(LogfmtFormatConfig {
                message: "msg".into(),
                time: time("ts", "rfc3339"),
            })),
            r#"ts=2026-01-05T00:00:00Z level=info msg="connection to 10.0.0.7:5432 refused" retries=3 empty="#,
        ),
        (
            f(FormatConfig::Regex(RegexFormatConfig {
                regex: r"^(?P<ts>\d+) (?P<level>\w+) (?P<message>.*)$".into(),
                message: "message".into(),
                time: time("ts", "unix_s"),
            })),
            "1767571200 ERROR disk /dev/sda1 is 98% full",
        ),
        (f(FormatConfig::Plain), "plain text line with 42 numbers and 0xdeadbeef"),
    ]
}

#[test]
fn log_lines_never_panic() {
    let formats = formats();
    let mut miner = TemplateMiner::new(MinerConfig::default()).unwrap();
    check(
        "log_lines",
        8000,
        |rng| {
            let i = rng.below(formats.len());
            let bytes = if rng.one_in(10) {
                garbage(rng, 256)
            } else {
                mutated(rng, formats[i].1.as_bytes(), 6)
            };
            (i, String::from_utf8_lossy(&bytes).into_owned())
        },
        |(i, line)| {
            if let Ok(record) = formats[*i].0.parse(line) {
                let _ = miner.add(&record.message);
            }
        },
    );
    // Every base line reads, so the mutations start from something valid.
    for (format, line) in &formats {
        format.parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}
