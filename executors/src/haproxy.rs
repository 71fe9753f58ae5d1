//! The `haproxy` executor: reroutes traffic through HAProxy's runtime API.
//!
//! The runtime API (HAProxy's "stats socket", configured with
//! `stats socket /run/haproxy/admin.sock level admin` or
//! `stats socket ipv4@127.0.0.1:9999 level admin`) takes one text command
//! per connection and answers until it closes the connection. This module
//! speaks it directly over a UNIX or TCP stream: no `socat`, no shell.
//!
//! Operations: set a server's state (`ready`, `drain`, `maint`) and weight,
//! and register or remove replicas at runtime (`add server` + `enable
//! server`, `disable server` + `del server`; HAProxy 2.5 or later, and a
//! backend with a dynamic balance algorithm such as `roundrobin`). Each
//! operation reads `show servers state BACKEND` before and after, so the
//! result says what the server was and checks that the change took effect.
//!
//! Why every name is checked here although label values were already
//! checked by the engine: the runtime API is a line protocol, and the safe
//! label pattern admits `/` and `@`, which mean something in a command. A
//! name reaches a command only as a [`Name`], whose pattern admits what
//! HAProxy itself admits in proxy and server names (letters, digits, `.`,
//! `_`, `-`, `:`); a newline or `;` (HAProxy's command separator) can never
//! smuggle in a second command. Commands are built only from checked parts
//! ([`Command`] has no public constructor taking text).
//!
//! How answers are read: HAProxy reports errors as text on an otherwise
//! normal answer, so success is recognised positively: an empty answer for
//! `set server`, `enable server` and `disable server`, `New server
//! registered.` for `add server`, `Server deleted.` for `del server`, a
//! version-1 table for `show servers state`. Anything else is HAProxy's
//! error message and is reported as such.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use remediate::action::{ActionResult, ApiAddressError, NameError};
pub use remediate::action::{ApiAddress, Name, MAX_WEIGHT};
use remediate::runbook::ServerState;

/// Most bytes read from one answer; a backend with thousands of servers
/// answers `show servers state` in well under this.
const MAX_ANSWER: u64 = 4 << 20;

/// Pause between two `del server` attempts while the server still has
/// connections (they finish on their own; the step's timeout bounds the
/// wait).
const DELETE_RETRY: Duration = Duration::from_millis(100);

/// `srv_admin_state` bit: forced maintenance (`set server ... state maint`,
/// `disable server`). From HAProxy's `enum srv_admin` (include/haproxy/
/// server-t.h): FMAINT 0x01, IMAINT 0x02, CMAINT 0x04, FDRAIN 0x08, IDRAIN
/// 0x10, RMAINT 0x20, HMAINT 0x40.
const ADMIN_FMAINT: u32 = 0x01;
/// `srv_admin_state` bits that put a server in maintenance for any reason.
const ADMIN_ANY_MAINT: u32 = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;
/// `srv_admin_state` bit: forced drain (`set server ... state drain`).
const ADMIN_FDRAIN: u32 = 0x08;
/// `srv_admin_state` bits that drain a server for any reason.
const ADMIN_ANY_DRAIN: u32 = 0x08 | 0x10;

