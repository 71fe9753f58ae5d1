//! The pieces of `heal logs templates` and `heal bench loghub`, without I/O or
//! clock: the caller reads the files and times [`mine_messages`].
//!
//! ```text
//! heal bench loghub DIR, per system <Sys>:
//!   truth_csv = read DIR/<Sys>/<Sys>_2k.log_structured_corrected.csv
//!   log       = read DIR/<Sys>/<Sys>_2k.log            (when a log_format is known)
//!   prepared  = loghub::prepare(<Sys>, Some(log), truth_csv, loghub::known_format(<Sys>))
//!   t0 = now; mined = loghub::mine_messages(&prepared.messages, &config); dt = now - t0
//!   scores    = loghub::score_mined(&prepared.truth, &mined)
//!   print GA, PA, FGA, lines / dt
//! heal logs templates FILE --log-format FMT [-o OUT]:
//!   messages  = loghub::messages(text, FILE, &LoghubFormat::new(..))
//!               (or loghub::messages_or_lines to mine unreadable lines whole)
//!   mined     = loghub::mine_messages(&messages, &config)
//!   loghub::write_templates_csv(out, &mined)
//! ```

use std::io::Write;

use crate::error::{ConfigError, LineError, LineErrorAt, LoghubError};
use crate::format::{LoghubFormat, LoghubFormatConfig};
use crate::hash::FxHashMap;
use crate::miner::{Change, MinerConfig, MinerStats, TemplateId, TemplateMiner};
use crate::score::{score, Scores};

/// The header layouts (logparser `log_format`) of the Loghub-2k systems in
/// `shared/datasets/loghub-dev` (its README).
pub const DEV_FORMATS: [(&str, &str); 8] = [
    ("HDFS", "<Date> <Time> <Pid> <Level> <Component>: <Content>"),
    ("Hadoop", r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>"),
    ("Spark", "<Date> <Time> <Level> <Component>: <Content>"),
    ("Zookeeper", r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>"),
    (
        "BGL",
        "<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>",
    ),
    ("HPC", "<LogId> <Node> <Component> <State> <Time> <Flag> <Content>"),
    (
        "Thunderbird",
        r"<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> <Component>(\[<PID>\])?: <Content>",
    ),
    ("Windows", "<Date> <Time>, <Level>                  <Component>    <Content>"),
];

/// The layout of a system of [`DEV_FORMATS`].
pub fn known_format(system: &str) -> Option<&'static str> {
    DEV_FORMATS
        .iter()
        .find(|(s, _)| *s == system)
        .map(|(_, f)| *f)
}

/// The ground truth of one system: message and true template per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    /// `Content` column.
    pub contents: Vec<String>,
    /// `EventTemplate` column.
    pub templates: Vec<String>,
}

/// Reads a `<Sys>_2k.log_structured[_corrected].csv` (named `file` in errors).
pub fn read_truth(csv_text: &str, file: &str) -> Result<Truth, LoghubError> {
    let err = |reason: String| LoghubError::Csv {
        file: file.to_string(),
        reason,
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_text.trim_start_matches('\u{feff}').as_bytes());
    let headers = r.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| err(format!("no `{name}` column")))
    };
    let (content, template) = (col("Content")?, col("EventTemplate")?);
    let line_id = col("LineId").ok();
    let mut truth = Truth {
        contents: Vec::new(),
        templates: Vec::new(),
    };
    for (k, rec) in r.records().enumerate() {
        let row = k + 1;
        let rec = rec.map_err(|e| err(format!("row {row}: {e}")))?;
        if let Some(i) = line_id {
            if rec.get(i).map(str::trim) != Some(row.to_string().as_str()) {
                return Err(err(format!(
                    "row {row}: LineId {:?}, expected {row}",
                    rec.get(i).unwrap_or("")
                )));
            }
        }
        let get = |i: usize, name: &str| {
            rec.get(i)
                .map(str::to_string)
                .ok_or_else(|| err(format!("row {row}: no `{name}` value")))
        };
        let t = get(template, "EventTemplate")?;
        if t.is_empty() {
            return Err(err(format!("row {row}: empty EventTemplate")));
        }
        truth.contents.push(get(content, "Content")?);
        truth.templates.push(t);
    }
    if truth.templates.is_empty() {
        return Err(err("no rows".into()));
    }
    Ok(truth)
}

