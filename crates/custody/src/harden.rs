//! Process hardening: no core dumps, no ptrace-style access by other processes of the user.

use crate::error::CustodyError;

/// Makes the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`) and sets its core-dump limit
/// to zero (`RLIMIT_CORE`, soft and hard). Call once at start, before any key is loaded.
///
/// Both are needed: with a piped `core_pattern` (systemd-coredump, apport) the kernel ignores
/// `RLIMIT_CORE`, while a non-dumpable process is not dumped at all (unless
/// `fs.suid_dumpable` is 2, which dumps as root only). Non-dumpable also makes
/// `/proc/<pid>/mem`, `environ` and friends root-owned and refuses `ptrace` attaches from
/// other processes of the same user. The hard limit of zero cannot be raised again without
/// `CAP_SYS_RESOURCE`. Child processes inherit the limit; `execve` resets dumpability.
///
/// On systems other than Linux this does nothing and returns `Ok(())`.
pub fn harden_process() -> Result<(), CustodyError> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, Resource, Rlimit};
        rustix::process::setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )
        .map_err(|e| CustodyError::Harden {
            step: "set RLIMIT_CORE to 0",
            source: e.into(),
        })?;
        rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(|e| {
            CustodyError::Harden {
                step: "make the process non-dumpable (PR_SET_DUMPABLE 0)",
                source: e.into(),
            }
        })?;
    }
    Ok(())
}