/// What the runtime API executor may fail with. [`HaproxyError::retryable`]
/// says whether trying again could help.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// A backend or server name does not match the name pattern; nothing
    /// was sent.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A replica address is not `IP:PORT`; nothing was sent.
    #[error("refusing server address {0:?}: expected IPv4:PORT or [IPv6]:PORT")]
    InvalidAddress(String),
    /// A weight outside HAProxy's range; nothing was sent.
    #[error("refusing weight {0}: must be within [0, {MAX_WEIGHT}]")]
    InvalidWeight(u32),
    /// The runtime API address does not parse.
    #[error(transparent)]
    InvalidApi(#[from] ApiAddressError),
    /// Nothing listens at the address (HAProxy down or reloading, wrong
    /// path or port).
    #[error("connecting to HAProxy runtime API at {api}: {source}")]
    Connect {
        /// The address.
        api: ApiAddress,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke while sending or reading.
    #[error("talking to HAProxy runtime API at {api}: {source}")]
    Io {
        /// The address.
        api: ApiAddress,
        /// Why.
        source: std::io::Error,
    },
    /// HAProxy answered with an error message.
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused {
        /// The command sent.
        command: String,
        /// HAProxy's answer, trimmed.
        answer: String,
    },
    /// The server is not in the backend's state table.
    #[error("no server {server:?} in backend {backend:?} (servers: {known})")]
    NoSuchServer {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
        /// The servers the backend has, comma-separated.
        known: String,
    },
    /// A replica to register exists already with another address.
    #[error("server {backend}/{server} exists with address {existing}, not {wanted}")]
    Conflict {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
        /// Its current address.
        existing: String,
        /// The address asked for.
        wanted: String,
    },
    /// `show servers state` answered something that is not its table.
    #[error("reading `show servers state` answer: {0}")]
    Unparsable(String),
    /// HAProxy accepted the commands but the state read back differs.
    #[error("change not in effect: {0}")]
    NotApplied(String),
}

impl HaproxyError {
    /// Whether trying again could help: the API was unreachable (HAProxy
    /// reloading, socket not there yet), the connection broke, or a server
    /// to delete still had connections. A refused name, an unknown server
    /// or an invalid value stays refused.
    pub fn retryable(&self) -> bool {
        match self {
            HaproxyError::Connect { .. } | HaproxyError::Io { .. } => true,
            HaproxyError::Refused { answer, .. } => is_transient(answer),
            _ => false,
        }
    }
}

/// Answers that describe a passing condition rather than a mistake.
fn is_transient(answer: &str) -> bool {
    answer.contains("still has connections")
}

/// One runtime API command, built only from checked parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(String);

impl Command {
    /// `show servers state BACKEND`
    pub fn show_servers_state(backend: &Name) -> Command {
        Command(format!("show servers state {backend}"))
    }

    /// `set server BACKEND/SERVER state STATE`
    pub fn set_state(backend: &Name, server: &Name, state: ServerState) -> Command {
        Command(format!(
            "set server {backend}/{server} state {}",
            state.as_str()
        ))
    }

    /// `set server BACKEND/SERVER weight N`
    ///
    /// # Errors
    ///
    /// [`HaproxyError::InvalidWeight`] above [`MAX_WEIGHT`].
    pub fn set_weight(backend: &Name, server: &Name, weight: u32) -> Result<Command, HaproxyError> {
        if weight > MAX_WEIGHT {
            return Err(HaproxyError::InvalidWeight(weight));
        }
        Ok(Command(format!(
            "set server {backend}/{server} weight {weight}"
        )))
    }

    /// `add server BACKEND/SERVER ADDRESS` (the server starts in
    /// maintenance).
    pub fn add_server(backend: &Name, server: &Name, address: SocketAddr) -> Command {
        Command(format!("add server {backend}/{server} {address}"))
    }

    /// `enable server BACKEND/SERVER`
    pub fn enable_server(backend: &Name, server: &Name) -> Command {
        Command(format!("enable server {backend}/{server}"))
    }

    /// `disable server BACKEND/SERVER`
    pub fn disable_server(backend: &Name, server: &Name) -> Command {
        Command(format!("disable server {backend}/{server}"))
    }

    /// `del server BACKEND/SERVER`
    pub fn del_server(backend: &Name, server: &Name) -> Command {
        Command(format!("del server {backend}/{server}"))
    }

    /// The command line, without its newline.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client of one HAProxy runtime API. Holds no connection: the API's
/// non-interactive mode serves one command per connection, and a fresh
/// connection per command also survives HAProxy reloads.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    address: ApiAddress,
}

impl RuntimeApi {
    /// A client for the API at `address`.
    pub fn new(address: ApiAddress) -> RuntimeApi {
        RuntimeApi { address }
    }

    /// Sends one command and returns the whole answer. Has no timeout of
    /// its own: callers bound the whole operation (see [`run`]).
    ///
    /// # Errors
    ///
    /// [`HaproxyError::Connect`] or [`HaproxyError::Io`], both retryable.
    pub async fn send(&self, command: &Command) -> Result<String, HaproxyError> {
        let connect = |source| HaproxyError::Connect {
            api: self.address.clone(),
            source,
        };
        match &self.address {
            ApiAddress::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect)?;
                self.exchange(stream, command).await
            }
            ApiAddress::Tcp { host, port } => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let stream = tokio::net::TcpStream::connect((host, *port))
                    .await
                    .map_err(connect)?;
                self.exchange(stream, command).await
            }
        }
    }

    async fn exchange(
        &self,
        mut stream: impl AsyncRead + AsyncWrite + Unpin,
        command: &Command,
    ) -> Result<String, HaproxyError> {
        let io = |source| HaproxyError::Io {
            api: self.address.clone(),
            source,
        };
        let mut line = String::with_capacity(command.0.len() + 1);
        line.push_str(&command.0);
        line.push('\n');
        stream.write_all(line.as_bytes()).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// Sends a command whose success is an empty answer (`set server`,
    /// `enable server`, `disable server`).
    ///
    /// # Errors
    ///
    /// [`HaproxyError::Refused`] with HAProxy's message for any other
    /// answer; connection errors as [`RuntimeApi::send`].
    pub async fn expect_empty(&self, command: &Command) -> Result<(), HaproxyError> {
        let answer = self.send(command).await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(refused(command, &answer))
        }
    }

    /// The state table of `backend`.
    ///
    /// # Errors
    ///
    /// [`HaproxyError::Refused`] when HAProxy answers a message instead
    /// (`Can't find backend.`), [`HaproxyError::Unparsable`] for a table
    /// this code does not understand.
    pub async fn servers_state(&self, backend: &Name) -> Result<Vec<ServerStatus>, HaproxyError> {
        let command = Command::show_servers_state(backend);
        let answer = self.send(&command).await?;
        parse_servers_state(&answer).map_err(|e| match e {
            ParseError::NotATable => refused(&command, &answer),
            ParseError::Bad(why) => HaproxyError::Unparsable(why),
        })
    }

    /// The state of one server.
    ///
    /// # Errors
    ///
    /// [`HaproxyError::NoSuchServer`] when the backend has no such server,
    /// and those of [`RuntimeApi::servers_state`].
    pub async fn server(
        &self,
        backend: &Name,
        server: &Name,
    ) -> Result<ServerStatus, HaproxyError> {
        let all = self.servers_state(backend).await?;
        find(all, backend, server)
    }
}

