//! Detection in the namespace lab with real sshd logs (issue #14): a
//! password spray from one lab host against the others is alerted as
//! T1110.003 and names its source host.

use super::{eventually, start_appliance, watch};
use std::net::IpAddr;
use vigil_proto::query::AlertFilter;
use vigil_tests::lab::{require_lab, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_spray_across_lab_hosts_is_named_with_its_source() {
    if !require_lab("a_password_spray_across_lab_hosts_is_named_with_its_source") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let app = start_appliance(&tmp.path().join("appliance")).await;
    let lab = Lab::new(4).expect("lab");
    let mut watched = Vec::new();
    for i in 0..4 {
        watched.push(watch(&app, &lab, i, &tmp.path().join(format!("sensor{i}"))).await);
    }
    let reader = app.reader();
    let registered = eventually(20, || {
        let hosts = reader.hosts().unwrap_or_default();
        (0..4).all(|i| {
            hosts.iter().any(|h| {
                h.id == watched[i].host && h.addrs.contains(&IpAddr::V4(lab.hosts[i].addr))
            })
        })
    })
    .await;
    assert!(registered, "hosts: {:#?}", reader.hosts());

    // h1 tries accounts that do not exist on h2..h4: every attempt is an
    // "Invalid user" line in the target's real sshd log.
    for target in 1..4 {
        for user in ["admin", "test", "oracle"] {
            let to = format!("{user}@{}", lab.hosts[target].addr);
            let mut args: Vec<String> = lab.ssh_options();
            args.push(to);
            args.push("true".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let refused = lab.exec(0, "ssh", &args).is_err();
            assert!(refused, "{user} logged in to h{}", target + 1);
        }
    }
    let source = watched[0].host;
    let named = eventually(40, || {
        reader
            .alerts(&AlertFilter::default())
            .unwrap_or_default()
            .iter()
            .any(|a| {
                a.techniques.iter().any(|t| t == "T1110.003") && a.path.first() == Some(&source)
            })
    })
    .await;
    let alerts = reader.alerts(&AlertFilter::default()).unwrap();
    assert!(
        named,
        "no T1110.003 alert from h1 among {:#?}",
        alerts
            .iter()
            .map(|a| (&a.title, &a.path, &a.techniques))
            .collect::<Vec<_>>()
    );
    for w in watched {
        w.sensor.shutdown().await;
    }
    app.shutdown().await;
}