/// The messages of a log text, one per line, read with `format`; a line that
/// does not match is an error naming `source` and the line.
pub fn messages<'a>(
    text: &'a str,
    source: &str,
    format: &LoghubFormat,
) -> Result<Vec<&'a str>, LineErrorAt> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            format.message(line).ok_or_else(|| {
                LineError::NoMatch {
                    kind: "log format",
                    format: format.layout().to_string(),
                }
                .at(source, i as u64 + 1)
            })
        })
        .collect()
}

/// Like [`messages`], but a line the layout does not read is mined whole
/// (a stack-trace line, a banner); returns the messages and how many lines
/// were taken whole, for a CLI that reports rather than stops.
pub fn messages_or_lines<'a>(text: &'a str, format: &LoghubFormat) -> (Vec<&'a str>, usize) {
    let mut whole = 0;
    let msgs = text
        .lines()
        .map(|line| {
            format.message(line).unwrap_or_else(|| {
                whole += 1;
                line.trim()
            })
        })
        .collect();
    (msgs, whole)
}

/// One system ready to mine and score.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// System name.
    pub system: String,
    /// Messages to mine, one per line.
    pub messages: Vec<String>,
    /// True templates, one per line.
    pub truth: Vec<String>,
    /// Whether the messages come from the raw log read with its header layout
    /// (true) or from the ground truth's `Content` column (no layout known).
    pub from_log: bool,
    /// Lines whose message read from the log differs from `Content`.
    pub content_mismatches: usize,
}

/// Prepares a system: messages from the raw log with its header layout when
/// both are given, else from the truth's `Content` column.
pub fn prepare(
    system: &str,
    log_text: Option<&str>,
    truth_csv: &str,
    log_format: Option<&str>,
) -> Result<Prepared, LoghubError> {
    let truth = read_truth(truth_csv, &format!("{system} ground truth"))?;
    let (messages, from_log) = match (log_text, log_format) {
        (Some(text), Some(layout)) => {
            let fmt = LoghubFormat::new(&LoghubFormatConfig::new(layout)).map_err(|e| {
                LoghubError::Csv {
                    file: format!("{system} log"),
                    reason: e.to_string(),
                }
            })?;
            let msgs = messages(text, &format!("{system} log"), &fmt)?;
            (
                msgs.into_iter().map(str::to_string).collect::<Vec<_>>(),
                true,
            )
        }
        _ => (truth.contents.clone(), false),
    };
    if messages.len() != truth.templates.len() {
        return Err(LoghubError::Length {
            predicted: messages.len(),
            truth: truth.templates.len(),
        });
    }
    let content_mismatches = messages
        .iter()
        .zip(&truth.contents)
        .filter(|(m, c)| m != c)
        .count();
    Ok(Prepared {
        system: system.to_string(),
        messages,
        truth: truth.templates,
        from_log,
        content_mismatches,
    })
}

/// Mined lines: each line's template id and the template's final text.
#[derive(Debug, Clone)]
pub struct MinedLines {
    /// The id each line's template has at the end (merges resolved).
    pub ids: Vec<TemplateId>,
    /// The id [`TemplateMiner::add`] returned for each line, before later
    /// merges: what a live source counts the line under.
    pub online_ids: Vec<TemplateId>,
    texts: FxHashMap<TemplateId, String>,
    /// The miner's counters.
    pub stats: MinerStats,
    /// Live templates at the end.
    pub templates: usize,
    /// The miner's approximate heap bytes at the end.
    pub memory_bytes: usize,
}

impl MinedLines {
    /// Template text of line `i` (0-based).
    pub fn template(&self, i: usize) -> &str {
        &self.texts[&self.ids[i]]
    }

    /// Template texts, one per line.
    pub fn texts(&self) -> impl Iterator<Item = &str> + '_ {
        self.ids.iter().map(|id| self.texts[id].as_str())
    }
}

