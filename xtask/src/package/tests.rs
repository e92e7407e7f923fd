//! The package layouts, with and without a shipped update root.

use super::*;

fn dests(entries: &[Entry]) -> Vec<(&str, u32)> {
    entries.iter().map(|e| (e.dest.as_str(), e.mode)).collect()
}

#[test]
fn the_update_root_is_shipped_only_when_given() {
    let (bin, pkg) = (Path::new("/b/vigil-sensor"), Path::new("/p"));
    let deb = deb_entries(bin, pkg, None);
    assert_eq!(
        dests(&deb),
        [
            ("usr/bin/vigil-sensor", 0o755),
            ("lib/systemd/system/vigil-sensor.service", 0o644),
            ("lib/systemd/system/vigil-sensor-update.service", 0o644),
            ("lib/systemd/system/vigil-sensor-update.timer", 0o644),
            ("etc/vigil/sensor.toml", 0o640),
            ("usr/share/doc/vigil-sensor/README.md", 0o644),
            ("usr/share/doc/vigil-sensor/copyright", 0o644),
        ]
    );
    assert_eq!(deb[0].src, bin);
    assert_eq!(deb[4].src, pkg.join("sensor.toml"));
    let tar = tarball_entries(bin, pkg, None);
    assert_eq!(
        dests(&tar),
        [
            ("vigil-sensor", 0o755),
            ("vigil-sensor.service", 0o644),
            ("vigil-sensor-update.service", 0o644),
            ("vigil-sensor-update.timer", 0o644),
            ("sensor.toml", 0o640),
            ("install.sh", 0o755),
            ("README.md", 0o644),
        ]
    );

    let root = Path::new("/keys/root.json");
    let shipped = Entry {
        src: root.to_path_buf(),
        dest: "usr/share/vigil-sensor/update-root.json".into(),
        mode: 0o644,
    };
    for (with, without) in [
        (deb_entries(bin, pkg, Some(root)), deb),
        (tarball_entries(bin, pkg, Some(root)), tar),
    ] {
        let (last, rest) = with.split_last().unwrap();
        assert_eq!(rest, without, "the other files are unchanged");
        assert_eq!(last, &shipped);
    }
}

#[test]
fn the_shipped_root_is_where_the_sensor_looks() {
    let sensor = include_str!("../../../sensor/src/update/mod.rs");
    assert!(sensor.contains(&format!("DEFAULT_ROOT: &str = \"/{UPDATE_ROOT_DEST}\"")));
    let install = include_str!("../../../packaging/install.sh");
    assert!(install.contains(&format!("$HERE/{UPDATE_ROOT_DEST}")));
}

/// The update unit runs what the sensor documents, treats its "installed"
/// status as success and restarts the sensor on it alone; `install.sh`
/// rewrites exactly the lines that name the binary's directory.
#[test]
fn the_update_unit_restarts_the_sensor_only_after_an_install() {
    let unit = include_str!("../../../packaging/vigil-sensor-update.service");
    let sensor = include_str!("../../../sensor/src/update/mod.rs");
    assert!(sensor.contains("pub const EXIT_INSTALLED: u8 = 10;"));
    let main = include_str!("../../../sensor/src/main.rs");
    assert!(main.contains("installed_exit_code: bool"));
    let lines: Vec<&str> = unit.lines().collect();
    for want in [
        "Type=oneshot",
        "ExecStart=/usr/bin/vigil-sensor update --installed-exit-code",
        "SuccessExitStatus=10",
        "ExecStopPost=+/bin/sh -c 'test \"$$EXIT_STATUS\" != 10 || exec systemctl try-restart vigil-sensor.service'",
        "ConditionPathExists=/var/lib/vigil-sensor/updates.json",
        "ReadWritePaths=/usr/bin /var/lib/vigil-sensor",
    ] {
        assert!(lines.contains(&want), "missing {want:?}");
    }
    let timer = include_str!("../../../packaging/vigil-sensor-update.timer");
    for want in ["Persistent=true", "WantedBy=timers.target"] {
        assert!(timer.lines().any(|l| l == want), "missing {want:?}");
    }
    assert!(timer.lines().any(|l| l.starts_with("RandomizedDelaySec=")));
    let install = include_str!("../../../packaging/install.sh");
    assert!(install.contains(
        "-e 's#^ExecStart=/usr/bin/vigil-sensor #ExecStart=/usr/local/bin/vigil-sensor #'"
    ));
    assert!(install.contains("-e 's#^ReadWritePaths=/usr/bin #ReadWritePaths=/usr/local/bin #'"));
}
