//! What the lab reads from `/proc` (Linux), std only: no `libc`, since the
//! workspace forbids `unsafe` and the numbers are all in text files.

use std::sync::OnceLock;

/// `AT_PAGESZ` in the ELF auxiliary vector (`<elf.h>`).
const AT_PAGESZ: u64 = 6;
/// `AT_CLKTCK`: the unit of the CPU times in `/proc/PID/stat`.
const AT_CLKTCK: u64 = 17;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), from `/proc/self/auxv`;
/// 100, Linux's value on every common platform, if that cannot be read.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|auxv| auxv_value(&auxv, AT_CLKTCK))
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// The system page size in bytes, read once from `/proc/self/auxv` (where
/// the kernel hands it to every process); 4096 if that cannot be read.
pub fn page_size() -> u64 {
    static PAGE_SIZE: OnceLock<u64> = OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|auxv| auxv_value(&auxv, AT_PAGESZ))
            .unwrap_or(4096)
    })
}

/// Looks up `key` in a native-endian auxiliary vector of word-sized pairs.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    let word = std::mem::size_of::<usize>();
    let read = |b: &[u8]| -> u64 {
        if word == 8 {
            u64::from_ne_bytes(b.try_into().unwrap_or_default())
        } else {
            u64::from(u32::from_ne_bytes(b.try_into().unwrap_or_default()))
        }
    };
    auxv.chunks_exact(2 * word)
        .map(|pair| (read(&pair[..word]), read(&pair[word..])))
        .find(|&(k, _)| k == key)
        .map(|(_, v)| v)
}

/// This process's resident set size in bytes: `/proc/self/statm`'s second
/// field (resident pages) times the page size; 0 if it cannot be read.
pub fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page_size())
}

/// Resident set size in bytes of process `pid`, from `/proc/PID/statm`.
pub fn resident_memory_bytes_of(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(pages * page_size())
}

/// User-mode CPU time of process `pid` in clock ticks (`utime`, field 14 of
/// `/proc/PID/stat`). The command name (field 2) may contain spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn user_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts at field 3 (state); utime is field 14.
    after_comm.split_whitespace().nth(14 - 3)?.parse().ok()
}

/// User plus system CPU time of process `pid` in clock ticks (`utime +
/// stime`, fields 14 and 15 of `/proc/PID/stat`).
pub fn cpu_ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// This process's user and system CPU time in seconds (`utime + stime`).
pub fn cpu_seconds() -> f64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after_comm = stat[stat.rfind(')')? + 1..].to_string();
            let mut fields = after_comm.split_whitespace().skip(14 - 3);
            let utime: u64 = fields.next()?.parse().ok()?;
            let stime: u64 = fields.next()?.parse().ok()?;
            Some(utime + stime)
        });
    ticks.map_or(0.0, |t| t as f64 / clock_ticks_per_second() as f64)
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Seconds since the Unix epoch, to the millisecond (`stdx::SystemClock`).
pub fn unix_time_secs() -> f64 {
    stdx::Clock::now_ms(&stdx::SystemClock) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_a_power_of_two() {
        let p = page_size();
        assert!(p >= 4096 && p.is_power_of_two(), "{p}");
    }

    #[test]
    fn auxv_lookup_finds_the_key() {
        let mut auxv = Vec::new();
        for (k, v) in [(3u64, 64u64), (AT_PAGESZ, 16384), (0, 0)] {
            if std::mem::size_of::<usize>() == 8 {
                auxv.extend_from_slice(&k.to_ne_bytes());
                auxv.extend_from_slice(&v.to_ne_bytes());
            } else {
                auxv.extend_from_slice(&(k as u32).to_ne_bytes());
                auxv.extend_from_slice(&(v as u32).to_ne_bytes());
            }
        }
        assert_eq!(auxv_value(&auxv, AT_PAGESZ), Some(16384));
        assert_eq!(auxv_value(&auxv, 99), None);
    }

    #[test]
    fn own_process_figures_are_plausible() {
        let rss = resident_memory_bytes();
        assert!(rss > 100 * 1024, "{rss}");
        assert!(resident_memory_bytes_of(std::process::id()).is_some());
        assert!(user_cpu_ticks(std::process::id()).is_some());
        assert!(cpu_ticks_of(std::process::id()) >= user_cpu_ticks(std::process::id()));
        assert!(is_running(std::process::id()));
        assert!(clock_ticks_per_second() >= 100);
        assert!(cpu_seconds() >= 0.0);
        assert!(unix_time_secs() > 1.6e9);
    }
}