/// Mines `messages` in order with one miner, then gives every line the final
/// template of its template id (a template generalised or merged after a line
/// was mined is that line's template too, as in Drain's batch output).
pub fn mine_messages<S: AsRef<str>>(
    messages: &[S],
    config: &MinerConfig,
) -> Result<MinedLines, ConfigError> {
    let mut miner = TemplateMiner::new(config.clone())?;
    let mut ids = Vec::with_capacity(messages.len());
    // The last text seen for each id, for ids whose template is evicted later.
    let mut last_text: FxHashMap<TemplateId, String> = FxHashMap::default();
    for m in messages {
        let o = miner.add(m.as_ref());
        if o.change != Change::None {
            if let Some(t) = miner.template(o.id) {
                last_text.insert(o.id, t.text.to_string());
            }
        }
        ids.push(o.id);
    }
    let online_ids = ids.clone();
    let mut texts: FxHashMap<TemplateId, String> = FxHashMap::default();
    let mut cache: FxHashMap<TemplateId, TemplateId> = FxHashMap::default();
    for id in &mut ids {
        let orig = *id;
        let resolved = *cache
            .entry(orig)
            .or_insert_with(|| miner.resolve(orig).unwrap_or(orig));
        texts.entry(resolved).or_insert_with(|| {
            miner
                .template(resolved)
                .map(|t| t.text.to_string())
                .or_else(|| last_text.get(&orig).cloned())
                .unwrap_or_default()
        });
        *id = resolved;
    }
    Ok(MinedLines {
        ids,
        online_ids,
        texts,
        stats: miner.stats(),
        templates: miner.len(),
        memory_bytes: miner.memory_bytes(),
    })
}

/// Scores mined lines against true templates, predicted groups being the
/// template texts (`loghub_score.py`'s default when a template column exists).
pub fn score_mined(truth: &[String], mined: &MinedLines) -> Result<Scores, LoghubError> {
    let texts: Vec<&str> = mined.texts().collect();
    score(truth, &texts, Some(&texts))
}

/// Writes `template_id,template` rows, one per line, with a header: the
/// output of `heal logs templates`.
pub fn write_templates_csv<W: Write>(out: W, mined: &MinedLines) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["template_id", "template"])?;
    for (i, id) in mined.ids.iter().enumerate() {
        w.write_record([id.to_string().as_str(), mined.template(i)])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUTH: &str = "LineId,Level,Content,EventId,EventTemplate\n\
        1,INFO,open file 12,E1,open file <*>\n\
        2,INFO,\"close, then 7\",E2,\"close, then <*>\"\n\
        3,WARN,open file 9,E1,open file <*>\n";
    const LOG: &str = "INFO open file 12\nINFO close, then 7\nWARN open file 9\n";

    #[test]
    fn prepare_mine_score_write() {
        let p = prepare("Toy", Some(LOG), TRUTH, Some("<Level> <Content>")).unwrap();
        assert!(p.from_log);
        assert_eq!(p.content_mismatches, 0);
        let mined = mine_messages(&p.messages, &MinerConfig::default()).unwrap();
        let s = score_mined(&p.truth, &mined).unwrap();
        assert_eq!((s.ga, s.pa, s.fga), (1.0, Some(1.0), 1.0));
        let mut out = Vec::new();
        write_templates_csv(&mut out, &mined).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], "template_id,template");
        assert_eq!(rows.len(), 4);
        assert!(rows[2].ends_with(",\"close, then <*>\""), "{}", rows[2]);
        assert_eq!(rows[1].split(',').next(), rows[3].split(',').next());
    }

    #[test]
    fn lenient_messages_take_unreadable_lines_whole() {
        let f = LoghubFormat::new(&LoghubFormatConfig::new("<Level> <Content>")).unwrap();
        let (m, whole) = messages_or_lines("INFO a b\n  trace\nWARN c\n", &f);
        assert_eq!(m, ["a b", "trace", "c"]);
        assert_eq!(whole, 1);
    }

    #[test]
    fn without_a_layout_the_content_column_is_mined() {
        let p = prepare("Toy", None, TRUTH, None).unwrap();
        assert!(!p.from_log);
        assert_eq!(p.messages[1], "close, then 7");
    }

    #[test]
    fn bad_inputs_name_file_and_row() {
        let e = read_truth("LineId,Content\n1,x\n", "t.csv").unwrap_err();
        assert_eq!(e.to_string(), "t.csv: no `EventTemplate` column");
        let e = read_truth("LineId,Content,EventTemplate\n2,x,y\n", "t.csv").unwrap_err();
        assert_eq!(e.to_string(), "t.csv: row 1: LineId \"2\", expected 1");
        let e = prepare(
            "Toy",
            Some("INFO a\nnope\n"),
            TRUTH,
            Some("<Level> <Content>"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Toy log:2: does not match the log format \"<Level> <Content>\""
        );
    }

    #[test]
    fn dev_formats_compile() {
        for (sys, f) in DEV_FORMATS {
            assert!(
                LoghubFormat::new(&LoghubFormatConfig::new(f)).is_ok(),
                "{sys}"
            );
        }
        assert_eq!(known_format("HDFS"), Some(DEV_FORMATS[0].1));
        assert_eq!(known_format("Nope"), None);
    }
}
