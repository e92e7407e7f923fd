//! The "Add hosts" page (#18) over real HTTPS: only admins see it, a
//! token made there is audited (never its secret) and printed inside the
//! one-liners with the real CA fingerprint; packages added with `vigil
//! packages add` download without a login, byte for byte with their
//! SHA-256 in a header, and nothing else does. Then the printed Debian
//! line itself runs (real curl against the appliance, the real
//! `vigil-sensor enroll`; `dpkg` and `systemctl` stand-ins, system paths
//! pointed at a temp dir) and the host shows up enrolled, with this
//! console as its update source.

use super::forwarding::session;
use super::{header, https_raw};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_appliance::admin::{self, AdminRequest, AdminResponse};
use vigil_appliance::{Appliance, ServeConfig};
use vigil_web_ui::store::{ConsoleStore, Role};

const DEB: &str = "vigil-sensor_0.9.1_amd64.deb";
const TGZ: &str = "vigil-sensor-0.9.1-x86_64-linux.tar.gz";

async fn appliance(data: &Path) -> Appliance {
    let mut cfg = ServeConfig::new(data).loopback();
    cfg.admin_socket = false;
    cfg.pipeline = None;
    Appliance::start(cfg).await.unwrap()
}

async fn request(app: &Appliance, method: &str, path: &str, extra: &str, form: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: vigil-appliance\r\n{extra}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    https_raw(app.https_addr, &app.ca_der(), &req).await
}

fn cookie(c: &str) -> String {
    format!("Cookie: {c}\r\n")
}

