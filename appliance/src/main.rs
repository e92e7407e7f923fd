//! `vigil`: the appliance binary. Flags are parsed here; everything else is the library.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use vigil_appliance::admin::{AdminRequest, AdminResponse};
use vigil_appliance::db::RetentionPolicy;
use vigil_appliance::{cli, Appliance, ServeConfig};
use vigil_proto::query::{AlertFilter, EventFilter};
use vigil_proto::{EventKind, HostId};

mod evidence_cli;
mod packages_cli;
mod respond_cli;
mod sensor_updates_cli;

#[derive(Parser)]
#[command(name = "vigil", version, about = "Vigil EDR appliance")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

/// `vigil serve` flags.
#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "/var/lib/vigil")]
    data: PathBuf,
    #[arg(long, default_value = "0.0.0.0:4433")]
    quic_listen: SocketAddr,
    /// Address of the management network the console serves on;
    /// remembered in DATA/management.json for later starts.
    #[arg(long)]
    management_address: Option<IpAddr>,
    /// Console port on the management address (or 127.0.0.1 without one).
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// Exact console address; wins over --management-address (pass
    /// 0.0.0.0:8443 to serve on every interface).
    #[arg(long)]
    https_listen: Option<SocketAddr>,
    /// End console sessions unused this long (e.g. 30m).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    session_idle_timeout: Duration,
    /// Delete events older than this many days (0: no age bound).
    #[arg(long)]
    retention_days: Option<u32>,
    /// Keep stored events under this many bytes (0: no size bound).
    #[arg(long)]
    retention_bytes: Option<u64>,
    /// How often retention runs (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    retention_interval: Duration,
    /// How long a new host only learns before it may alert (e.g. 7d, 0s).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    learning_period: Duration,
    /// Most an event may be dated ahead of this clock; later ones are
    /// acknowledged but quarantined (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    max_future_skew: Duration,
    /// Store events older than the retention horizon instead of
    /// quarantining them: an explicit historical import (`vigil replay`
    /// of a data set with its own dates).
    #[arg(long)]
    accept_historical: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance (QUIC ingest, HTTPS, retention).
    Serve(ServeArgs),
    /// Alerts and lateral-movement incidents.
    Alerts {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// How far back (e.g. 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 500)]
        limit: usize,
    },
    /// Detection models.
    Model {
        #[command(subcommand)]
        cmd: ModelCmd,
    },
    /// Evaluate the detector on labelled data: `vigil eval lanl|otrf|synth|write-lanl …`.
    #[command(disable_help_flag = true)]
    Eval {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Signed offline updates: `vigil update pack|verify|apply|boot|health|status …`
    /// (the `vigil-update` tool, installed next to this binary on the appliance);
    /// `vigil update publish-sensors BUNDLE` serves its sensor targets to sensors.
    #[command(disable_help_flag = true)]
    Update {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Stream a data set into a running appliance through the real sensor
    /// uplink: `vigil replay synth|lanl|otrf … --appliance --token --ca-sha256`.
    #[command(disable_help_flag = true)]
    Replay {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Enrolled sensors.
    Sensor {
        #[command(subcommand)]
        cmd: SensorCmd,
    },
    /// Counters, disk use and retention.
    Status {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Act on a host: isolate, release, kill, collect, list, remove a key,
    /// disable an account, block a peer; and follow the commands.
    Respond {
        #[command(subcommand)]
        cmd: respond_cli::RespondCmd,
    },
    /// Console users: `vigil user add NAME --role viewer|auditor|analyst|admin`.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Sensor packages the console's "Add hosts" page serves:
    /// `vigil packages add FILE|list|remove NAME`.
    Packages {
        #[command(subcommand)]
        cmd: packages_cli::PackagesCmd,
    },
    /// The provable audit log: `vigil audit verify|checkpoint|prove-extends`.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Write a signed evidence bundle (an incident, an alert, or a host's
    /// time range) that `vigil verify` checks offline.
    Export {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// An incident id.
        #[arg(long, group = "what")]
        incident: Option<u64>,
        /// An alert id.
        #[arg(long, group = "what")]
        alert: Option<u64>,
        /// A host id or name (with --from and --to).
        #[arg(long, group = "what", requires_all = ["from", "to"])]
        host: Option<String>,
        /// Start of the host's range (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        from: Option<std::time::SystemTime>,
        /// End of the host's range (RFC 3339).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        to: Option<std::time::SystemTime>,
        /// The bundle to write.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Who exports (recorded in the audit log and the bundle); default
        /// `cli:$SUDO_USER` or `cli:$USER`.
        #[arg(long)]
        operator: Option<String>,
    },
    /// Check an evidence bundle offline: signature, every file's hash, the
    /// audit proof. Exit 0 only when all hold.
    Verify {
        bundle: PathBuf,
        /// The appliance's evidence public key (base64, as `vigil audit
        /// checkpoint` prints it); without it the bundle's own key is used
        /// and reported as not independently trusted.
        #[arg(long)]
        key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sigma rules: `vigil rules check DIR`, `vigil rules import DIR`.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Print stored events.
    Events {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// Host id (16 hex digits).
        #[arg(long)]
        host: Option<HostId>,
        /// How far back (e.g. 10m, 2h).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Event kind (process_start, net_connect, login…).
        #[arg(long)]
        kind: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an enrollment token.
    Create {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// List enrollment tokens (ids, labels, uses, state; never secrets).
    List {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
    },
    /// Revoke an enrollment token: it enrolls no more sensors.
    Revoke {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// The token's id from `vigil token list`.
        id: u64,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Check every rule under DIR (offline); exit 1 naming each bad
    /// rule's file and line.
    Check { dir: PathBuf },
    /// Check, then add the rules under DIR (e.g. a USB stick) to the
    /// appliance's rules directory; the detection pipeline reloads them.
    Import {
        dir: PathBuf,
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// Who imports (recorded in the audit log); default `cli:$USER`.
        #[arg(long)]
        operator: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a console user; prints a one-time password to change at the
    /// first login.
    Add {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        name: String,
        /// viewer, auditor (reads everything incl. the full audit log,
        /// exports evidence, acts on nothing), analyst or admin.
        #[arg(long)]
        role: String,
        /// Who creates it (audit log); default `cli:$SUDO_USER` or `cli:$USER`.
        #[arg(long)]
        operator: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check every audit entry against every signed checkpoint (exit 1 if not).
    Verify {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
    },
    /// Print a signed checkpoint of the whole log, for auditors to keep.
    Checkpoint {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
    },
    /// Prove the log extends the one an older checkpoint (a file) saw.
    ProveExtends {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        old_checkpoint: PathBuf,
        /// Print the new checkpoint, proof and report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Each host's model version, hash, training window and state (learning / active).
    Status {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// Only this host (16 hex digits).
        #[arg(long)]
        host: Option<HostId>,
    },
}

#[derive(Subcommand)]
enum SensorCmd {
    /// List enrolled sensors.
    List {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
    },
    /// Revoke a sensor's certificate.
    Revoke {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        host: HostId,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (data, req) = match args.cmd {
        Cmd::Serve(args) => return serve_command(args),
        Cmd::Token {
            cmd: TokenCmd::Create { data, ttl, uses },
        } => (
            data,
            AdminRequest::CreateToken {
                ttl_s: ttl.as_secs(),
                uses,
            },
        ),
        Cmd::Token {
            cmd: TokenCmd::List { data },
        } => (data, AdminRequest::ListTokens),
        Cmd::Token {
            cmd: TokenCmd::Revoke { data, id },
        } => (data, AdminRequest::RevokeToken { id }),
        Cmd::Sensor {
            cmd: SensorCmd::List { data },
        } => (data, AdminRequest::ListSensors),
        Cmd::Sensor {
            cmd: SensorCmd::Revoke { data, host },
        } => (data, AdminRequest::Revoke { host }),
        Cmd::User {
            cmd:
                UserCmd::Add {
                    data,
                    name,
                    role,
                    operator,
                },
        } => (
            data,
            AdminRequest::AddUser {
                name,
                role,
                operator: operator.unwrap_or_else(evidence_cli::cli_operator),
            },
        ),
        Cmd::Audit { cmd } => return evidence_cli::audit(cmd),
        Cmd::Packages { cmd } => return packages_cli::packages(cmd),
        Cmd::Respond { cmd } => return respond_cli::respond(cmd),
        Cmd::Rules { cmd } => return evidence_cli::rules(cmd),
        Cmd::Export {
            data,
            incident,
            alert,
            host,
            from,
            to,
            output,
            operator,
        } => {
            let scope = evidence_cli::export_target(incident, alert, host, from, to)?;
            return evidence_cli::export(&data, scope, operator, &output);
        }
        Cmd::Verify { bundle, key, json } => return evidence_cli::verify(&bundle, key, json),
        Cmd::Eval { args } => return run_tool("eval", args),
        Cmd::Replay { args } => return run_tool("replay", args),
        Cmd::Update { args } if sensor_updates_cli::is_publish(&args) => {
            return sensor_updates_cli::publish(args)
        }
        Cmd::Update { args } => return run_tool("update", args),
        Cmd::Alerts {
            data,
            since,
            json,
            limit,
        } => {
            let filter = AlertFilter {
                since_ns: Some(now_ns().saturating_sub(since.as_nanos() as u64)),
                limit,
                ..AlertFilter::default()
            };
            let (resp, pw) = cli::execute(&data, AdminRequest::Alerts { filter })?;
            print_first_password(pw);
            match resp {
                AdminResponse::Alerts { alerts, host_names } if json => {
                    for a in alerts {
                        // The record as stored, plus the path's host names.
                        let mut v = serde_json::to_value(&a)?;
                        v["path_names"] = serde_json::json!(cli::path_names(&a.path, &host_names));
                        println!("{v}");
                    }
                }
                other => print!("{}", cli::render(other)?),
            }
            return Ok(());
        }
        Cmd::Model {
            cmd: ModelCmd::Status { data, host },
        } => {
            let (resp, pw) = cli::execute(&data, AdminRequest::Models)?;
            print_first_password(pw);
            let resp = match (resp, host) {
                (AdminResponse::Models(m), Some(h)) => {
                    AdminResponse::Models(m.into_iter().filter(|s| s.host == h).collect())
                }
                (other, _) => other,
            };
            print!("{}", cli::render(resp)?);
            return Ok(());
        }
        Cmd::Status { data, json } => {
            let (resp, pw) = cli::execute(&data, AdminRequest::Status)?;
            print_first_password(pw);
            if json {
                println!("{}", serde_json::to_string_pretty(&resp)?);
                return Ok(());
            }
            print!("{}", cli::render(resp)?);
            return Ok(());
        }
        Cmd::Events {
            data,
            host,
            since,
            kind,
            limit,
        } => (data, events_request(host, since, &kind, limit)?),
    };
    let (resp, pw) = cli::execute(&data, req)?;
    print_first_password(pw);
    print!("{}", cli::render(resp)?);
    Ok(())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Say where the first admin password is; the password itself is never
/// printed (output ends up in logs).
/// `vigil events`' flags as the read API's filter.
fn events_request(
    host: Option<HostId>,
    since: Duration,
    kind: &[String],
    limit: usize,
) -> Result<AdminRequest> {
    let kinds = kind
        .iter()
        .map(|k| EventKind::from_name(k).with_context(|| format!("unknown event kind {k:?}")))
        .collect::<Result<Vec<_>>>()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let filter = EventFilter {
        host,
        since_ns: Some(now.saturating_sub(since).as_nanos() as u64),
        kinds,
        limit,
        ..EventFilter::default()
    };
    Ok(AdminRequest::Events { filter })
}

fn print_first_password(file: Option<PathBuf>) {
    if let Some(file) = file {
        eprintln!("{}", first_password_notice(&file));
    }
}

fn first_password_notice(file: &std::path::Path) -> String {
    format!(
        "first start: created user `admin`; its one-time password is in {} (mode 0600, \
         removed once changed; the console asks for a new one at first login)",
        file.display()
    )
}

/// Where the console listens: `--https-listen` as given; else the
/// management address (given now or remembered) on `port`; else loopback
/// only, saying how to change that.
fn console_listen(
    data: &std::path::Path,
    management: Option<IpAddr>,
    port: u16,
    explicit: Option<SocketAddr>,
) -> Result<SocketAddr> {
    let remembered = vigil_appliance::core::management_address(data, management)
        .context("management address")?;
    if let Some(addr) = explicit {
        return Ok(addr);
    }
    Ok(match remembered {
        Some(ip) => SocketAddr::new(ip, port),
        None => {
            eprintln!(
                "the console listens on 127.0.0.1 only; start once with \
                 `--management-address IP` to serve it on the management network \
                 (remembered for later starts)"
            );
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)
        }
    })
}

fn serve(cfg: ServeConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(async move {
        let data = cfg.data_dir.clone();
        let app = Appliance::start(cfg)
            .await
            .with_context(|| format!("start appliance in {}", data.display()))?;
        if let Some(file) = &app.first_start.admin_password_file {
            println!("{}", first_password_notice(file));
        }
        println!("QUIC listening on {}", app.quic_addr);
        println!("HTTPS listening on {}", app.https_addr);
        println!("CA fingerprint (sha256): {}", app.ca_fingerprint());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => if let Err(e) = r { bail!("signal: {e}") },
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        app.shutdown().await;
        Ok(())
    })
}

/// Runs `vigil <name> ARGS…` as the operator tool `vigil-<name>` (package
/// vigil-tools): the appliance does not link the tools, which bring the
/// sensor and the data-set adapters. On unix the tool replaces this
/// process, so its exit code and signals are the command's own, and its
/// argv[0] is `vigil <name>`, the program name its usage messages print.
fn run_tool(name: &str, args: Vec<std::ffi::OsString>) -> Result<()> {
    let tool = format!("vigil-{name}");
    let prog = format!("vigil {name}");
    let Some(path) = find_tool(&tool) else {
        eprintln!("{prog} needs the {tool} tool (package vigil-tools), which is not installed next to this binary");
        std::process::exit(2);
    };
    let mut cmd = std::process::Command::new(&path);
    cmd.args(args);
    #[cfg(unix)]
    let err = {
        use std::os::unix::process::CommandExt;
        cmd.arg0(&prog).exec()
    };
    #[cfg(not(unix))]
    let err = match cmd.status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => e,
    };
    Err(err).with_context(|| format!("running {}", path.display()))
}

/// The executable `name` next to this binary, else the first on `PATH`.
fn find_tool(name: &str) -> Option<PathBuf> {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&file)));
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join(&file))
                .collect()
        })
        .unwrap_or_default();
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

/// `vigil serve`: flags into a [`ServeConfig`], then run it.
fn serve_command(args: ServeArgs) -> Result<()> {
    let ServeArgs {
        data,
        quic_listen,
        management_address,
        https_port,
        https_listen,
        session_idle_timeout,
        retention_days,
        retention_bytes,
        retention_interval,
        learning_period,
        max_future_skew,
        accept_historical,
    } = args;
    // Nothing this process creates (keys, tokens, sockets, RocksDB
    // files) is for other users.
    // SAFETY: umask only sets the process file-mode mask.
    unsafe { libc::umask(0o077) };
    let mut cfg = ServeConfig::new(&data);
    if let Some(p) = cfg.pipeline.as_mut() {
        p.detector.learning_period_ns = learning_period.as_nanos() as u64;
    }
    cfg.quic_listen = quic_listen;
    cfg.https_listen = console_listen(&data, management_address, https_port, https_listen)?;
    cfg.console_idle_timeout = session_idle_timeout;
    cfg.retention_interval = retention_interval;
    cfg.ingest_rules = vigil_appliance::ingest::rules::IngestRules {
        max_future_ns: max_future_skew.as_nanos().min(u128::from(u64::MAX)) as u64,
        accept_historical,
    };
    if retention_days.is_some() || retention_bytes.is_some() {
        let d = RetentionPolicy::default();
        cfg.retention = Some(RetentionPolicy {
            max_age_days: retention_days.unwrap_or(d.max_age_days),
            max_bytes: retention_bytes.unwrap_or(d.max_bytes),
        });
    }
    serve(cfg)
}
