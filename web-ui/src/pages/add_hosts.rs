//! The "Add hosts" page (issue #18): an admin creates an enrollment token
//! and copies a one-line install-and-enroll command for Debian/Ubuntu (the
//! `.deb`) or any other systemd distribution (the tarball). The appliance
//! itself serves the packages and its CA certificate, so enrolling a host
//! needs no internet and no other file server.
//!
//! Two kinds of routes live here:
//! - `/add-hosts` (admins only, GET included: the page hands out tokens);
//! - `/enroll/ca.pem` and `/enroll/packages/{name}`, which need no login
//!   (a host being enrolled has no console account). They serve only the
//!   CA certificate and the files the appliance's package index lists,
//!   looked up by exact name: a path never comes from the request.
//!
//! Trust on the host: the CA is fetched without verification (`curl -k`),
//! then its SHA-256 is checked against the fingerprint printed on this
//! page; only then is it used (`--cacert`) to fetch the package, whose
//! SHA-256 is checked again. `enroll` is given `--updates-url` (this
//! console), so the sensor fetches its updates here and verifies them
//! against the TUF root its package ships. The appliance implements
//! [`AddHostsApi`].

use super::layout::{render, Nav};
use super::*;
use crate::store::Role;
use crate::time::format_ts;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The name the appliance's HTTPS certificate carries (its SAN), which
/// `curl --connect-to` asks for whatever address the host dials.
pub const CERT_NAME: &str = "vigil-appliance";
/// Response header carrying a package's SHA-256 (lowercase hex).
pub const SHA256_HEADER: &str = "x-checksum-sha256";
/// How many recently enrolled hosts the page lists.
const RECENT_HOSTS: usize = 10;
/// Longest address accepted in the form (a DNS name: 253).
const MAX_ADDRESS_LEN: usize = 253;

/// What a package is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    /// A Debian/Ubuntu `.deb`.
    Deb,
    /// The `.tar.gz` with `install.sh`, for other distributions.
    Tarball,
}

/// One package the appliance serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// File name, as listed in the appliance's index (also its URL).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// `.deb` or tarball.
    pub kind: PackageKind,
    /// When it was added (ns since the epoch).
    pub added_ns: u64,
}

/// What the page and the downloads ask the appliance. Calls may read
/// files: call them off the async runtime.
pub trait AddHostsApi: Send + Sync {
    /// SHA-256 of the CA certificate's DER, lowercase hex (what
    /// `vigil-sensor enroll --ca-sha256` pins).
    fn ca_fingerprint(&self) -> String;
    /// The CA certificate as PEM.
    fn ca_pem(&self) -> String;
    /// Where the console listens.
    fn https_addr(&self) -> SocketAddr;
    /// Where sensors connect (QUIC).
    fn quic_addr(&self) -> SocketAddr;
    /// The listed packages, newest first.
    fn packages(&self) -> Result<Vec<PackageInfo>, String>;
    /// A listed package and its open file; `None` for any name the index
    /// does not list.
    fn open_package(&self, name: &str) -> Option<(PackageInfo, std::fs::File)>;
}

fn api(state: &ConsoleState) -> Result<Arc<dyn AddHostsApi>, UiError> {
    state
        .add_hosts
        .clone()
        .ok_or_else(|| UiError::NotFound("host enrollment on this console".into()))
}

/// An address hosts can reach the appliance at: an IP address (IPv6 with
/// or without brackets) or a DNS name. It ends up inside shell commands,
/// so nothing else passes.
pub fn valid_address(input: &str) -> Option<String> {
    let s = input.trim();
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    let dns = !s.is_empty()
        && s.len() <= MAX_ADDRESS_LEN
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    dns.then(|| s.to_ascii_lowercase())
}

/// The address the page proposes: the console's own listening address,
/// else (listening on every interface) the host name the admin's browser
/// used, else nothing (the admin types one).
pub fn default_address(https: SocketAddr, host_header: Option<&str>) -> Option<String> {
    if !https.ip().is_unspecified() {
        return valid_address(&https.ip().to_string());
    }
    let host = host_header?;
    let name = match host.strip_prefix('[') {
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    valid_address(name)
}

/// Everything a command names; all of it already validated.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// From [`valid_address`].
    pub address: String,
    /// The console's port (package and CA downloads).
    pub https_port: u16,
    /// The sensors' QUIC port.
    pub quic_port: u16,
    /// CA SHA-256, lowercase hex.
    pub ca_fingerprint: String,
    /// The enrollment token's secret.
    pub token: String,
}

