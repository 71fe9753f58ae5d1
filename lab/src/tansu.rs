//! A real Kafka-protocol broker of its own, for tests and benches: tansu
//! (`cargo install tansu --features dynostore,libsql`; `.ci/run` installs it
//! in `~/.cache/heal-tools/bin`), on a free loopback port, its messages in
//! memory ([`Tansu::start`]: a restarted broker starts empty) or in a SQLite
//! file of its own ([`Tansu::start_durable`]: [`Tansu::kill`] and
//! [`Tansu::restart`] keep what it acknowledged).
//!
//! Both wait until it listens; [`Tansu::create_topic`] makes a topic with
//! its partitions; dropping it stops it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::orchestrate::{free_port, terminate, wait_until, TempDir};

/// The broker's program: `TANSU_BIN`, else `tansu` on the PATH, else
/// `~/.cache/heal-tools/bin/tansu`.
pub fn bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return Ok(p.into());
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return Ok(p);
    }
    let p = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/heal-tools/bin/tansu");
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::unavailable(
            "no tansu broker (TANSU_BIN, PATH, ~/.cache/heal-tools/bin): `cargo install tansu --version 0.6.0 --locked --features dynostore` (.ci/run does)",
        ))
    }
}

/// A running tansu broker.
#[derive(Debug)]
pub struct Tansu {
    bin: PathBuf,
    child: Option<Child>,
    /// The address it listens on and advertises (loopback unless
    /// [`Tansu::start_durable_on`]).
    host: String,
    port: u16,
    storage: &'static str,
    dir: TempDir,
}

impl Tansu {
    /// Starts a broker and waits until it listens.
    ///
    /// # Errors
    /// Unavailable without tansu; failed when it does not start.
    pub fn start() -> Result<Tansu> {
        Tansu::launch("memory://tansu/", "127.0.0.1")
    }

    /// Starts a broker that keeps its messages in `tansu.db` in a
    /// directory of its own (tansu's libsql engine, which needs the
    /// `libsql` feature), and waits until it listens.
    ///
    /// # Errors
    /// As [`Tansu::start`].
    pub fn start_durable() -> Result<Tansu> {
        Tansu::launch("sqlite://tansu.db", "127.0.0.1")
    }

    /// [`Tansu::start_durable`], listening on (and advertising) `host`, an
    /// address of this machine: a Docker network's gateway, so that
    /// containers on that network reach it (as does this machine).
    ///
    /// # Errors
    /// As [`Tansu::start`].
    pub fn start_durable_on(host: &str) -> Result<Tansu> {
        Tansu::launch("sqlite://tansu.db", host)
    }

    fn launch(storage: &'static str, host: &str) -> Result<Tansu> {
        let mut broker = Tansu {
            bin: bin()?,
            child: None,
            host: host.to_owned(),
            port: free_port()?,
            storage,
            dir: TempDir::new("heal-tansu")?,
        };
        broker.run()?;
        Ok(broker)
    }

    fn run(&mut self) -> Result<()> {
        let url = format!("tcp://{}", self.brokers());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .map_err(|e| Error::failed(format!("opening the broker's log: {e}")))?;
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", self.storage])
            // A `sqlite://` file is relative to the working directory.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Error::failed(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| Error::failed(format!("starting {}: {e}", self.bin.display())))?;
        self.child = Some(child);
        let port = self.port;
        let addr = self
            .brokers()
            .parse()
            .map_err(|e| Error::failed(format!("listener address {}: {e}", self.brokers())))?;
        if wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
        .is_none()
        {
            return Err(Error::failed(format!(
                "tansu did not listen on port {port} in 30 s: {}",
                self.log_tail()
            )));
        }
        Ok(())
    }

    /// SIGKILL, as a crashed host would stop it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (and, when durable, the same file).
    ///
    /// # Errors
    /// As [`Tansu::start`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.run()
    }

    /// The end of the broker's log, for an error message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `host:port`, as clients take it.
    pub fn brokers(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Creates `topic` with `partitions`.
    ///
    /// # Errors
    /// Failed when tansu refuses.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let out = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.brokers())])
            .output()
            .map_err(|e| Error::failed(format!("running tansu topic create: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::failed(format!(
                "creating topic {topic}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            terminate(child, Duration::from_secs(5));
        }
    }
}
