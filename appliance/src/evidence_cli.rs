//! `vigil audit …`, `vigil export …` and `vigil verify …` (part of the
//! `vigil` binary): thin wrappers over [`vigil_appliance::audit_log`],
//! [`vigil_appliance::export`] and [`vigil_evidence::verify_bundle`].

use super::{print_first_password, AuditCmd, RulesCmd};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use vigil_appliance::admin::{AdminRequest, AdminResponse, ExportTarget};
use vigil_appliance::cli;

fn ns(t: SystemTime) -> Result<u64> {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .context("time before 1970")?;
    u64::try_from(d.as_nanos()).context("time too far in the future")
}

/// `cli:$SUDO_USER`, else `cli:$USER`: who runs the command.
pub fn cli_operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// `vigil rules check|import`.
pub fn rules(cmd: RulesCmd) -> Result<()> {
    let dir = match &cmd {
        RulesCmd::Check { dir } | RulesCmd::Import { dir, .. } => dir.clone(),
    };
    let set = match vigil_models::sigma::RuleSet::load_dir(&dir) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "{} problem(s) in {}; nothing imported",
                errors.len(),
                dir.display()
            );
            std::process::exit(1);
        }
    };
    let RulesCmd::Import { data, operator, .. } = cmd else {
        println!("{} rules OK in {}", set.len(), dir.display());
        return Ok(());
    };
    let mut files = Vec::new();
    for meta in set.rules() {
        let path = Path::new(&meta.file);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("rule file name")?
            .to_string();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        files.push((name, text));
    }
    let operator = operator.unwrap_or_else(cli_operator);
    let resp = run(&data, AdminRequest::ImportRules { files, operator })?;
    print!("{}", cli::render(resp)?);
    Ok(())
}

/// The scope named by `vigil export`'s flags (clap makes them exclusive).
pub fn export_target(
    incident: Option<u64>,
    alert: Option<u64>,
    host: Option<String>,
    from: Option<SystemTime>,
    to: Option<SystemTime>,
) -> Result<ExportTarget> {
    Ok(match (incident, alert, host) {
        (Some(id), _, _) => ExportTarget::Incident(id),
        (_, Some(id), _) => ExportTarget::Alert(id),
        (_, _, Some(host)) => ExportTarget::Host {
            host,
            from_ns: ns(from.context("--host needs --from")?)?,
            to_ns: ns(to.context("--host needs --to")?)?,
        },
        _ => bail!("name what to export: --incident ID, --alert ID or --host H --from T --to T"),
    })
}

fn run(data: &Path, req: AdminRequest) -> Result<AdminResponse> {
    let (resp, pw) = cli::execute(data, req)?;
    print_first_password(pw);
    match resp {
        AdminResponse::Error(e) => bail!("{e}"),
        other => Ok(other),
    }
}

/// `vigil export … -o FILE`: the appliance writes the bundle privately,
/// then it is moved to FILE (0600).
pub fn export(
    data: &Path,
    scope: ExportTarget,
    operator: Option<String>,
    output: &Path,
) -> Result<()> {
    let exporter = operator.unwrap_or_else(cli_operator);
    let AdminResponse::Exported { path, summary } =
        run(data, AdminRequest::Export { scope, exporter })?
    else {
        bail!("unexpected answer from the appliance");
    };
    if std::fs::rename(&path, output).is_err() {
        std::fs::copy(&path, output)
            .with_context(|| format!("copy {} to {}", path.display(), output.display()))?;
        std::fs::remove_file(&path).ok();
    }
    println!(
        "wrote {} ({} alerts, {} events; audit entry {}; content sha256 {})",
        output.display(),
        summary.alerts,
        summary.events,
        summary.audit_seq,
        summary.content_digest
    );
    Ok(())
}

/// `vigil verify BUNDLE`: offline; exit 1 when any check fails.
pub fn verify(bundle: &PathBuf, key: Option<String>, json: bool) -> Result<()> {
    let trusted = match key {
        Some(k) => Some(vec![parse_key(&k)?]),
        None => None,
    };
    let file = std::fs::File::open(bundle).with_context(|| format!("open {}", bundle.display()))?;
    let report = vigil_evidence::verify_bundle(std::io::BufReader::new(file), trusted.as_deref());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}

fn parse_key(text: &str) -> Result<vigil_evidence::VerifyingKey> {
    use base64::Engine;
    let text = match std::fs::read_to_string(text) {
        Ok(contents) => contents,
        Err(_) => text.to_string(),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("--key is not base64 (or a file holding it)")?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| anyhow::anyhow!("--key is not a 32-byte Ed25519 public key"))?;
    vigil_evidence::VerifyingKey::from_bytes(&raw).context("--key is not a valid Ed25519 key")
}

/// `vigil audit verify|checkpoint|prove-extends`.
pub fn audit(cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { data } => {
            let AdminResponse::AuditVerified(v) = run(&data, AdminRequest::AuditVerify)? else {
                bail!("unexpected answer from the appliance");
            };
            print!("{}", v.text);
            if !v.ok {
                std::process::exit(1);
            }
        }
        AuditCmd::Checkpoint { data } => {
            let AdminResponse::AuditCheckpoint { note, public_key } =
                run(&data, AdminRequest::AuditCheckpoint)?
            else {
                bail!("unexpected answer from the appliance");
            };
            print!("{note}");
            eprintln!("signed by the evidence key (Ed25519, base64): {public_key}");
        }
        AuditCmd::ProveExtends {
            data,
            old_checkpoint,
            json,
        } => {
            let old = std::fs::read_to_string(&old_checkpoint)
                .with_context(|| format!("read {}", old_checkpoint.display()))?;
            let AdminResponse::AuditExtends {
                extension,
                verified,
            } = run(&data, AdminRequest::AuditProveExtends { old })?
            else {
                bail!("unexpected answer from the appliance");
            };
            if json {
                let v = serde_json::json!({
                    "ok": verified.ok,
                    "checkpoint": extension.checkpoint,
                    "proof": extension.proof,
                    "report": verified.text,
                });
                println!("{v}");
            } else {
                print!("{}", verified.text);
                println!("new checkpoint:\n{}", extension.checkpoint);
            }
            if !verified.ok {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