fn find(
    all: Vec<ServerStatus>,
    backend: &Name,
    server: &Name,
) -> Result<ServerStatus, HaproxyError> {
    let known = all
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.into_iter()
        .find(|s| s.name == server.as_str())
        .ok_or_else(|| HaproxyError::NoSuchServer {
            backend: backend.as_str().to_owned(),
            server: server.as_str().to_owned(),
            known,
        })
}

fn refused(command: &Command, answer: &str) -> HaproxyError {
    let answer = answer.trim();
    HaproxyError::Refused {
        command: command.0.clone(),
        answer: if answer.is_empty() {
            "(empty answer)".to_owned()
        } else {
            answer.to_owned()
        },
    }
}

/// One row of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// `srv_name`
    pub name: String,
    /// `srv_addr:srv_port`
    pub address: String,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// `srv_admin_state`, a bit set (maintenance and drain reasons).
    pub admin_state: u32,
    /// `srv_uweight`, the weight set by configuration or the API.
    pub weight: u32,
}

impl ServerStatus {
    /// The admin state in the runbook's words: `maint` for any
    /// maintenance, else `drain` for any drain, else `ready`.
    pub fn state(&self) -> ServerState {
        if self.admin_state & ADMIN_ANY_MAINT != 0 {
            ServerState::Maint
        } else if self.admin_state & ADMIN_ANY_DRAIN != 0 {
            ServerState::Drain
        } else {
            ServerState::Ready
        }
    }

    /// `a 127.0.0.1:8001 ready up weight 1`
    pub fn describe(&self) -> String {
        let op = match self.op_state {
            0 => "down",
            1 => "starting",
            2 => "up",
            3 => "stopping",
            _ => "unknown",
        };
        format!(
            "{} {} {} {op} weight {}",
            self.name,
            self.address,
            self.state().as_str(),
            self.weight
        )
    }
}

enum ParseError {
    /// Not a state table at all: an error message.
    NotATable,
    /// A table, but not one this parser understands.
    Bad(String),
}