/// `'…'` for a POSIX shell (`'` itself becomes `'\''`).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Enrollment {
    /// Fetch the CA without trusting it, then refuse to go on unless its
    /// SHA-256 (of the DER inside the PEM) is the pinned fingerprint.
    fn fetch_ca(&self) -> String {
        format!(
            "curl -fsSk -o ca.pem https://{a}:{p}/enroll/ca.pem; \
             [ \"$(sed '/-----/d' ca.pem | base64 -d | sha256sum | cut -c1-64)\" = {fp} ] \
             || {{ echo 'vigil: the CA fingerprint does not match; not this appliance' >&2; exit 1; }}",
            a = self.address,
            p = self.https_port,
            fp = sh_quote(&self.ca_fingerprint),
        )
    }

    /// Download `pkg` over HTTPS pinned to that CA, and check its SHA-256.
    fn fetch_package(&self, pkg: &PackageInfo) -> String {
        let name = sh_quote(&pkg.name);
        format!(
            "curl -fsS --cacert ca.pem --connect-to {CERT_NAME}:{p}:{a}:{p} -o {name} \
             https://{CERT_NAME}:{p}/enroll/packages/{name}; \
             echo {sum} | sha256sum -c -",
            a = self.address,
            p = self.https_port,
            sum = sh_quote(&format!("{}  {}", pkg.sha256, pkg.name)),
        )
    }

    /// `https://ADDRESS:PORT` of this console, where the sensor fetches
    /// its updates (`/enroll/updates/`, the listener the packages come from).
    pub fn updates_url(&self) -> String {
        format!("https://{}:{}", self.address, self.https_port)
    }

    /// `vigil-sensor enroll …` with the token on stdin (kept out of `ps`),
    /// told where updates are: the sensor verifies them against the TUF
    /// root its package ships, so the URL alone grants the console nothing.
    pub fn enroll_command(&self, binary: &str) -> String {
        format!(
            "printf '%s' {t} | {binary} enroll --appliance {a}:{q} --ca-sha256 {fp} \
             --updates-url {u} --token -",
            t = sh_quote(&self.token),
            a = self.address,
            q = self.quic_port,
            fp = sh_quote(&self.ca_fingerprint),
            u = sh_quote(&self.updates_url()),
        )
    }

    /// Point the installed config at this appliance and start the service.
    fn configure_and_start(&self) -> String {
        format!(
            "sed -i 's/^#\\{{0,1\\}}appliance = .*/appliance = \"{a}:{q}\"/' /etc/vigil/sensor.toml; \
             systemctl start vigil-sensor",
            a = self.address,
            q = self.quic_port,
        )
    }

    /// The whole line for a package: a subshell (`set -e`) in a fresh
    /// temporary directory, so any failed step stops it.
    pub fn command(&self, pkg: &PackageInfo) -> String {
        let (install, binary) = match pkg.kind {
            PackageKind::Deb => (format!("dpkg -i {}", sh_quote(&pkg.name)), "vigil-sensor"),
            PackageKind::Tarball => (
                format!("tar xzf {}; sh ./*/install.sh", sh_quote(&pkg.name)),
                "/usr/local/bin/vigil-sensor",
            ),
        };
        format!(
            "(set -e; cd \"$(mktemp -d)\"; {}; {}; {install}; {}; {})",
            self.fetch_ca(),
            self.fetch_package(pkg),
            self.enroll_command(binary),
            self.configure_and_start(),
        )
    }
}

/// Fields of the new-token form.
#[derive(Debug, Deserialize)]
pub struct AddHostsForm {
    pub label: String,
    pub ttl_hours: u64,
    pub max_uses: u32,
    #[serde(default)]
    pub address: String,
}

/// `GET /add-hosts` (admin).
pub async fn page(
    State(state): State<ConsoleState>,
    auth: Authed,
    headers: HeaderMap,
) -> PageResult {
    auth.require(Role::Admin)?;
    let api = api(&state)?;
    let host = host_header(&headers);
    off_runtime(move || {
        let address = default_address(api.https_addr(), host.as_deref()).unwrap_or_default();
        view_page(&state, &auth, &*api, &address, None)
    })
    .await
}

