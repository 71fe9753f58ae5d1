//! `heal-lab`: parse the command line, run, map errors to exit codes (64 bad
//! usage, 69 control API unreachable, 1 anything else).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lab::{load, manager, promconfig, service, Error, Result};

/// heal's test lab: services that misbehave on command, load, and a tiny supervisor.
#[derive(Debug, Parser)]
#[command(name = "heal-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one HTTP service with Prometheus metrics and faults on command.
    ///
    /// Endpoints: GET / (work), GET /healthz, GET /metrics, GET /fault,
    /// POST /fault/{crash?after_ms=N, hang, leak?mb_per_s=N, latency?ms=N,
    /// errors?rate=R, cpu?threads=N, dependency?rate=R, clear}. Prints `listening on ADDR`
    /// once ready.
    Service {
        /// The `service` label value.
        #[arg(long)]
        name: String,
        /// Port to listen on; 0 picks a free one (see the `listening` line).
        #[arg(long)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        addr: IpAddr,
        /// Resident memory (MiB) at which the leak fault dies by SIGKILL,
        /// like an OOM kill.
        #[arg(long, default_value_t = 256)]
        mem_limit_mb: u64,
        /// Start with a fault: crash[:AFTER_MS], hang, leak[:MB_PER_S],
        /// latency[:MS], errors[:RATE], cpu[:THREADS], dependency[:RATE].
        #[arg(long, value_name = "KIND[:PARAM]", value_parser = parse_fault)]
        fault: Option<service::Fault>,
        /// Also export K slowly varying gauges `lab_extra{id="0".."K-1"}`
        /// (to benchmark a watcher on many series).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(..=100_000))]
        extra_series: u32,
        /// Exit when stdin reaches its end (set by `heal-lab up`).
        #[arg(long)]
        exit_on_stdin_eof: bool,
        /// Write the service's log to DIR/NAME.log (a line per request, the
        /// dependency fault's errors); reopened when rotated away.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
        /// Also send each log line to Kafka brokers (`host:port,...`), topic
        /// `--kafka-topic` (a build with the `kafka` feature).
        #[arg(long, value_name = "BROKERS")]
        kafka: Option<String>,
        /// The topic of `--kafka`.
        #[arg(long, default_value = "lab-logs")]
        kafka_topic: String,
        /// Call another lab service on every request to `/`: `NAME=ADDR:PORT`
        /// (repeatable), so that its latency and errors show in this one's
        /// (web -> api -> db). Counted in
        /// `lab_dependency_requests_total{service,callee,code}`.
        #[arg(long = "call", value_name = "NAME=ADDR:PORT", value_parser = parse_call)]
        calls: Vec<(String, std::net::SocketAddr)>,
    },
    /// Send a fixed rate of GET requests to loopback targets, then print a
    /// summary: one `target URL ...` line each, then `total sent=.. ok=..
    /// errors=.. timeouts=.. dropped=.. p50_ms=.. p99_ms=..`.
    Load {
        /// http://127.x.x.x:PORT/PATH, http://localhost:PORT/... or
        /// http://[::1]:PORT/...; repeat for round-robin over several.
        #[arg(long = "target", required = true, value_name = "URL")]
        targets: Vec<String>,
        /// Requests per second over all targets.
        #[arg(long)]
        rps: u32,
        /// How long to send, in seconds.
        #[arg(long)]
        duration_s: f64,
        /// Deadline of each request.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Run the lab: start every service of a lab file as a child, write
    /// pidfiles, serve the control API. Stops on POST /shutdown.
    Up {
        /// Lab file: one `NAME PORT [SERVICE ARGS...]` line per service.
        #[arg(long)]
        config: PathBuf,
        /// Directory for the `NAME.pid` files.
        #[arg(long)]
        run_dir: PathBuf,
        /// Control API address (loopback; port 0 picks a free one).
        #[arg(long)]
        control: SocketAddr,
        /// Address the services listen on.
        #[arg(long, default_value = "127.0.0.1")]
        addr: IpAddr,
        /// Also shut down (killing every child) when stdin reaches its end.
        #[arg(long)]
        exit_on_stdin_eof: bool,
    },
    /// Restart a lab service (SIGKILL, start on the same port).
    Restart(ControlArgs),
    /// Start a lab service if it is not running.
    Start(ControlArgs),
    /// Stop a lab service (SIGKILL) and remove its pidfile.
    Stop(ControlArgs),
    /// Print the lab's status as JSON.
    Status {
        /// The manager's control API address.
        #[arg(long)]
        control: SocketAddr,
    },
    /// Stop every service and the manager.
    Shutdown {
        /// The manager's control API address.
        #[arg(long)]
        control: SocketAddr,
    },
    /// GET one path of a service once: exit 0 on a 200 answer, 1 otherwise
    /// (a container's HEALTHCHECK; the lab images have no shell or curl).
    Probe {
        /// The service's address, e.g. 127.0.0.1:8080.
        #[arg(long)]
        addr: SocketAddr,
        /// The path to GET.
        #[arg(long, default_value = "/healthz")]
        path: String,
        /// Deadline of the request.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Write a prometheus.yml scraping the lab's services (job `services`,
    /// target labels service=NAME, instance=NAME-K).
    PrometheusConfig {
        /// NAME=HOST:PORT; repeat per service (a repeated NAME is one more instance).
        #[arg(long = "target", required = true, value_name = "NAME=HOST:PORT")]
        targets: Vec<String>,
        /// Prometheus duration, e.g. 1s, 500ms.
        #[arg(long, default_value = "1s")]
        scrape_interval: String,
        /// Prometheus duration; the scrape interval if not given.
        #[arg(long)]
        evaluation_interval: Option<String>,
        /// Output file, `-` for stdout.
        #[arg(short = 'o', long = "output", default_value = "-")]
        output: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ControlArgs {
    /// The manager's control API address.
    #[arg(long)]
    control: SocketAddr,
    /// The service.
    name: String,
}

/// `NAME=ADDR:PORT` of `--call`.
fn parse_call(v: &str) -> std::result::Result<(String, std::net::SocketAddr), String> {
    let (name, addr) = v
        .split_once('=')
        .ok_or_else(|| format!("{v:?}: expected NAME=ADDR:PORT"))?;
    if !service::valid_name(name) {
        return Err(format!("{name:?}: not a service name"));
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr:?}: not ADDR:PORT ({e})"))?;
    Ok((name.to_owned(), addr))
}

fn parse_fault(spec: &str) -> std::result::Result<service::Fault, String> {
    service::Fault::parse_spec(spec).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heal-lab: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Service {
            name,
            port,
            addr,
            mem_limit_mb,
            fault,
            extra_series,
            exit_on_stdin_eof,
            log_dir,
            kafka,
            kafka_topic,
            calls,
        } => service::run(service::ServiceConfig {
            name,
            addr,
            port,
            mem_limit_mb,
            fault,
            extra_series,
            exit_on_stdin_eof,
            log_dir,
            kafka: kafka.map(|b| (b, kafka_topic)),
            calls,
        }),
        Command::Load {
            targets,
            rps,
            duration_s,
            timeout_ms,
        } => {
            let targets = targets
                .iter()
                .map(|t| load::Target::parse(t))
                .collect::<Result<Vec<_>>>()?;
            if !(duration_s.is_finite()
                && duration_s > 0.0
                && duration_s <= load::MAX_DURATION_S as f64)
            {
                return Err(Error::usage(format!(
                    "load: --duration-s must be in (0, {}]",
                    load::MAX_DURATION_S
                )));
            }
            let config = load::LoadConfig {
                targets,
                rps,
                duration: Duration::from_secs_f64(duration_s),
                timeout: Duration::from_millis(timeout_ms),
            };
            let summary = load::run(&config)?;
            println!("{summary}");
            Ok(())
        }
        Command::Up {
            config,
            run_dir,
            control,
            addr,
            exit_on_stdin_eof,
        } => manager::run(&manager::UpConfig {
            config,
            run_dir,
            control,
            addr,
            exit_on_stdin_eof,
        }),
        Command::Restart(a) => control_call(a.control, "restart", Some(&a.name)),
        Command::Start(a) => control_call(a.control, "start", Some(&a.name)),
        Command::Stop(a) => control_call(a.control, "stop", Some(&a.name)),
        Command::Status { control } => control_call(control, "status", None),
        Command::Shutdown { control } => control_call(control, "shutdown", None),
        Command::Probe {
            addr,
            path,
            timeout_ms,
        } => {
            let resp = lab::http::client::get(addr, &path, Duration::from_millis(timeout_ms))
                .map_err(|e| Error::unavailable(format!("probe {addr}{path}: {e}")))?;
            if resp.status == 200 {
                Ok(())
            } else {
                Err(Error::failed(format!(
                    "probe {addr}{path}: answered {}",
                    resp.status
                )))
            }
        }
        Command::PrometheusConfig {
            targets,
            scrape_interval,
            evaluation_interval,
            output,
        } => {
            let targets = targets
                .iter()
                .map(|t| promconfig::ScrapeTarget::parse(t))
                .collect::<Result<Vec<_>>>()?;
            let evaluation_interval =
                evaluation_interval.unwrap_or_else(|| scrape_interval.clone());
            let yml = promconfig::render(&targets, &scrape_interval, &evaluation_interval)?;
            if output.as_os_str() == "-" {
                print!("{yml}");
                Ok(())
            } else {
                promconfig::write_atomically(&output, &yml)
            }
        }
    }
}

fn control_call(control: SocketAddr, verb: &str, name: Option<&str>) -> Result<()> {
    let body = manager::api::call(control, verb, name)?;
    print!("{body}");
    Ok(())
}