/// Parses a version-1 `show servers state` answer. Columns are found by the
/// names in its `# ` header line rather than by position, so columns
/// added by later HAProxy versions do not shift anything.
fn parse_servers_state(answer: &str) -> Result<Vec<ServerStatus>, ParseError> {
    let mut lines = answer.lines();
    match lines.next().map(str::trim) {
        Some("1") => {}
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(ParseError::Bad(format!(
                "state file format version {v}, expected 1"
            )))
        }
        _ => return Err(ParseError::NotATable),
    }
    let header: Vec<&str> = match lines.next().and_then(|l| l.strip_prefix("# ")) {
        Some(h) => h.split_whitespace().collect(),
        None => return Err(ParseError::Bad("no `# ` header line".to_owned())),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| ParseError::Bad(format!("no column {name} in the header")))
    };
    let (name, addr, port, op, admin, weight) = (
        column("srv_name")?,
        column("srv_addr")?,
        column("srv_port")?,
        column("srv_op_state")?,
        column("srv_admin_state")?,
        column("srv_uweight")?,
    );
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            fields.get(i).copied().ok_or_else(|| {
                ParseError::Bad(format!("row {} has {} fields", n + 1, fields.len()))
            })
        };
        let number = |i: usize| -> Result<u32, ParseError> {
            let text = get(i)?;
            text.parse()
                .map_err(|_| ParseError::Bad(format!("row {}: {text:?} is not a number", n + 1)))
        };
        out.push(ServerStatus {
            name: get(name)?.to_owned(),
            address: format!("{}:{}", get(addr)?, get(port)?),
            op_state: number(op)?,
            admin_state: number(admin)?,
            weight: number(weight)?,
        });
    }
    Ok(out)
}

/// What to do with a backend's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Set a server's state and/or weight (at least one).
    SetServer {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
        /// New admin state.
        state: Option<ServerState>,
        /// New weight, within [0, 256].
        weight: Option<u32>,
    },
    /// Register a replica and put it in rotation. Idempotent: a server of
    /// that name with the same address is only enabled.
    AddServer {
        /// The backend; its balance algorithm must be dynamic
        /// (`roundrobin`, `leastconn`, `first`, `random`).
        backend: String,
        /// Name of the new server.
        server: String,
        /// `IP:PORT` of the replica.
        address: String,
    },
    /// Take a replica out of rotation and unregister it, once its
    /// connections are over (within the timeout). Idempotent: a server
    /// already gone is success.
    RemoveServer {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
    },
}

/// What to ask which HAProxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyRequest {
    /// The runtime API.
    pub api: ApiAddress,
    /// What to do.
    pub operation: Operation,
    /// Gives up after this long (the whole operation, every command).
    pub timeout: Duration,
    /// Record what would be sent, send nothing.
    pub dry_run: bool,
}

/// An operation with its names checked: ready to send.
#[derive(Debug)]
enum Checked {
    Set {
        backend: Name,
        server: Name,
        state: Option<ServerState>,
        weight: Option<u32>,
    },
    Add {
        backend: Name,
        server: Name,
        address: SocketAddr,
    },
    Remove {
        backend: Name,
        server: Name,
    },
}

impl Operation {
    /// Checks every name, address and weight. Nothing is sent before this
    /// passed.
    fn check(&self) -> Result<Checked, HaproxyError> {
        let names = |backend: &str, server: &str| {
            Ok::<_, HaproxyError>((
                Name::new("backend name", backend)?,
                Name::new("server name", server)?,
            ))
        };
        Ok(match self {
            Operation::SetServer {
                backend,
                server,
                state,
                weight,
            } => {
                let (backend, server) = names(backend, server)?;
                if let Some(w) = *weight {
                    if w > MAX_WEIGHT {
                        return Err(HaproxyError::InvalidWeight(w));
                    }
                }
                Checked::Set {
                    backend,
                    server,
                    state: *state,
                    weight: *weight,
                }
            }
            Operation::AddServer {
                backend,
                server,
                address,
            } => {
                let (backend, server) = names(backend, server)?;
                let address: SocketAddr = address
                    .parse()
                    .map_err(|_| HaproxyError::InvalidAddress(address.clone()))?;
                Checked::Add {
                    backend,
                    server,
                    address,
                }
            }
            Operation::RemoveServer { backend, server } => {
                let (backend, server) = names(backend, server)?;
                Checked::Remove { backend, server }
            }
        })
    }
}

impl Checked {
    /// The commands that change something, for dry runs and summaries.
    fn commands(&self) -> Result<Vec<Command>, HaproxyError> {
        Ok(match self {
            Checked::Set {
                backend,
                server,
                state,
                weight,
            } => {
                let mut out = Vec::new();
                if let Some(state) = state {
                    out.push(Command::set_state(backend, server, *state));
                }
                if let Some(weight) = weight {
                    out.push(Command::set_weight(backend, server, *weight)?);
                }
                out
            }
            Checked::Add {
                backend,
                server,
                address,
            } => vec![
                Command::add_server(backend, server, *address),
                Command::enable_server(backend, server),
            ],
            Checked::Remove { backend, server } => vec![
                Command::disable_server(backend, server),
                Command::del_server(backend, server),
            ],
        })
    }
}

