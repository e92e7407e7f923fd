//! End-to-end test support for Vigil: a lab of real hosts (network
//! namespaces with real sshd) and the end-to-end tests that drive real
//! sensors and a real appliance through it (in `tests/`).

pub mod lab;

#[cfg(test)]
mod lab_tests {
    use crate::lab::{require_lab, Lab};

    /// The lab itself works: three hosts, key logins across them, a chain
    /// h1 → h2 → h3, and each sshd logs the login with the peer's address.
    #[test]
    fn ssh_chain_across_lab_hosts_is_logged() {
        if !require_lab("ssh_chain_across_lab_hosts_is_logged") {
            return;
        }
        let lab = Lab::new(3).expect("build lab");
        let out = lab
            .ssh(0, 1, "hostname; echo hop-ok")
            .expect("ssh h1 -> h2");
        assert!(String::from_utf8_lossy(&out.stdout).contains("hop-ok"));
        // Second hop from inside h2's session: it runs in h2's namespace.
        let hop = format!(
            "ssh {} root@{} 'echo chain-ok'",
            lab.ssh_options().join(" "),
            lab.hosts[2].addr
        );
        let out = lab.ssh(0, 1, &hop).expect("ssh h1 -> h2 -> h3");
        assert!(String::from_utf8_lossy(&out.stdout).contains("chain-ok"));
        let log2 = std::fs::read_to_string(&lab.hosts[1].auth_log).unwrap();
        let log3 = std::fs::read_to_string(&lab.hosts[2].auth_log).unwrap();
        assert!(
            log2.contains(&format!(
                "Accepted publickey for root from {}",
                lab.hosts[0].addr
            )),
            "h2 log: {log2}"
        );
        assert!(
            log3.contains(&format!(
                "Accepted publickey for root from {}",
                lab.hosts[1].addr
            )),
            "h3 log: {log3}"
        );
        let netns: Vec<String> = lab.hosts.iter().map(|h| h.netns.clone()).collect();
        drop(lab);
        let list = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        for ns in netns {
            assert!(!list.contains(&ns), "namespace {ns} left behind");
        }
    }
}
