//! A real PostgreSQL server of its own, for tests and benches: Debian's
//! `postgresql` package (`/usr/lib/postgresql/<version>/bin`), a fresh
//! cluster in a temporary directory, listening on a free loopback port.
//!
//! PostgreSQL refuses to run as root. When this process is root (CI, the
//! project's machines), `initdb` and `postgres` run as the package's
//! `postgres` user through `runuser` (argv, no shell), and the cluster's
//! directory is handed to that user first. Otherwise they run as the
//! caller.
//!
//! The server trusts loopback connections (`-A trust`): it holds nothing
//! but test data and listens on 127.0.0.1 only ([`PgServer::start_on`]
//! listens on another address of this machine, a Docker network's
//! gateway, and trusts every client there). `fsync` is off: a test
//! that kills the server does so to test heal, not PostgreSQL's disk.
//!
//! [`PgServer::kill`] stops it the hard way (SIGKILL of the postmaster,
//! as a crashed host would); [`PgServer::restart`] starts it again on the
//! same directory and port; dropping it stops it (fast shutdown) and
//! removes the cluster.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::orchestrate::{free_port, terminate, wait_until, TempDir};

/// The role the tests connect as (created by `initdb -U`).
pub const USER: &str = "heal";

/// Where Debian installs PostgreSQL's server programs: the newest
/// `/usr/lib/postgresql/<version>/bin` holding `initdb`.
pub fn bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| {
            Error::unavailable(format!(
                "PostgreSQL is not installed ({}: {e}): `apt-get install postgresql` (.ci/run does)",
                root.display()
            ))
        })?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(|| {
        Error::unavailable(format!(
            "no PostgreSQL server under {} (no bin/initdb): `apt-get install postgresql`",
            root.display()
        ))
    })
}

/// Whether this process runs as root (`id -u`; no `unsafe`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A running PostgreSQL cluster of its own.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    /// Holds `data/` (the cluster) and the server's log; removed on drop.
    dir: TempDir,
    /// The address it listens on (loopback unless [`PgServer::start_on`]).
    host: String,
    port: u16,
    as_postgres: bool,
    child: Option<Child>,
}

impl PgServer {
    /// Creates a cluster and starts it; ready to take connections.
    ///
    /// # Errors
    ///
    /// PostgreSQL is not installed, `initdb` failed, or the server did not
    /// accept connections within 30 s (the error carries its log's end).
    pub fn start() -> Result<PgServer> {
        PgServer::start_on("127.0.0.1")
    }