/// `POST /add-hosts` (admin): create a token (audited, never logged) and
/// show it once inside the commands; rendered, not redirected, so the
/// secret never appears in a URL.
pub async fn create(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<AddHostsForm>,
) -> PageResult {
    auth.require(Role::Admin)?;
    let api = api(&state)?;
    let label = super::admin::token_label(&f.label, f.ttl_hours, f.max_uses)?;
    let address = valid_address(&f.address).ok_or_else(|| {
        UiError::BadRequest(
            "address: an IP address or DNS name the hosts reach the appliance at".into(),
        )
    })?;
    off_runtime(move || {
        let detail = format!("{label} (add hosts; address {address})");
        let t =
            super::admin::create_token(&state, &auth, &label, f.ttl_hours, f.max_uses, &detail)?;
        let new = NewToken {
            enrollment: Enrollment {
                address: address.clone(),
                https_port: api.https_addr().port(),
                quic_port: api.quic_addr().port(),
                ca_fingerprint: api.ca_fingerprint(),
                token: t.secret,
            },
            expires_ns: t.info.expires_ns,
            max_uses: t.info.max_uses,
        };
        view_page(&state, &auth, &*api, &address, Some(new))
    })
    .await
}

/// A just-created token and what it is good for.
struct NewToken {
    enrollment: Enrollment,
    expires_ns: u64,
    max_uses: u32,
}

fn host_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn view_page(
    state: &ConsoleState,
    auth: &Authed,
    api: &dyn AddHostsApi,
    address: &str,
    new: Option<NewToken>,
) -> PageResult {
    let packages = api.packages().map_err(UiError::BadRequest)?;
    let fingerprint = api.ca_fingerprint();
    let commands = new.map(|n| commands_panel(&n, &packages));
    let quic = format!(
        "{}:{}",
        if address.is_empty() {
            "ADDRESS"
        } else {
            address
        },
        api.quic_addr().port()
    );
    let body = view! {
        <h1>"Add hosts"</h1>
        {commands}
        <div class="grid2">
            <section class="panel">
                <h2>"This appliance"</h2>
                <table class="dense">
                    <tr><th>"CA fingerprint (SHA-256)"</th><td class="mono secret">{fingerprint}</td></tr>
                    <tr><th>"Sensors connect to (QUIC)"</th><td class="mono">{quic}</td></tr>
                    <tr><th>"Listening"</th><td class="mono">{format!("console {}, QUIC {}", api.https_addr(), api.quic_addr())}</td></tr>
                    <tr><th>"CA certificate"</th><td><a href="/enroll/ca.pem">"/enroll/ca.pem"</a></td></tr>
                </table>
            </section>
            <section class="panel">
                <h2>"Create an enrollment token"</h2>
                <form method="post" action="/add-hosts" class="stack">
                    {csrf_field(auth)}
                    <label>"Label" <input type="text" name="label" placeholder="e.g. web servers" maxlength="80" required/></label>
                    <label>"Valid (hours)" <input type="number" name="ttl_hours" min="1" max="720" value="24"/></label>
                    <label>"Hosts it may enroll" <input type="number" name="max_uses" min="1" max="100000" value="1"/></label>
                    <label>"Address hosts reach the appliance at" <input type="text" name="address" maxlength="253" value=address.to_string() required/></label>
                    <button type="submit" class="primary">"Create token and show the commands"</button>
                </form>
                <p class="muted">"The token is shown once, inside the commands. Tokens are listed (and revoked) on the settings page."</p>
            </section>
        </div>
        {packages_panel(&packages)}
        {recent_panel(state)?}
    };
    Ok(render("Add hosts", Nav::AddHosts, auth, body.into_any()))
}