/// Performs `req`. A refused name, address or weight fails before anything
/// is sent; the result is retryable when the API could not be reached, the
/// operation timed out, or a server to remove still had connections.
pub async fn run(req: &HaproxyRequest) -> ActionResult {
    let started = Instant::now();
    let result = |ok: bool, retryable: bool, summary: String, output: String| ActionResult {
        ok,
        retryable,
        summary,
        output,
        duration: started.elapsed(),
    };
    let checked = match req.operation.check() {
        Ok(c) => c,
        Err(e) => return result(false, e.retryable(), e.to_string(), String::new()),
    };
    let commands = match checked.commands() {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            return result(
                false,
                false,
                "nothing to do: give a state, a weight or both".to_owned(),
                String::new(),
            )
        }
        Err(e) => return result(false, false, e.to_string(), String::new()),
    };
    let listing = commands
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if req.dry_run {
        return result(
            true,
            false,
            format!("dry run: would send {listing} to {}", req.api),
            String::new(),
        );
    }
    let api = RuntimeApi::new(req.api.clone());
    // `output` gathers the before/after lines as they are read, so even a
    // step that times out reports the state it found.
    let mut output = String::new();
    let outcome = tokio::time::timeout(req.timeout, perform(&api, &checked, &mut output)).await;
    match outcome {
        Ok(Ok(summary)) => result(true, false, summary, output),
        Ok(Err(e)) => result(false, e.retryable(), e.to_string(), output),
        Err(_) => result(
            false,
            true,
            format!(
                "timed out after {:?} sending {listing} to {}",
                req.timeout, req.api
            ),
            output,
        ),
    }
}

async fn perform(
    api: &RuntimeApi,
    op: &Checked,
    output: &mut String,
) -> Result<String, HaproxyError> {
    match op {
        Checked::Set {
            backend,
            server,
            state,
            weight,
        } => set_server(api, backend, server, *state, *weight, output).await,
        Checked::Add {
            backend,
            server,
            address,
        } => add_server(api, backend, server, *address, output).await,
        Checked::Remove { backend, server } => remove_server(api, backend, server, output).await,
    }
}

async fn set_server(
    api: &RuntimeApi,
    backend: &Name,
    server: &Name,
    state: Option<ServerState>,
    weight: Option<u32>,
    output: &mut String,
) -> Result<String, HaproxyError> {
    let before = api.server(backend, server).await?;
    output.push_str(&format!("before: {}\n", before.describe()));
    if let Some(state) = state {
        api.expect_empty(&Command::set_state(backend, server, state))
            .await?;
    }
    if let Some(weight) = weight {
        api.expect_empty(&Command::set_weight(backend, server, weight)?)
            .await?;
    }
    let after = api.server(backend, server).await?;
    output.push_str(&format!("after: {}\n", after.describe()));
    let mut wrong = Vec::new();
    if let Some(state) = state {
        // `set server ... state` sets exactly the forced bits; a server
        // also in maintenance for another reason (`disabled` in the
        // configuration, DNS) is still reported as what it is.
        let forced_ok = match state {
            ServerState::Ready => after.admin_state & (ADMIN_FMAINT | ADMIN_FDRAIN) == 0,
            ServerState::Drain => after.admin_state & ADMIN_FDRAIN != 0,
            ServerState::Maint => after.admin_state & ADMIN_FMAINT != 0,
        };
        if !forced_ok || after.state() != state {
            wrong.push(format!(
                "state is {} (admin state {:#x}), asked {}",
                after.state().as_str(),
                after.admin_state,
                state.as_str()
            ));
        }
    }
    if let Some(weight) = weight {
        if after.weight != weight {
            wrong.push(format!("weight is {}, asked {weight}", after.weight));
        }
    }
    if !wrong.is_empty() {
        return Err(HaproxyError::NotApplied(format!(
            "{backend}/{server}: {}",
            wrong.join("; ")
        )));
    }
    let mut changes = Vec::new();
    if state.is_some() {
        changes.push(format!(
            "{} -> {}",
            before.state().as_str(),
            after.state().as_str()
        ));
    }
    if weight.is_some() {
        changes.push(format!("weight {} -> {}", before.weight, after.weight));
    }
    Ok(format!("server {backend}/{server}: {}", changes.join(", ")))
}

