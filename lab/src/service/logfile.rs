//! The service's log file (`--log-dir DIR`: `DIR/NAME.log`), one line per
//! request and per problem, in the layout
//! `<Date> <Time> <Level> <Component>: <Content>`:
//!
//! ```text
//! 2026-12-05 17:00:00,123 INFO web.access: GET / 200 in 3 ms
//! 2026-12-05 17:00:00,124 ERROR web.db: connection to 10.0.0.7:5432 refused (attempt 41); served from cache
//! ```
//!
//! Like a logger that cooperates with logrotate, it notices within a second
//! that its path was renamed away or truncated and reopens (creates) the
//! path; a line is written whole with one `write` of an `O_APPEND` file, so
//! a reader never sees half of it followed by another line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the path is checked for a rotation.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Open {
    file: File,
    ino: u64,
    checked: Instant,
}

/// An append-only log file that follows rotation.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    open: Mutex<Option<Open>>,
}

impl LogFile {
    /// A log at `path` (opened at the first line).
    pub fn new(path: PathBuf) -> LogFile {
        LogFile {
            path,
            open: Mutex::new(None),
        }
    }

    fn open(&self) -> std::io::Result<Open> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let ino = file.metadata()?.ino();
        Ok(Open {
            file,
            ino,
            checked: Instant::now(),
        })
    }

    /// Writes one line (`level`, `component`, `message`) stamped now.
    /// Failures are ignored: a service does not stop for its log.
    pub fn line(&self, level: &str, component: &str, message: &str) {
        self.write(&format_line(level, component, message));
    }

    /// Writes `text` (a whole line, newline included).
    fn write(&self, text: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let stale = match &*open {
            None => true,
            Some(o) if o.checked.elapsed() >= REOPEN_CHECK => {
                std::fs::metadata(&self.path).map_or(true, |m| m.ino() != o.ino)
            }
            Some(_) => false,
        };
        if stale {
            match self.open() {
                Ok(o) => *open = Some(o),
                Err(_) => return,
            }
        } else if let Some(o) = open.as_mut() {
            if o.checked.elapsed() >= REOPEN_CHECK {
                o.checked = Instant::now();
            }
        }
        if let Some(o) = open.as_mut() {
            let _ = o.file.write_all(text.as_bytes());
        }
    }
}

/// One line of the log, stamped now, newline included.
pub fn format_line(level: &str, component: &str, message: &str) -> String {
    format!(
        "{} {level} {component}: {message}\n",
        timestamp(stdx::Clock::now_ms(&stdx::SystemClock))
    )
}

/// The service's log: its file and its Kafka topic, each optional; a line
/// goes to both.
#[derive(Debug, Default)]
pub struct Log {
    file: Option<LogFile>,
    #[cfg(feature = "kafka")]
    kafka: Option<super::kafka_log::KafkaLog>,
}

impl Log {
    /// The log of `file` and, with `kafka` = (brokers, topic), a producer.
    ///
    /// # Errors
    ///
    /// `kafka` is given to a build without the `kafka` feature, or the
    /// producer cannot be made.
    pub fn new(
        file: Option<LogFile>,
        kafka: Option<&(String, String)>,
    ) -> crate::error::Result<Log> {
        #[cfg(feature = "kafka")]
        {
            let kafka = kafka
                .map(|(brokers, topic)| super::kafka_log::KafkaLog::new(brokers, topic))
                .transpose()?;
            Ok(Log { file, kafka })
        }
        #[cfg(not(feature = "kafka"))]
        match kafka {
            Some(_) => Err(crate::error::Error::usage(
                "--kafka needs heal-lab built with the `kafka` feature",
            )),
            None => Ok(Log { file }),
        }
    }

    /// One line to the file and the topic (nothing when neither is set).
    pub fn line(&self, level: &str, component: &str, message: &str) {
        #[cfg(feature = "kafka")]
        let wanted = self.file.is_some() || self.kafka.is_some();
        #[cfg(not(feature = "kafka"))]
        let wanted = self.file.is_some();
        if !wanted {
            return;
        }
        let text = format_line(level, component, message);
        if let Some(f) = &self.file {
            f.write(&text);
        }
        #[cfg(feature = "kafka")]
        if let Some(k) = &self.kafka {
            k.send(text.trim_end_matches('\n'));
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS,mmm` (UTC) of `ms` since the epoch.
pub fn timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02},{:03}",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00,000");
        // 2024-02-29 23:59:59.999 UTC.
        assert_eq!(timestamp(1_709_251_199_999), "2024-02-29 23:59:59,999");
        assert_eq!(timestamp(1_796_488_607_123), "2026-12-05 16:36:47,123");
    }

    #[test]
    fn a_renamed_log_is_reopened_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.log");
        let log = LogFile::new(path.clone());
        log.line("INFO", "web.access", "one");
        std::fs::rename(&path, dir.path().join("web.log.1")).unwrap();
        // Within the check interval the old file still gets lines.
        log.line("INFO", "web.access", "two");
        std::thread::sleep(REOPEN_CHECK);
        log.line("INFO", "web.access", "three");
        let old = std::fs::read_to_string(dir.path().join("web.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2, "{old}");
        assert!(new.ends_with(" INFO web.access: three\n"), "{new}");
    }
}