fn commands_panel(new: &NewToken, packages: &[PackageInfo]) -> impl IntoView {
    let newest = |kind| packages.iter().find(|p| p.kind == kind);
    let line = |title: &'static str, kind: PackageKind| match newest(kind) {
        Some(p) => view! {
            <h3>{title}" ("{p.name.clone()}")"</h3>
            <pre class="oneliner"><code>{new.enrollment.command(p)}</code></pre>
        }
        .into_any(),
        None => view! {
            <h3>{title}</h3>
            <p class="muted">"No such package on this appliance yet (vigil packages add FILE)."</p>
        }
        .into_any(),
    };
    view! {
        <section class="panel">
            <div class="flash ok">
                "New enrollment token (shown once; copy the commands now): "
                <code class="secret">{new.enrollment.token.clone()}</code>
                {format!(" — enrolls up to {} host(s) until {}.", new.max_uses, format_ts(new.expires_ns))}
            </div>
            <p>"Run as root on each host, in a POSIX shell (sh, bash). The line fetches this appliance's CA, checks its fingerprint, downloads the package over HTTPS pinned to that CA, checks its SHA-256, installs it, enrolls the sensor (it updates from this console when its package ships the vendor's update root) and starts it."</p>
            {line("Debian and Ubuntu", PackageKind::Deb)}
            {line("Other systemd distributions", PackageKind::Tarball)}
            <h3>"Sensor already installed"</h3>
            <pre class="oneliner"><code>{new.enrollment.enroll_command("vigil-sensor")}</code></pre>
        </section>
    }
}

