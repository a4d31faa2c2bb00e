//! CPU time and resident memory of a process, read from `/proc` (Linux), so a run reports
//! what the servers (and the load generator itself) spent during its phases.

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/PID/stat` times. Linux reports them in USER_HZ, which is
/// 100 on every architecture the kernel exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of one process.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// User plus system CPU time so far, in seconds.
    pub cpu_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

/// Read `pid`'s CPU time and RSS; `None` if it is gone or `/proc` is not Linux's.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields from
    // the last ')'. After it come field 3 (state) onwards; utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Sample {
        cpu_s: (utime + stime) as f64 / TICKS_PER_SECOND,
        rss_kib,
    })
}

/// The whole machine's CPU time so far, from the first line of `/proc/stat`, in seconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct MachineSample {
    /// Time not idle (nor waiting for I/O), summed over all cores.
    pub busy_s: f64,
    /// All time, summed over all cores.
    pub total_s: f64,
}

pub fn machine() -> Option<MachineSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some(MachineSample {
        busy_s: (total - idle) as f64 / TICKS_PER_SECOND,
        total_s: total as f64 / TICKS_PER_SECOND,
    })
}

/// The machine read at the edges of the status window.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct MachineUsage {
    pub window_start: Option<MachineSample>,
    pub window_end: Option<MachineSample>,
}

impl MachineUsage {
    /// CPU seconds the whole machine spent in the window.
    pub fn window_busy_s(&self) -> Option<f64> {
        Some(self.window_end?.busy_s - self.window_start?.busy_s)
    }
}

/// A process read at the boundaries of a run's phases.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Usage {
    pub pid: u32,
    /// Before any client connected.
    pub before: Option<Sample>,
    /// When every client had connected (or given up).
    pub connected: Option<Sample>,
    /// When statuses started to flow.
    pub window_start: Option<Sample>,
    /// When the last status of the window was sent.
    pub window_end: Option<Sample>,
}

impl Usage {
    pub fn new(pid: u32) -> Self {
        Usage {
            pid,
            ..Usage::default()
        }
    }

    /// CPU seconds spent while statuses flowed.
    pub fn window_cpu_s(&self) -> Option<f64> {
        Some(self.window_end?.cpu_s - self.window_start?.cpu_s)
    }

    /// CPU seconds spent while clients connected.
    pub fn connect_cpu_s(&self) -> Option<f64> {
        Some(self.connected?.cpu_s - self.before?.cpu_s)
    }

    /// Memory the connections added, KiB.
    pub fn connected_rss_growth_kib(&self) -> Option<i64> {
        Some(self.connected?.rss_kib as i64 - self.before?.rss_kib as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).expect("a Linux /proc");
        assert!(s.rss_kib > 0);
        assert!(s.cpu_s >= 0.0);
        let m = machine().expect("a Linux /proc/stat");
        assert!(m.total_s >= m.busy_s);
    }
}
