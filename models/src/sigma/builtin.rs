//! The vetted rule set that ships with Vigil (`models/rules/sigma/`),
//! compiled into the binary so an appliance with no rules directory still
//! has it; an operator's rules are loaded beside it.

use super::{RuleError, RuleSet};

/// (file name, text) of every shipped rule.
pub const BUILTIN_RULES: &[(&str, &str)] = &[
    (
        "vigil_authorized_keys_changed.yml",
        include_str!("../../rules/sigma/vigil_authorized_keys_changed.yml"),
    ),
    (
        "vigil_mimikatz_pth.yml",
        include_str!("../../rules/sigma/vigil_mimikatz_pth.yml"),
    ),
    (
        "vigil_psexec_service.yml",
        include_str!("../../rules/sigma/vigil_psexec_service.yml"),
    ),
    (
        "vigil_sc_remote_service_create.yml",
        include_str!("../../rules/sigma/vigil_sc_remote_service_create.yml"),
    ),
    (
        "vigil_ssh_no_host_key_check.yml",
        include_str!("../../rules/sigma/vigil_ssh_no_host_key_check.yml"),
    ),
    (
        "vigil_ssh_root_from_public.yml",
        include_str!("../../rules/sigma/vigil_ssh_root_from_public.yml"),
    ),
    (
        "vigil_winrm_shell.yml",
        include_str!("../../rules/sigma/vigil_winrm_shell.yml"),
    ),
    (
        "vigil_wmic_remote_process.yml",
        include_str!("../../rules/sigma/vigil_wmic_remote_process.yml"),
    ),
    (
        "vigil_wmiprvse_shell.yml",
        include_str!("../../rules/sigma/vigil_wmiprvse_shell.yml"),
    ),
];

impl RuleSet {
    /// The shipped rules.
    pub fn builtin() -> RuleSet {
        let mut set = RuleSet::new();
        for (name, text) in BUILTIN_RULES {
            // A shipped rule that does not compile is a build defect,
            // caught by the test below.
            let _ = set.add_str(&format!("builtin:{name}"), text);
        }
        set
    }

    /// The shipped rules plus every rule under `dir` (if it exists); the
    /// operator's bad rules are returned beside the good set, never
    /// silently dropped.
    pub fn builtin_and_dir(dir: &std::path::Path) -> (RuleSet, Vec<RuleError>) {
        let mut set = RuleSet::builtin();
        if !dir.is_dir() {
            return (set, Vec::new());
        }
        let (theirs, mut errors) = RuleSet::load_dir_partial(dir);
        for rule in theirs.rules {
            let file = rule.meta.file.clone();
            if let Err(mut e) = set.insert(&file, rule) {
                errors.append(&mut e);
            }
        }
        (set, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_rule_compiles_and_the_list_matches_the_folder() {
        for (name, text) in BUILTIN_RULES {
            RuleSet::from_str(name, text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        assert_eq!(RuleSet::builtin().len(), BUILTIN_RULES.len());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/sigma");
        let on_disk = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "yml")
            })
            .count();
        assert_eq!(on_disk, BUILTIN_RULES.len(), "a rule file is not shipped");
    }
}
