//! Container processes as the agent records them: the process group it signals and the
//! `<pid> <start time>` record that lets a later run of the agent recognise (and kill)
//! a process an earlier run left, without mistaking a recycled pid for it. A leaf: it
//! uses no other module of the agent.

use std::path::Path;

/// Sends `sig` to the process group of `pid`.
pub fn signal_group(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: plain syscall; the group exists while we have not reaped its leader.
        unsafe { libc::kill(-pid, sig) };
    }
}

/// Start time (clock ticks since boot) of process `pid`, to recognise it after a restart.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Writes the record of process `pid` to `path` (best effort: a missing record only
/// means a crashed agent's next run cannot kill that process).
pub fn record(path: &Path, pid: u32) {
    let started = start_time(pid).unwrap_or(0);
    if let Err(err) = std::fs::write(path, format!("{pid} {started}")) {
        tracing::warn!(path = %path.display(), error = %err, "cannot record a container process");
    }
}

/// The pid in the record at `path` if that process still runs (same start time).
pub fn still_running(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let pid = parts.next()?.parse::<u32>().ok()?;
    let started = parts.next()?.parse::<u64>().ok()?;
    (start_time(pid) == Some(started)).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_recognises_its_process_and_not_a_stranger() {
        let dir = std::env::temp_dir().join(format!("mh-na-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.pid");
        record(&path, std::process::id());
        assert_eq!(still_running(&path), Some(std::process::id()));
        // Same pid, another start time: a recycled pid is not the recorded process.
        std::fs::write(&path, format!("{} 1", std::process::id())).unwrap();
        assert_eq!(still_running(&path), None);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(still_running(&path), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
