//! The journal: every event is appended here (one JSON line, no fsync) by the
//! [`Recorder`](super::Recorder) before routing acknowledges the message that caused it, and
//! forgotten once the database (or the spool) has it. A process killed outright (kill -9, the
//! OOM killer, an abort) leaves its unwritten events in the journal; the next start of the
//! instance moves them to the spool, which replays them. The kernel keeps what a killed
//! process wrote, so only a crash of the machine itself can lose the last events, and the ids
//! make the replay idempotent.
//!
//! Each event gets a journal number. The file is emptied whenever every event in it is
//! settled; under a load that never lets that happen it is rotated past [`ROTATE_BYTES`], and
//! the older file is deleted once its events are all settled.

use std::{
    collections::BTreeSet,
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use super::RecordEvent;

/// Size past which a journal whose events are not all settled yet is rotated.
pub const ROTATE_BYTES: u64 = 4 << 20;

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    len: u64,
    /// The number of the next event.
    next: u64,
    /// Events appended and not yet settled.
    unsettled: BTreeSet<u64>,
    /// The first number in the current file, if there is a rotated file (`<path>.old`).
    rotated_at: Option<u64>,
    buf: Vec<u8>,
    failing: bool,
}

impl Journal {
    /// Open the journal at `path` and take what a previous run left in it (the rotated file
    /// first): the events it never settled, in order. The caller must make them safe (the
    /// spool) before [`clear`](Self::clear).
    pub fn open(path: &Path) -> io::Result<(Journal, Vec<RecordEvent>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut left = read_events(&old_path(path))?;
        left.extend(read_events(path)?);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            len,
            next: 0,
            unsettled: BTreeSet::new(),
            rotated_at: None,
            buf: Vec::with_capacity(512),
            failing: false,
        };
        Ok((journal, left))
    }

    /// Forget everything in the files: what they held is written or spooled.
    pub fn clear(&mut self) -> io::Result<()> {
        remove_if_present(&old_path(&self.path))?;
        self.file.set_len(0)?;
        self.len = 0;
        self.unsettled.clear();
        self.rotated_at = None;
        Ok(())
    }

    /// Append an event; its number, to [`settle`](Self::settle) it by. A disk that refuses
    /// is logged once per failing spell: the event still goes on, in memory only.
    pub fn append(&mut self, event: &RecordEvent) -> u64 {
        let n = self.next;
        self.next += 1;
        self.unsettled.insert(n);
        match self.write_line(event) {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    log::error!(
                        "journal {}: {e}; events are only in memory until it recovers",
                        self.path.display()
                    );
                }
                self.failing = true;
            }
        }
        n
    }

    fn write_line(&mut self, event: &RecordEvent) -> io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, event).map_err(io::Error::other)?;
        self.buf.push(b'\n');
        self.file.write_all(&self.buf)?;
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// These events are in the database, or in the spool.
    pub fn settle(&mut self, numbers: impl IntoIterator<Item = u64>) -> io::Result<()> {
        for n in numbers {
            self.unsettled.remove(&n);
        }
        let oldest = self.unsettled.first().copied();
        if let Some(rotated_at) = self.rotated_at {
            if oldest.is_none_or(|n| n >= rotated_at) {
                remove_if_present(&old_path(&self.path))?;
                self.rotated_at = None;
            }
        }
        if oldest.is_none() {
            if self.len > 0 {
                self.file.set_len(0)?;
                self.len = 0;
            }
        } else if self.len > ROTATE_BYTES && self.rotated_at.is_none() {
            std::fs::rename(&self.path, old_path(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.rotated_at = Some(self.next);
            self.len = 0;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the journal's files.
    pub fn bytes_on_disk(&self) -> u64 {
        let old = std::fs::metadata(old_path(&self.path)).map_or(0, |m| m.len());
        self.len + old
    }
}

/// Where the journal of the spool at `spool` lives: `<spool>.journal`.
pub fn beside(spool: &Path) -> PathBuf {
    suffixed(spool, ".journal")
}

fn old_path(path: &Path) -> PathBuf {
    suffixed(path, ".old")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The events of a journal file; a line torn by the kill is skipped.
fn read_events(path: &Path) -> io::Result<Vec<RecordEvent>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut events = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        match serde_json::from_str(&line) {
            Ok(e) => events.push(e),
            Err(e) => log::warn!(
                "skipping a torn line of the journal {}: {e}",
                path.display()
            ),
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ids::{AttemptId, AttemptKey, InstanceId, QuizId};
    use crate::records::{EventIds, EventKind};

    fn events(n: usize) -> Vec<RecordEvent> {
        let ids = EventIds::new(&InstanceId::new("i"));
        let key = AttemptKey {
            quiz: QuizId::new("q"),
            attempt: AttemptId::new("a"),
        };
        (0..n)
            .map(|i| ids.event(&key, None, EventKind::Away, serde_json::json!({}), i as u64))
            .collect()
    }

    fn temp_path() -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("invigil-journal-{:08x}", rand::random::<u32>()));
        let path = dir.join("spool.jsonl.journal");
        (dir, path)
    }

    #[test]
    fn a_killed_run_leaves_its_unsettled_events_and_a_clean_one_nothing() {
        let (dir, path) = temp_path();
        let events = events(5);
        let (mut journal, left) = Journal::open(&path).unwrap();
        assert!(left.is_empty());
        let numbers: Vec<u64> = events.iter().map(|e| journal.append(e)).collect();
        journal.settle(numbers[..2].iter().copied()).unwrap();
        // Killed here: the next run finds all five (the two written are skipped by id).
        drop(journal);
        let (mut journal, left) = Journal::open(&path).unwrap();
        assert_eq!(left, events);
        journal.clear().unwrap();
        let numbers: Vec<u64> = events.iter().map(|e| journal.append(e)).collect();
        // Settled out of order (a spooled event before older queued ones): emptied at the end.
        journal.settle([numbers[4]]).unwrap();
        assert!(journal.bytes_on_disk() > 0);
        journal.settle(numbers[..4].iter().copied()).unwrap();
        assert_eq!(
            journal.bytes_on_disk(),
            0,
            "nothing unsettled empties the file"
        );
        drop(journal);
        assert!(Journal::open(&path).unwrap().1.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_journal_never_settled_rotates_and_keeps_every_unsettled_event() {
        let (dir, path) = temp_path();
        let events = events(3);
        let (mut journal, _) = Journal::open(&path).unwrap();
        let first = journal.append(&events[0]);
        journal.append(&events[1]);
        journal.len = ROTATE_BYTES + 1; // as if the file had grown past the bound
        journal.settle([first]).unwrap(); // events[1] unsettled: rotated into `.old`
        assert!(old_path(&path).exists());
        journal.append(&events[2]);
        drop(journal);
        let (mut journal, left) = Journal::open(&path).unwrap();
        assert_eq!(left, events, "the rotated file first, then the current one");
        journal.clear().unwrap();

        // The rotated file goes once its events are settled, before the newer ones.
        let a = journal.append(&events[0]);
        journal.len = ROTATE_BYTES + 1;
        journal.settle([]).unwrap();
        assert!(old_path(&path).exists());
        let b = journal.append(&events[1]);
        journal.settle([a]).unwrap();
        assert!(!old_path(&path).exists());
        assert!(journal.bytes_on_disk() > 0);
        journal.settle([b]).unwrap();
        assert_eq!(journal.bytes_on_disk(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