async fn add_server(
    api: &RuntimeApi,
    backend: &Name,
    server: &Name,
    address: SocketAddr,
    output: &mut String,
) -> Result<String, HaproxyError> {
    let wanted = address.to_string();
    let existing = api
        .servers_state(backend)
        .await?
        .into_iter()
        .find(|s| s.name == server.as_str());
    match &existing {
        Some(s) if !same_address(&s.address, address) => {
            return Err(HaproxyError::Conflict {
                backend: backend.as_str().to_owned(),
                server: server.as_str().to_owned(),
                existing: s.address.clone(),
                wanted,
            })
        }
        Some(s) => output.push_str(&format!("before: {}\n", s.describe())),
        None => {
            output.push_str("before: absent\n");
            let command = Command::add_server(backend, server, address);
            let answer = api.send(&command).await?;
            if !answer.trim_start().starts_with("New server registered.") {
                let mut e = refused(&command, &answer);
                if let HaproxyError::Refused { answer, .. } = &mut e {
                    if answer.starts_with("Unknown command") {
                        *answer =
                            "the runtime API has no `add server`: HAProxy 2.5 or later is needed"
                                .to_owned();
                    }
                }
                return Err(e);
            }
        }
    }
    api.expect_empty(&Command::enable_server(backend, server))
        .await?;
    let after = api.server(backend, server).await?;
    output.push_str(&format!("after: {}\n", after.describe()));
    if after.admin_state & ADMIN_FMAINT != 0 {
        return Err(HaproxyError::NotApplied(format!(
            "{backend}/{server} is still in maintenance after `enable server`"
        )));
    }
    Ok(match existing {
        Some(_) => format!("server {backend}/{server} at {wanted} was registered already; enabled"),
        None => format!("registered server {backend}/{server} at {wanted}"),
    })
}

/// Whether a state table address (`127.0.0.1:8001`, or `::1:8001` for IPv6,
/// without brackets) is `address`.
fn same_address(table: &str, address: SocketAddr) -> bool {
    table == address.to_string() || table == format!("{}:{}", address.ip(), address.port())
}

