//! `vigil packages add|list|remove` (part of the `vigil` binary): the
//! sensor packages the console's "Add hosts" page serves
//! ([`vigil_appliance::packages`]). `add` reads the file here and sends
//! its bytes, so the appliance writes (and owns) its copy whichever user
//! runs the command.

use super::evidence_cli::cli_operator;
use super::print_first_password;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use vigil_appliance::admin::{AdminRequest, AdminResponse};
use vigil_appliance::cli;
use vigil_appliance::packages::{valid_name, MAX_PACKAGE_BYTES};

/// `vigil packages …`.
#[derive(Subcommand)]
pub enum PackagesCmd {
    /// Add (or replace) a sensor package: the `.deb` or the `.tar.gz`
    /// that `cargo xtask package` builds.
    Add {
        file: PathBuf,
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// Name to serve it under (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Who adds it (audit log); default `cli:$SUDO_USER` or `cli:$USER`.
        #[arg(long)]
        operator: Option<String>,
    },
    /// List the packages with size and SHA-256.
    List {
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
    },
    /// Stop serving a package and delete it.
    Remove {
        name: String,
        #[arg(long, default_value = "/var/lib/vigil")]
        data: PathBuf,
        /// Who removes it (audit log); default `cli:$SUDO_USER` or `cli:$USER`.
        #[arg(long)]
        operator: Option<String>,
    },
}

/// Run one `vigil packages` command.
pub fn packages(cmd: PackagesCmd) -> Result<()> {
    let (data, req) = match cmd {
        PackagesCmd::Add {
            file,
            data,
            name,
            operator,
        } => {
            let name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the file has no usable name; give --name")?
                    .to_owned(),
            };
            if !valid_name(&name) {
                bail!("{name:?}: package names end .deb or .tar.gz and use letters, digits, '.', '_', '+', '~', '-'");
            }
            let size = std::fs::metadata(&file)
                .with_context(|| format!("read {}", file.display()))?
                .len();
            if size > MAX_PACKAGE_BYTES as u64 {
                bail!(
                    "{}: {size} bytes; at most {MAX_PACKAGE_BYTES}",
                    file.display()
                );
            }
            let bytes = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
            use base64::Engine;
            let content_b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let operator = operator.unwrap_or_else(cli_operator);
            (
                data,
                AdminRequest::AddPackage {
                    name,
                    content_b64,
                    operator,
                },
            )
        }
        PackagesCmd::List { data } => (data, AdminRequest::ListPackages),
        PackagesCmd::Remove {
            name,
            data,
            operator,
        } => (
            data,
            AdminRequest::RemovePackage {
                name,
                operator: operator.unwrap_or_else(cli_operator),
            },
        ),
    };
    let (resp, pw) = cli::execute(&data, req)?;
    print_first_password(pw);
    if let AdminResponse::Error(e) = resp {
        bail!("{e}");
    }
    print!("{}", cli::render(resp)?);
    Ok(())
}
