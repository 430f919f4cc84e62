#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `harden_process` changes the whole process, so it runs alone in this test binary.

/// The soft and hard values of one line of `/proc/self/limits`.
#[cfg(target_os = "linux")]
fn proc_limit(name: &str) -> (String, String) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} in /proc/self/limits:\n{limits}"));
    let mut fields = line[name.len()..].split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn hardening_disables_core_dumps_and_makes_the_process_non_dumpable() {
    use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};

    keyscope_custody::harden_process().unwrap();

    assert_eq!(
        proc_limit("Max core file size"),
        ("0".to_owned(), "0".to_owned())
    );
    let core = getrlimit(Resource::Core);
    assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);

    // Idempotent: a second call (say, from a library and from main) still succeeds.
    keyscope_custody::harden_process().unwrap();
    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
}

#[cfg(not(target_os = "linux"))]
#[test]
fn hardening_is_a_no_op_elsewhere() {
    keyscope_custody::harden_process().unwrap();
}