async fn remove_server(
    api: &RuntimeApi,
    backend: &Name,
    server: &Name,
    output: &mut String,
) -> Result<String, HaproxyError> {
    let Some(before) = api
        .servers_state(backend)
        .await?
        .into_iter()
        .find(|s| s.name == server.as_str())
    else {
        output.push_str("before: absent\n");
        return Ok(format!("server {backend}/{server} was not registered"));
    };
    output.push_str(&format!("before: {}\n", before.describe()));
    api.expect_empty(&Command::disable_server(backend, server))
        .await?;
    let command = Command::del_server(backend, server);
    // In maintenance the server takes no new connections; the ones it has
    // finish on their own, so a refusal for that reason is waited out (the
    // caller's timeout bounds the wait).
    loop {
        let answer = api.send(&command).await?;
        let trimmed = answer.trim();
        if trimmed.starts_with("Server deleted.") {
            break;
        }
        if is_transient(trimmed) {
            tokio::time::sleep(DELETE_RETRY).await;
            continue;
        }
        return Err(refused(&command, &answer));
    }
    let gone = !api
        .servers_state(backend)
        .await?
        .iter()
        .any(|s| s.name == server.as_str());
    if !gone {
        return Err(HaproxyError::NotApplied(format!(
            "{backend}/{server} is still listed after `del server`"
        )));
    }
    output.push_str("after: absent\n");
    Ok(format!(
        "removed server {backend}/{server} (was at {})",
        before.address
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 be 1 a 127.0.0.1 2 8 50 1 0 1 0 2 0 0 0 0 - 18001 - 0 0 - - 0\n3 be 2 b 127.0.0.1 0 1 1 1 1 1 0 2 0 0 0 0 - 18002 - 0 0 - - 0\n\n";

    #[test]
    fn parses_the_state_table_by_column_name() {
        let Ok(rows) = parse_servers_state(TABLE) else {
            panic!("table did not parse")
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            ServerStatus {
                name: "a".into(),
                address: "127.0.0.1:18001".into(),
                op_state: 2,
                admin_state: 8,
                weight: 50,
            }
        );
        assert_eq!(rows[0].state(), ServerState::Drain);
        assert_eq!(rows[1].state(), ServerState::Maint);
        assert_eq!(rows[0].describe(), "a 127.0.0.1:18001 drain up weight 50");
        assert_eq!(rows[1].describe(), "b 127.0.0.1:18002 maint down weight 1");
    }

    #[test]
    fn an_error_message_is_not_a_table() {
        assert!(matches!(
            parse_servers_state("Can't find backend.\n\n"),
            Err(ParseError::NotATable)
        ));
        assert!(matches!(
            parse_servers_state(""),
            Err(ParseError::NotATable)
        ));
        match parse_servers_state("2\n# a b\n") {
            Err(ParseError::Bad(why)) => assert_eq!(why, "state file format version 2, expected 1"),
            _ => panic!("version 2 accepted"),
        }
        match parse_servers_state("1\n# be_id srv_name\n") {
            Err(ParseError::Bad(why)) => assert_eq!(why, "no column srv_addr in the header"),
            _ => panic!("missing column accepted"),
        }
    }

    #[test]
    fn commands_are_built_from_checked_parts() {
        let be = Name::new("backend name", "be").unwrap();
        let a = Name::new("server name", "a").unwrap();
        assert_eq!(
            Command::set_state(&be, &a, ServerState::Drain).as_str(),
            "set server be/a state drain"
        );
        assert_eq!(
            Command::set_weight(&be, &a, 256).unwrap().as_str(),
            "set server be/a weight 256"
        );
        assert!(matches!(
            Command::set_weight(&be, &a, 257),
            Err(HaproxyError::InvalidWeight(257))
        ));
        assert_eq!(
            Command::add_server(&be, &a, "[::1]:80".parse().unwrap()).as_str(),
            "add server be/a [::1]:80"
        );
    }

    #[test]
    fn retryable_only_when_waiting_can_help() {
        let refused = |answer: &str| HaproxyError::Refused {
            command: "x".into(),
            answer: answer.into(),
        };
        assert!(!refused("No such server.").retryable());
        assert!(
            refused("Server still has connections attached to it, cannot remove it.").retryable()
        );
        let connect = HaproxyError::Connect {
            api: "127.0.0.1:1".parse().unwrap(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(connect.retryable());
    }

    #[tokio::test]
    async fn invalid_input_fails_before_connecting() {
        // The API address is a path nothing listens at: had anything been
        // sent, the error would be a connection error.
        let req = |operation| HaproxyRequest {
            api: "unix:/nonexistent/heal-haproxy.sock".parse().unwrap(),
            operation,
            timeout: Duration::from_secs(5),
            dry_run: false,
        };
        let r = run(&req(Operation::SetServer {
            backend: "be".into(),
            server: "a\nset server be/b state maint".into(),
            state: Some(ServerState::Ready),
            weight: None,
        }))
        .await;
        assert!(!r.ok && !r.retryable, "{r:?}");
        assert!(
            r.summary.starts_with("refusing server name "),
            "{}",
            r.summary
        );
        let r = run(&req(Operation::AddServer {
            backend: "be".into(),
            server: "c".into(),
            address: "example.com:80".into(),
        }))
        .await;
        assert_eq!(
            r.summary,
            "refusing server address \"example.com:80\": expected IPv4:PORT or [IPv6]:PORT"
        );
        let r = run(&req(Operation::SetServer {
            backend: "be".into(),
            server: "a".into(),
            state: None,
            weight: Some(1000),
        }))
        .await;
        assert_eq!(r.summary, "refusing weight 1000: must be within [0, 256]");
        let r = run(&req(Operation::SetServer {
            backend: "be".into(),
            server: "a".into(),
            state: None,
            weight: None,
        }))
        .await;
        assert_eq!(r.summary, "nothing to do: give a state, a weight or both");
    }

    #[tokio::test]
    async fn dry_run_sends_nothing() {
        let r = run(&HaproxyRequest {
            api: "unix:/nonexistent/heal-haproxy.sock".parse().unwrap(),
            operation: Operation::RemoveServer {
                backend: "be".into(),
                server: "c".into(),
            },
            timeout: Duration::from_secs(5),
            dry_run: true,
        })
        .await;
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.summary,
            "dry run: would send `disable server be/c`, `del server be/c` to unix:/nonexistent/heal-haproxy.sock"
        );
    }
}