    /// [`PgServer::start`], listening on `host`, an address of this
    /// machine (a Docker network's gateway, so that containers on that
    /// network reach it), trusting every client (test data only).
    ///
    /// # Errors
    ///
    /// As [`PgServer::start`].
    pub fn start_on(host: &str) -> Result<PgServer> {
        host.parse::<std::net::IpAddr>()
            .map_err(|e| Error::failed(format!("listen address {host}: {e}")))?;
        let bin = bin_dir()?;
        let dir = TempDir::new("heal-postgres")?;
        let as_postgres = is_root();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| Error::io("creating the cluster directory", e))?;
        if as_postgres {
            // The server's user must own the cluster and reach it.
            for p in [dir.path(), &data] {
                let status = Command::new("chown")
                    .args(["postgres:postgres", &p.display().to_string()])
                    .status()
                    .map_err(|e| Error::io("running chown", e))?;
                if !status.success() {
                    return Err(Error::failed(format!(
                        "chown postgres {} failed",
                        p.display()
                    )));
                }
            }
        }
        let mut initdb = Self::command(&bin, as_postgres, "initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdin(Stdio::null());
        let out = initdb
            .output()
            .map_err(|e| Error::io("running initdb", e))?;
        if !out.status.success() {
            return Err(Error::failed(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        if host != "127.0.0.1" {
            let hba = data.join("pg_hba.conf");
            let mut text =
                std::fs::read_to_string(&hba).map_err(|e| Error::io("reading pg_hba.conf", e))?;
            text.push_str("host all all 0.0.0.0/0 trust\n");
            std::fs::write(&hba, text).map_err(|e| Error::io("writing pg_hba.conf", e))?;
        }
        let mut server = PgServer {
            bin,
            dir,
            host: host.to_owned(),
            port: free_port()?,
            as_postgres,
            child: None,
        };
        server.launch()?;
        Ok(server)
    }

    fn command(bin: &Path, as_postgres: bool, program: &str) -> Command {
        if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        } else {
            Command::new(bin.join(program))
        }
    }

    /// Starts the server on the cluster and waits until it accepts
    /// connections.
    fn launch(&mut self) -> Result<()> {
        let data = self.dir.path().join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| Error::io("opening the server log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("opening the server log", e))?;
        let child = Self::command(&self.bin, self.as_postgres, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", &format!("listen_addresses={}", self.host)])
            .args(["-c", &format!("unix_socket_directories={}", data.display())])
            .args(["-c", "fsync=off", "-c", "max_connections=100"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::io("starting postgres", e))?;
        self.child = Some(child);
        let addr = self.addr();
        let ready = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            // The port answers once the postmaster listens; pg_isready
            // then says whether it takes connections (not still starting
            // up or recovering).
            TcpStream::connect(addr).is_ok()
                && Command::new(self.bin.join("pg_isready"))
                    .args(["-h", &self.host, "-p", &self.port.to_string(), "-U", USER])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
        if ready.is_none() {
            return Err(Error::unavailable(format!(
                "postgres did not accept connections within 30 s; its log ends:\n{}",
                self.log_tail()
            )));
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The last lines of the server's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Where it listens.
    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(
            self.host.parse().expect("an address checked at start"),
            self.port,
        )
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `postgres` as [`USER`].
    pub fn url(&self) -> String {
        format!("postgres://{USER}@{}:{}/postgres", self.host, self.port)
    }

    /// The postmaster's pid (from `postmaster.pid`), while it runs.
    fn postmaster_pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        Some(text.lines().next()?.trim().to_owned())
    }

    /// Sends `signal` to the postmaster (through `kill(1)`).
    fn signal(&self, signal: &str) {
        if let Some(pid) = self.postmaster_pid() {
            let _ = Command::new("kill")
                .args([signal, &pid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Kills the server as a crash would: SIGKILL of the postmaster and of
    /// every process it started (its backends and helpers, which would
    /// otherwise linger on their shared memory and make a restart refuse
    /// to start), then waits until all of them are gone.
    pub fn kill(&mut self) {
        let postmaster = self.postmaster_pid();
        let children: Vec<String> = postmaster.as_deref().map(children_of).unwrap_or_default();
        self.signal("-KILL");
        for pid in &children {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            // As root the child is `runuser`, the postmaster's parent: let
            // it see its child die and reap it before it is stopped. Stopped
            // first (its SIGTERM handler does not wait for the child), it
            // leaves the postmaster a zombie for pid 1 to reap, which some
            // pid 1s never do, and a zombie's pid in `postmaster.pid` makes
            // the restarted server refuse the cluster as still in use.
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            terminate(&mut child, Duration::from_secs(5));
        }
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            postmaster
                .iter()
                .chain(&children)
                .all(|p| !p.parse().is_ok_and(crate::procfs::is_running))
        });
        let addr = self.addr();
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            TcpStream::connect(addr).is_err()
        });
    }

    /// Starts the server again on the same cluster and port (after
    /// [`PgServer::kill`]); it recovers from its WAL first.
    ///
    /// # Errors
    ///
    /// As [`PgServer::start`].
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.kill();
        }
        // A killed postmaster leaves its pid file; postgres checks that
        // pid and takes over once it is gone. A zombie still counts for
        // postgres (its pid answers `kill 0`) but runs nothing: the file
        // goes.
        if let Some(pid) = self.postmaster_pid() {
            if !pid.parse().is_ok_and(crate::procfs::is_running) {
                let _ = std::fs::remove_file(self.dir.path().join("data/postmaster.pid"));
            }
        }
        self.launch()
    }
}

/// The pids whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces, so read
            // after its closing parenthesis.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid == pid).then_some(name)
        })
        .collect()
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Fast shutdown: disconnect clients, stop.
        self.signal("-INT");
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }
}
