//! LANL 2015 text for a generated enterprise: `auth.txt`, `redteam.txt`,
//! `campaigns.tsv` (labels for the scorer only) and optionally `flows.txt`.

use super::{
    AuthLine, AuthType, Enterprise, EnterpriseError, LabelKind, LogonType, Orientation, Principal,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::Path;

/// What [`super::write_dir`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Lines in `auth.txt`.
    pub auth_lines: u64,
    /// Lines in `redteam.txt` (compromise events).
    pub redteam_lines: u64,
    /// Campaigns injected.
    pub campaigns: usize,
    /// Distinct computers named in `auth.txt`.
    pub hosts: usize,
    /// Lines in `flows.txt` (0 when not written).
    pub flow_lines: u64,
}

impl AuthType {
    /// As LANL writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Kerberos => "Kerberos",
            AuthType::Ntlm => "NTLM",
            AuthType::Negotiate => "Negotiate",
            AuthType::Unknown => "?",
        }
    }
}

impl LogonType {
    /// As LANL writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogonType::Network => "Network",
            LogonType::Interactive => "Interactive",
            LogonType::RemoteInteractive => "RemoteInteractive",
            LogonType::Unlock => "Unlock",
            LogonType::Service => "Service",
            LogonType::Unknown => "?",
        }
    }
}

impl Orientation {
    /// As LANL writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Orientation::LogOn => "LogOn",
            Orientation::LogOff => "LogOff",
            Orientation::Tgt => "TGT",
            Orientation::Tgs => "TGS",
        }
    }
}

impl AuthLine {
    /// The `auth.txt` line (without newline).
    pub fn to_lanl(&self) -> String {
        let mut s = String::with_capacity(80);
        self.write_lanl(&mut s);
        s
    }

    fn write_lanl(&self, s: &mut String) {
        let _ = write!(
            s,
            "{},{},{},C{},C{},{},{},{},{}",
            self.time,
            self.src_user,
            self.dst_user,
            self.src,
            self.dst,
            self.auth.as_str(),
            self.logon.as_str(),
            self.orient.as_str(),
            if self.ok { "Success" } else { "Fail" }
        );
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EnterpriseError + '_ {
    move |source| EnterpriseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write(e: &Enterprise, dir: &Path) -> Result<WriteSummary, EnterpriseError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let auth_p = dir.join("auth.txt");
    let red_p = dir.join("redteam.txt");
    let camp_p = dir.join("campaigns.tsv");
    let create = |p: &Path| {
        std::fs::File::create(p)
            .map(|f| BufWriter::with_capacity(1 << 20, f))
            .map_err(io(p))
    };
    let (mut auth, mut red, mut camp) = (create(&auth_p)?, create(&red_p)?, create(&camp_p)?);
    writeln!(camp, "time\tuser\tsrc\tdst\tstyle\tcampaign\tkind").map_err(io(&camp_p))?;
    let mut sum = WriteSummary {
        auth_lines: 0,
        redteam_lines: 0,
        campaigns: e.campaigns,
        hosts: 0,
        flow_lines: 0,
    };
    let mut hosts = HashSet::new();
    let mut buf = String::with_capacity(1 << 16);
    for r in &e.records {
        let l = &r.line;
        hosts.insert(l.src);
        hosts.insert(l.dst);
        l.write_lanl(&mut buf);
        buf.push('\n');
        if buf.len() > 60_000 {
            auth.write_all(buf.as_bytes()).map_err(io(&auth_p))?;
            buf.clear();
        }
        sum.auth_lines += 1;
        let Some(label) = r.label else { continue };
        let kind = match label.kind {
            LabelKind::Hop => {
                writeln!(red, "{},{},C{},C{}", l.time, l.src_user, l.src, l.dst)
                    .map_err(io(&red_p))?;
                sum.redteam_lines += 1;
                "hop"
            }
            LabelKind::Context => "context",
        };
        writeln!(
            camp,
            "{}\t{}\tC{}\tC{}\t{}\t{}\t{}",
            l.time, l.src_user, l.src, l.dst, label.style, label.campaign, kind
        )
        .map_err(io(&camp_p))?;
    }
    auth.write_all(buf.as_bytes()).map_err(io(&auth_p))?;
    auth.flush().map_err(io(&auth_p))?;
    red.flush().map_err(io(&red_p))?;
    camp.flush().map_err(io(&camp_p))?;
    sum.hosts = hosts.len();
    if e.config.flows {
        sum.flow_lines = write_flows(e, dir)?;
    }
    Ok(sum)
}

/// One TCP flow per remote logon (SMB, or RDP for RemoteInteractive) and
/// per Kerberos ticket (port 88), in LANL's flow format with anonymised
/// client ports.
fn write_flows(e: &Enterprise, dir: &Path) -> Result<u64, EnterpriseError> {
    let p = dir.join("flows.txt");
    let f = std::fs::File::create(&p).map_err(io(&p))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut rng = StdRng::seed_from_u64(e.config.seed ^ 0xF10F_5EED);
    let mut n = 0;
    for r in &e.records {
        let l = &r.line;
        let port = match (l.orient, l.logon) {
            (Orientation::Tgt | Orientation::Tgs, _) => 88,
            (Orientation::LogOn, LogonType::RemoteInteractive) => 3389,
            (Orientation::LogOn, LogonType::Network) => 445,
            _ => continue,
        };
        if l.src == l.dst || matches!(l.src_user, Principal::Anonymous(_)) && port != 445 {
            continue;
        }
        let (dur, pkts) = (rng.gen_range(0..300u32), rng.gen_range(4..200u32));
        let bytes = pkts * rng.gen_range(60..1400u32);
        let sport = rng.gen_range(1..30_000u32);
        writeln!(
            w,
            "{},{dur},C{},N{sport},C{},{port},6,{pkts},{bytes}",
            l.time, l.src, l.dst
        )
        .map_err(io(&p))?;
        n += 1;
    }
    w.flush().map_err(io(&p))?;
    Ok(n)
}
