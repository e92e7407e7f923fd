//! `vigil update publish-sensors BUNDLE` (part of the `vigil` binary; every
//! other `vigil update` command is the `vigil-update` tool): reads the
//! update tool's trusted state and the bundle here (root may read both),
//! checks the metadata, and sends the metadata and the sensor targets over
//! the admin channel, where the appliance verifies them again, audits and
//! publishes them ([`vigil_appliance::sensor_updates`]).
//!
//! Publishing is its own command rather than a side effect of `apply`:
//! `apply` runs as the update tool, which has no access to the audit log,
//! and a release whose appliance slot has not passed its health check yet
//! should not reach the fleet until the operator says so.

use super::evidence_cli::cli_operator;
use super::print_first_password;
use anyhow::{bail, Result};
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::SystemTime;
use vigil_appliance::admin::{AdminRequest, AdminResponse};
use vigil_appliance::cli;
use vigil_appliance::sensor_updates::request_from_bundle;

/// `vigil update publish-sensors`.
#[derive(Parser)]
#[command(
    name = "vigil update publish-sensors",
    bin_name = "vigil update publish-sensors",
    about = "Serve a verified bundle's sensor targets to enrolled sensors"
)]
struct PublishArgs {
    /// The update bundle (as for `vigil update apply`).
    bundle: PathBuf,
    /// The update tool's state directory (its `slots.json` holds the
    /// appliance's trusted root and versions).
    #[arg(long, default_value = "/var/lib/vigil-update")]
    state: PathBuf,
    #[arg(long, default_value = "/var/lib/vigil")]
    data: PathBuf,
    /// Who publishes (audit log); default `cli:$SUDO_USER` or `cli:$USER`.
    #[arg(long)]
    operator: Option<String>,
}

/// Whether `vigil update ARGS…` is this command.
pub fn is_publish(args: &[OsString]) -> bool {
    args.first().is_some_and(|a| a == "publish-sensors")
}

/// Run `vigil update publish-sensors ARGS…` (`args` starts with the
/// subcommand's name).
pub fn publish(args: Vec<OsString>) -> Result<()> {
    let a = PublishArgs::parse_from(args);
    let operator = a.operator.unwrap_or_else(cli_operator);
    let req = request_from_bundle(&a.bundle, &a.state, operator, SystemTime::now())
        .map_err(anyhow::Error::msg)?;
    let req = AdminRequest::PublishSensorUpdates(req);
    let (resp, pw) = cli::execute(&a.data, req)?;
    print_first_password(pw);
    if let AdminResponse::Error(e) = resp {
        bail!("{e}");
    }
    print!("{}", cli::render(resp)?);
    Ok(())
}