fn packages_panel(packages: &[PackageInfo]) -> impl IntoView {
    let rows = packages
        .iter()
        .map(|p| {
            let href = format!("/enroll/packages/{}", p.name);
            let kind = match p.kind {
                PackageKind::Deb => "Debian/Ubuntu",
                PackageKind::Tarball => "tarball",
            };
            view! {
                <tr>
                    <td><a href=href>{p.name.clone()}</a></td>
                    <td>{kind}</td>
                    <td class="num" title=p.size.to_string()>{bytes(p.size)}</td>
                    <td class="mono">{p.sha256.clone()}</td>
                    <td class="mono">{format_ts(p.added_ns)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel">
            <h2>"Sensor packages"</h2>
            {packages.is_empty().then(|| view! {
                <p class="muted">"None yet. On the appliance: vigil packages add vigil-sensor_VERSION_amd64.deb (and the .tar.gz)."</p>
            })}
            <table class="dense">
                <thead><tr><th>"File"</th><th>"For"</th><th>"Size"</th><th>"SHA-256"</th><th>"Added"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

fn recent_panel(state: &ConsoleState) -> Result<impl IntoView, UiError> {
    let mut hosts = state.read.hosts()?;
    hosts.sort_by_key(|h| std::cmp::Reverse(h.enrolled_ns));
    let rows = hosts
        .into_iter()
        .take(RECENT_HOSTS)
        .map(|h| {
            let href = format!("/hosts/{}", h.id);
            let addrs: Vec<String> = h.addrs.iter().map(ToString::to_string).collect();
            view! {
                <tr>
                    <td><a href=href>{h.hostname.clone()}</a></td>
                    <td class="mono">{addrs.join(", ")}</td>
                    <td class="mono">{format_ts(h.enrolled_ns)}</td>
                    <td>{sensor_badge(h.state)}</td>
                    <td>{h.sensor_version.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    Ok(view! {
        <section class="panel">
            <h2>"Recently enrolled hosts"</h2>
            <table class="dense">
                <thead><tr><th>"Host"</th><th>"Addresses"</th><th>"Enrolled"</th><th>"Sensor"</th><th>"Version"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    })
}

/// `GET /enroll/ca.pem` (no login): the CA hosts pin by fingerprint.
pub async fn ca_pem(State(state): State<ConsoleState>) -> Result<Response, UiError> {
    let pem = api(&state)?.ca_pem();
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        pem,
    )
        .into_response())
}

/// `GET /enroll/packages/{name}` (no login): a listed package, streamed,
/// with its size, SHA-256 and an ETag (its SHA-256) to revalidate against.
pub async fn package(
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let api = api(&state)?;
    let found = off_runtime(move || Ok(api.open_package(&name))).await?;
    let Some((info, file)) = found else {
        return Err(UiError::NotFound("this package".into()));
    };
    let etag = format!("\"{}\"", info.sha256);
    let revalidated = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let content_type = match info.kind {
        PackageKind::Deb => "application/vnd.debian.binary-package",
        PackageKind::Tarball => "application/gzip",
    };
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (
            header::HeaderName::from_static(SHA256_HEADER),
            info.sha256.clone(),
        ),
    ];
    if revalidated {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        common,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, info.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", info.name),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment(address: &str) -> Enrollment {
        Enrollment {
            address: address.into(),
            https_port: 8443,
            quic_port: 4433,
            ca_fingerprint: "ab".repeat(32),
            token: "vgl_0123".into(),
        }
    }

    fn deb() -> PackageInfo {
        PackageInfo {
            name: "vigil-sensor_0.1.0_amd64.deb".into(),
            size: 10,
            sha256: "cd".repeat(32),
            kind: PackageKind::Deb,
            added_ns: 0,
        }
    }

    #[test]
    fn addresses_are_ips_or_dns_names_only() {
        assert_eq!(valid_address(" 10.0.0.1 ").as_deref(), Some("10.0.0.1"));
        assert_eq!(valid_address("fd00::1").as_deref(), Some("[fd00::1]"));
        assert_eq!(valid_address("[fd00::1]").as_deref(), Some("[fd00::1]"));
        assert_eq!(
            valid_address("Vigil.Example.org").as_deref(),
            Some("vigil.example.org")
        );
        for hostile in [
            "",
            "a;reboot",
            "$(id)",
            "a b",
            "a'b",
            "-x",
            "a..b",
            "10.0.0.1:8443",
            "a/b",
            "a&b",
            &"a".repeat(64),
        ] {
            assert_eq!(valid_address(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn the_default_address_is_the_listening_one_else_the_browsers() {
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let mgmt: SocketAddr = "10.1.2.3:8443".parse().unwrap();
        assert_eq!(
            default_address(mgmt, Some("x:1")).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            default_address(any, Some("vigil.lan:8443")).as_deref(),
            Some("vigil.lan")
        );
        assert_eq!(
            default_address(any, Some("[fd00::2]:8443")).as_deref(),
            Some("[fd00::2]")
        );
        assert_eq!(default_address(any, Some("a;b")), None);
        assert_eq!(default_address(any, None), None);
    }

    #[test]
    fn the_deb_line_pins_the_ca_checks_the_package_and_enrolls() {
        let line = enrollment("10.0.0.1").command(&deb());
        let fp = "ab".repeat(32);
        for part in [
            "(set -e; cd \"$(mktemp -d)\"; ".to_string(),
            "curl -fsSk -o ca.pem https://10.0.0.1:8443/enroll/ca.pem; ".to_string(),
            format!("| sha256sum | cut -c1-64)\" = '{fp}' ] || {{ echo"),
            "curl -fsS --cacert ca.pem --connect-to vigil-appliance:8443:10.0.0.1:8443 -o 'vigil-sensor_0.1.0_amd64.deb' https://vigil-appliance:8443/enroll/packages/'vigil-sensor_0.1.0_amd64.deb'; ".to_string(),
            format!("echo '{}  vigil-sensor_0.1.0_amd64.deb' | sha256sum -c -; ", "cd".repeat(32)),
            "dpkg -i 'vigil-sensor_0.1.0_amd64.deb'; ".to_string(),
            format!("printf '%s' 'vgl_0123' | vigil-sensor enroll --appliance 10.0.0.1:4433 --ca-sha256 '{fp}' --updates-url 'https://10.0.0.1:8443' --token -; "),
            "sed -i 's/^#\\{0,1\\}appliance = .*/appliance = \"10.0.0.1:4433\"/' /etc/vigil/sensor.toml; systemctl start vigil-sensor)".to_string(),
        ] {
            assert!(line.contains(&part), "{part}\nnot in\n{line}");
        }
    }

    #[test]
    fn the_tarball_line_runs_install_sh_and_the_installed_binary() {
        let tgz = PackageInfo {
            name: "vigil-sensor-0.1.0-x86_64-linux.tar.gz".into(),
            kind: PackageKind::Tarball,
            ..deb()
        };
        let line = enrollment("[fd00::1]").command(&tgz);
        assert!(line.contains("--connect-to vigil-appliance:8443:[fd00::1]:8443"));
        assert!(
            line.contains("tar xzf 'vigil-sensor-0.1.0-x86_64-linux.tar.gz'; sh ./*/install.sh; ")
        );
        assert!(line.contains("| /usr/local/bin/vigil-sensor enroll --appliance [fd00::1]:4433"));
        assert!(line.contains(" --updates-url 'https://[fd00::1]:8443' --token -; "));
    }

    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