fn body(res: &str) -> &str {
    res.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Text of the page as a shell sees it once copied (HTML entities undone).
fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `<pre class="oneliner">` commands of a page, in order.
fn one_liners(page: &str) -> Vec<String> {
    page.split("<pre class=\"oneliner\"><code>")
        .skip(1)
        .filter_map(|p| p.split("</code>").next())
        .map(unescape)
        .collect()
}

/// `vigil packages add` through the admin channel's handler (the path the
/// CLI takes), so it is stored and audited as an operator's action.
fn add_package(app: &Appliance, name: &str, bytes: &[u8]) {
    use base64::Engine;
    let req = AdminRequest::AddPackage {
        name: name.into(),
        content_b64: base64::engine::general_purpose::STANDARD.encode(bytes),
        operator: "cli:root".into(),
    };
    match admin::handle(&app.core(), req, true) {
        AdminResponse::PackageAdded { package, .. } => assert_eq!(package.name, name),
        other => panic!("package not added: {other:?}"),
    }
}

/// A vendor's TUF root (version 1, one key per role) in `dir`, standing in
/// for the `update-root.json` a package ships.
fn update_root(dir: &Path) -> PathBuf {
    use vigil_update::{keys, pack};
    let spec_key = |role: &str| {
        let path = dir.join(format!("{role}.key"));
        let key = keys::generate();
        keys::write_key_pair(&key, &path).unwrap();
        let public = keys::read_public(&dir.join(format!("{role}.key.pub"))).unwrap();
        (
            key,
            pack::RoleSpec {
                keys: vec![public],
                threshold: 1,
            },
        )
    };
    let (root_key, root) = spec_key("root");
    let spec = pack::RootSpec {
        root,
        targets: spec_key("targets").1,
        snapshot: spec_key("snapshot").1,
        timestamp: spec_key("timestamp").1,
        expires: std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    };
    pack::Repo::create(&dir.join("repo"), &spec, &[root_key]).unwrap();
    dir.join("repo/metadata/1.root.json")
}

fn deb_bytes() -> Vec<u8> {
    "not really a deb, but served byte for byte\n"
        .repeat(500)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_get_one_liners_and_anyone_gets_only_listed_packages() {
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(dir.path()).await;
    let deb = deb_bytes();
    add_package(&app, DEB, &deb);
    add_package(&app, TGZ, b"tarball\n");
    let refused = admin::handle(
        &app.core(),
        AdminRequest::AddPackage {
            name: "../keys/evil.deb".into(),
            content_b64: String::new(),
            operator: "cli:root".into(),
        },
        true,
    );
    assert!(matches!(refused, AdminResponse::Error(_)), "{refused:?}");
    let form = "label=web&ttl_hours=2&max_uses=3&address=127.0.0.1";

    for (user, role) in [("vic", Role::Viewer), ("ana", Role::Analyst)] {
        let (c, csrf) = session(&app, user, role);
        let page = request(&app, "GET", "/add-hosts", &cookie(&c), "").await;
        assert!(page.starts_with("HTTP/1.1 403"), "{user}: {page}");
        let post = format!("csrf={csrf}&{form}");
        let res = request(&app, "POST", "/add-hosts", &cookie(&c), &post).await;
        assert!(res.starts_with("HTTP/1.1 403"), "{user}: {res}");
        let overview = request(&app, "GET", "/", &cookie(&c), "").await;
        assert!(overview.starts_with("HTTP/1.1 200"), "{user}: {overview}");
        assert!(
            !overview.contains("href=\"/add-hosts\""),
            "{user} sees no nav link"
        );
    }
    let (c, csrf) = session(&app, "root", Role::Admin);
    let res = request(&app, "POST", "/add-hosts", &cookie(&c), form).await;
    assert!(res.starts_with("HTTP/1.1 403"), "no CSRF token: {res}");
    let hostile = format!("csrf={csrf}&label=x&ttl_hours=1&max_uses=1&address=a%3Breboot");
    let res = request(&app, "POST", "/add-hosts", &cookie(&c), &hostile).await;
    assert!(
        res.starts_with("HTTP/1.1 400") && res.contains("address:"),
        "{res}"
    );
    assert!(app.core().console.enrollment_tokens().unwrap().is_empty());

    let fp = app.ca_fingerprint();
    let page = request(&app, "GET", "/add-hosts", &cookie(&c), "").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for shown in [
        fp.as_str(),
        DEB,
        TGZ,
        "21.0 KiB",
        "8 B",
        "value=\"127.0.0.1\"",
    ] {
        assert!(page.contains(shown), "{shown} not on the page");
    }
    let sha = hex::encode(Sha256::digest(&deb));
    assert!(page.contains(&sha), "the package's SHA-256 is listed");

    let res = request(
        &app,
        "POST",
        "/add-hosts",
        &cookie(&c),
        &format!("csrf={csrf}&{form}"),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let token = res
        .split("vgl_")
        .nth(1)
        .map(|r| format!("vgl_{}", &r[..40]))
        .expect("token shown");
    let lines = one_liners(&res);
    assert_eq!(lines.len(), 3, "deb, tarball, already installed: {lines:?}");
    let quic = format!("--appliance 127.0.0.1:{}", app.quic_addr.port());
    for line in &lines {
        for part in [token.as_str(), fp.as_str(), quic.as_str()] {
            assert!(line.contains(part), "{part} not in {line}");
        }
    }
    assert!(
        lines[0].contains(&format!("dpkg -i '{DEB}'")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!("tar xzf '{TGZ}'")),
        "{}",
        lines[1]
    );
    let tokens = app.core().console.enrollment_tokens().unwrap();
    assert_eq!((tokens.len(), tokens[0].max_uses), (1, 3));
    let audit = app.core().console.audit_entries().unwrap();
    let actions: Vec<_> = audit
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("cli:root", "packages.add"),
            ("cli:root", "packages.add"),
            ("root", "enrollment.token_create")
        ]
    );
    assert!(
        audit.iter().all(|e| !e.detail.contains(&token)),
        "the secret is never in the audit log"
    );

    // No login needed for the CA and listed packages.
    let ca = request(&app, "GET", "/enroll/ca.pem", "", "").await;
    assert!(ca.starts_with("HTTP/1.1 200"), "{ca}");
    let der = {
        use base64::Engine;
        let b64: String = body(&ca)
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    assert_eq!(hex::encode(Sha256::digest(&der)), fp);
    let path = format!("/enroll/packages/{DEB}");
    let got = request(&app, "GET", &path, "", "").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(body(&got).as_bytes(), deb.as_slice());
    assert_eq!(header(&got, "x-checksum-sha256"), Some(sha.as_str()));
    assert_eq!(
        hex::encode(Sha256::digest(body(&got).as_bytes())),
        sha,
        "the header's hash is the body's"
    );
    let deb_len = deb.len().to_string();
    assert_eq!(header(&got, "content-length"), Some(deb_len.as_str()));
    assert_eq!(
        header(&got, "content-type"),
        Some("application/vnd.debian.binary-package")
    );
    assert_eq!(header(&got, "cache-control"), Some("no-cache"));
    let etag = header(&got, "etag").expect("etag").to_owned();
    assert_eq!(etag, format!("\"{sha}\""));
    let again = request(
        &app,
        "GET",
        &path,
        &format!("If-None-Match: {etag}\r\n"),
        "",
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    for hostile in [
        "/enroll/packages/index.json",
        "/enroll/packages/..%2Findex.json",
        "/enroll/packages/..%2Fkeys%2Fca.key",
        "/enroll/packages/%2e%2e%2fkeys%2fca.key",
        "/enroll/packages/../keys/ca.key",
        "/enroll/packages/..",
        "/enroll/packages/.tmp-vigil-sensor_0.9.1_amd64.deb",
        "/enroll/packages/vigil-sensor_0.9.1_amd64.deb%00",
        "/enroll/packages/vigil-sensor_0.9.1_amd64.deb%2F",
        "/enroll/packages/%2Fetc%2Fpasswd",
        "/enroll/packages/evil.deb",
        "/enroll/packages/",
    ] {
        let res = request(&app, "GET", hostile, "", "").await;
        assert!(res.starts_with("HTTP/1.1 404"), "{hostile}: {res}");
        assert!(!res.contains("PRIVATE KEY"), "{hostile}");
    }
    app.shutdown().await;
}

/// `target/debug`, where the workspace build puts `vigil-sensor`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

/// Stand-ins that log their arguments, so the line's `dpkg -i` and
/// `systemctl start` are seen without touching the system.
fn fake_bin(dir: &Path, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    for name in ["dpkg", "systemctl"] {
        let p = fake.join(name);
        let script = format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n", log.display());
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_debian_line_enrolls_a_real_sensor() {
    let sensor = bin_dir().join("vigil-sensor");
    let curl = Command::new("curl").arg("--version").output().is_ok();
    if !sensor.is_file() || !curl {
        let why = format!(
            "needs curl and {} (cargo build --workspace --all-targets)",
            sensor.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipping: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(&dir.path().join("data")).await;
    add_package(&app, DEB, &deb_bytes());
    let (c, csrf) = session(&app, "root", Role::Admin);
    let form = format!("csrf={csrf}&label=lab&ttl_hours=1&max_uses=1&address=127.0.0.1");
    let res = request(&app, "POST", "/add-hosts", &cookie(&c), &form).await;
    let deb_line = one_liners(&res).into_iter().next().expect("the .deb line");

    let host = dir.path().join("host");
    let (state, conf, log) = (
        host.join("state"),
        host.join("sensor.toml"),
        host.join("calls.log"),
    );
    std::fs::create_dir_all(&host).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/sensor.toml");
    std::fs::copy(shipped, &conf).unwrap();
    let path = format!(
        "{}:{}:{}",
        fake_bin(&host, &log).display(),
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The line as printed; only where it writes on the host is redirected.
    // The root passed as a flag stands for the one the package installs
    // at /usr/share/vigil-sensor/update-root.json.
    let root = update_root(&host);
    let run = |line: &str| {
        let line = line
            .replace("/etc/vigil/sensor.toml", &conf.display().to_string())
            .replace(
                "vigil-sensor enroll ",
                &format!(
                    "vigil-sensor enroll --state-dir {} --update-root {} ",
                    state.display(),
                    root.display()
                ),
            );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .env("PATH", &path)
            .env("TMPDIR", &host);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };

    // A different fingerprint (another appliance): nothing is installed.
    let wrong = deb_line.replace(&app.ca_fingerprint(), &"0".repeat(64));
    let out = run(&wrong).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CA fingerprint does not match"));
    assert!(!log.exists(), "nothing ran after the mismatch");

    let out = run(&deb_line).await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{deb_line}\n{said}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        format!("dpkg -i {DEB}\nsystemctl start vigil-sensor\n")
    );
    let want = format!("appliance = \"127.0.0.1:{}\"", app.quic_addr.port());
    let toml = std::fs::read_to_string(&conf).unwrap();
    assert!(toml.lines().any(|l| l == want), "{toml}");
    assert!(state.join("cert.pem").is_file(), "{said}");
    // Updates come from the console the page was served on.
    let url = format!("https://127.0.0.1:{}", app.https_addr.port());
    assert!(
        deb_line.contains(&format!("--updates-url '{url}' ")),
        "{deb_line}"
    );
    assert!(
        said.contains(&format!("updates: from {url}, verified against")),
        "{said}"
    );
    let updates: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("updates.json")).unwrap()).unwrap();
    assert_eq!(updates["url"], url.as_str(), "{updates}");
    let hosts = app.reader().hosts().unwrap();
    assert_eq!(hosts.len(), 1, "the host is registered");
    let tokens = app.core().console.enrollment_tokens().unwrap();
    assert_eq!(tokens[0].uses, 1);
    app.shutdown().await;
}
