//! The `--record FILE` file: the session's inputs as JSON lines, written so that recording can
//! never stop tracing, and read back by `connlife report FILE` so that a recording cut short
//! (disk full, connlife killed) still gives a report.
//!
//! Writing ([`RecordWriter`]):
//! - **Size cap with rotation.** When the next line would take FILE past `max_bytes`, FILE
//!   becomes FILE.1 (FILE.1 becomes FILE.2, ...; `keep` old files are kept, the oldest is
//!   removed) and a new FILE starts. Each new FILE begins with the session's `Start` input and
//!   the `Track` inputs seen so far (the --comm processes), so that a replay of it alone knows
//!   the session's pids and thresholds. The `Snapshot` is *not* copied: it can be tens of MB
//!   (one entry per open socket on the host), and by the time of a rotation it is stale: the
//!   connections it lists that closed since (their end is in an older file) would replay as
//!   still open and be reported as leaks. A replay of a rotated file therefore knows the
//!   connections that existed before the rotation only from their next event: it misses, it
//!   does not invent. Rotations of an earlier session's FILE (FILE.1 ..= FILE.keep) are removed
//!   when the recording starts, as FILE itself is truncated. Only regular files are capped and
//!   rotated; a pipe or a device (`/dev/stdout`) is written as it is.
//! - **Write errors** (ENOSPC, EIO, EDQUOT, a failed rotation...) are never returned: the
//!   recording stops, one line `connlife: recording stopped: <error> (tracing goes on)` goes to
//!   stderr, the reason is kept ([`RecordState::Stopped`]) and later writes are no-ops.
//!
//! Reading ([`RecordReader`]): `connlife report FILE` reads FILE, which is always the newest
//! part of a rotated recording. Empty lines are skipped; a last line that does not parse (cut
//! by a full disk or a kill) is skipped and reported by [`RecordReader::truncated_tail`]; a bad
//! line anywhere else is an error naming `FILE:LINE`.
use std::{
    collections::VecDeque,
    ffi::OsString,
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::model::session::Input;

/// How big the record may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLimits {
    /// Most bytes in FILE before it is rotated (`u64::MAX`: never).
    pub max_bytes: u64,
    /// Rotated files kept besides FILE (FILE.1 is the newest of them); 0 keeps none.
    pub keep: usize,
}

impl RecordLimits {
    pub const UNLIMITED: RecordLimits = RecordLimits {
        max_bytes: u64::MAX,
        keep: 0,
    };
}

/// Whether the recording goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordState {
    Recording,
    /// Stopped for good after an error; tracing goes on without it.
    Stopped {
        reason: String,
    },
}

/// Writes inputs as JSON lines to FILE, rotating it at the size cap; never fails the caller.
pub struct RecordWriter {
    path: PathBuf,
    limits: RecordLimits,
    /// Regular file: capped and rotated. Otherwise (pipe, device) written as it is.
    rotates: bool,
    out: Option<BufWriter<File>>,
    state: RecordState,
    /// Bytes in the current FILE (its header included).
    current: u64,
    /// Bytes written over the whole session, all files.
    total: u64,
    /// The session's `Start` line, first in every new file.
    start_line: Option<Vec<u8>>,
    /// `Track` lines, after `Start` in every new file; at most `max_bytes / 4` of them in all
    /// (the oldest are dropped) so that a file is mostly new inputs.
    track_lines: VecDeque<Vec<u8>>,
    track_bytes: u64,
    /// Reused serialization buffer.
    line: Vec<u8>,
    rotations: u64,
    warnings: u32,
}

impl RecordWriter {
    /// Create (truncate) FILE. This is the only error a caller sees: a path that cannot be
    /// created is a usage problem, known before tracing starts.
    pub fn create(path: impl AsRef<Path>, limits: RecordLimits) -> anyhow::Result<RecordWriter> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).with_context(|| format!("creating record file {}", path.display()))?;
        let rotates = file
            .metadata()
            .with_context(|| format!("record file {}", path.display()))?
            .file_type()
            .is_file();
        if rotates {
            for n in 1..=limits.keep {
                remove_if_present(&rotated(&path, n))
                    .with_context(|| format!("removing the old record file {}", rotated(&path, n).display()))?;
            }
        }
        Ok(RecordWriter {
            path,
            limits,
            rotates,
            out: Some(BufWriter::with_capacity(64 << 10, file)),
            state: RecordState::Recording,
            current: 0,
            total: 0,
            start_line: None,
            track_lines: VecDeque::new(),
            track_bytes: 0,
            line: Vec::with_capacity(4096),
            rotations: 0,
            warnings: 0,
        })
    }

    /// Append one input (buffered; see [`RecordWriter::flush`]). A no-op once stopped.
    pub fn write(&mut self, input: &Input) {
        if self.out.is_none() {
            return;
        }
        self.line.clear();
        if let Err(e) = serde_json::to_writer(&mut self.line, input) {
            self.stop(format!("encoding an input: {e}"));
            return;
        }
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        // The header is only needed (and only kept in memory) when the file can rotate.
        match input {
            _ if !self.rotates => {}
            Input::Start { .. } => self.start_line = Some(self.line.clone()),
            // Processes tracked and stacks symbolized: each new file needs them to be read alone.
            Input::Track { .. } | Input::Stack { .. } => {
                self.track_lines.push_back(self.line.clone());
                self.track_bytes += len;
                while self.track_bytes > self.limits.max_bytes / 4 {
                    let Some(old) = self.track_lines.pop_front() else { break };
                    self.track_bytes -= old.len() as u64;
                }
            }
            _ => {}
        }
        // Rotate only when the current file holds more than a header: a single line bigger
        // than the cap is written whole rather than rotated for ever.
        if self.rotates && self.current.saturating_add(len) > self.limits.max_bytes && self.current > self.header_len()
        {
            if let Err(reason) = self.rotate() {
                self.stop(reason);
                return;
            }
            if matches!(input, Input::Track { .. } | Input::Stack { .. }) {
                return; // already in the new file's header
            }
        }
        let line = std::mem::take(&mut self.line);
        self.put(&line);
        self.line = line;
    }

    /// Push buffered lines to the file: called once per batch, so a killed connlife leaves a
    /// record that is complete up to its last batch (and at most one cut line).
    pub fn flush(&mut self) {
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                self.stop(format!("writing {}: {e}", self.path.display()));
            }
        }
    }

    pub fn state(&self) -> RecordState {
        self.state.clone()
    }

    /// Bytes written over the whole session (all files, rotated ones included).
    pub fn bytes_written(&self) -> u64 {
        self.total
    }

    /// How many times FILE was rotated.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    fn header_len(&self) -> u64 {
        self.start_line.as_ref().map_or(0, |l| l.len() as u64) + self.track_bytes
    }

    fn put(&mut self, bytes: &[u8]) {
        let Some(out) = &mut self.out else { return };
        match out.write_all(bytes) {
            Ok(()) => {
                self.current += bytes.len() as u64;
                self.total += bytes.len() as u64;
            }
            Err(e) => self.stop(format!("writing {}: {e}", self.path.display())),
        }
    }

    /// FILE -> FILE.1 -> ... -> FILE.keep (removed past it), then a new FILE with the header.
    fn rotate(&mut self) -> Result<(), String> {
        let Some(mut out) = self.out.take() else {
            return Ok(());
        };
        let path = &self.path;
        out.flush().map_err(|e| format!("writing {}: {e}", path.display()))?;
        drop(out);
        let step = |r: std::io::Result<()>, what: &str, p: &Path| r.map_err(|e| format!("{what} {}: {e}", p.display()));
        if self.limits.keep == 0 {
            step(std::fs::remove_file(path), "removing", path)?;
        } else {
            let oldest = rotated(path, self.limits.keep);
            step(remove_if_present(&oldest), "removing", &oldest)?;
            for n in (1..self.limits.keep).rev() {
                let from = rotated(path, n);
                step(rename_if_present(&from, &rotated(path, n + 1)), "rotating", &from)?;
            }
            step(std::fs::rename(path, rotated(path, 1)), "rotating", path)?;
        }
        let file = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        self.out = Some(BufWriter::with_capacity(64 << 10, file));
        self.current = 0;
        self.rotations += 1;
        if let Some(start) = self.start_line.take() {
            self.put(&start);
            self.start_line = Some(start);
        }
        let tracks = std::mem::take(&mut self.track_lines);
        for t in &tracks {
            self.put(t);
        }
        self.track_lines = tracks;
        Ok(())
    }

    /// Stop for good: drop what is buffered without writing it again, say so once.
    fn stop(&mut self, reason: String) {
        if let Some(out) = self.out.take() {
            // into_parts: dropping a BufWriter would retry the write that just failed.
            let _ = out.into_parts();
        }
        if self.state == RecordState::Recording {
            crate::say!("connlife: recording stopped: {reason} (tracing goes on)");
            self.warnings += 1;
            self.state = RecordState::Stopped { reason };
        }
    }
}

/// FILE.n
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Reads a record back: an iterator of inputs. Stops after the first error. Reads FILE
/// ([`RecordReader::open`]) or any buffered reader ([`RecordReader::from_reader`]: tests, fuzzing).
pub struct RecordReader<R = BufReader<File>> {
    /// FILE, or the name given to the reader: errors say `NAME:LINE`.
    path: PathBuf,
    lines: R,
    /// Line number of the last line read.
    line_no: usize,
    truncated_tail: Option<usize>,
    done: bool,
}

impl RecordReader {
    pub fn open(path: impl AsRef<Path>) -> anyhow::Result<RecordReader> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).with_context(|| format!("cannot read record file {}", path.display()))?;
        Ok(RecordReader::from_reader(
            path,
            BufReader::with_capacity(64 << 10, file),
        ))
    }
}

impl<R: BufRead> RecordReader<R> {
    /// A record read from `lines`; `name` stands for it in errors.
    pub fn from_reader(name: impl AsRef<Path>, lines: R) -> RecordReader<R> {
        RecordReader {
            path: name.as_ref().to_path_buf(),
            lines,
            line_no: 0,
            truncated_tail: None,
            done: false,
        }
    }

    /// After the iteration: the line number of a last line that did not parse and was skipped
    /// (the recording was cut there).
    pub fn truncated_tail(&self) -> Option<usize> {
        self.truncated_tail
    }

    /// The next line that is not blank, with its number; `None` at the end.
    fn next_line(&mut self) -> anyhow::Result<Option<(usize, Vec<u8>)>> {
        loop {
            let mut buf = Vec::new();
            let n = self
                .lines
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {}", self.path.display()))?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            if !buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((self.line_no, buf)));
            }
        }
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = anyhow::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let (n, line) = match self.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        match serde_json::from_slice::<Input>(&line) {
            Ok(input) => Some(Ok(input)),
            Err(e) => {
                self.done = true;
                // The last line: cut by a full disk or a kill. Anything after it: corrupt.
                match self.next_line() {
                    Ok(None) => {
                        self.truncated_tail = Some(n);
                        None
                    }
                    Ok(Some(_)) => Some(Err(anyhow::anyhow!(
                        "{}:{n}: not a connlife record line ({e})",
                        self.path.display()
                    ))),
                    Err(e) => Some(Err(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh path in the temp dir, removed (with its rotations) when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> TempPath {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            TempPath(std::env::temp_dir().join(format!("connlife-{name}-{}-{n}.jsonl", std::process::id())))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            for n in 1..10 {
                let _ = std::fs::remove_file(rotated(&self.0, n));
            }
        }
    }

    fn start() -> Input {
        Input::Start {
            pids: vec![42],
            now_ns: 1,
            use_counting: true,
            close_wait_after_ns: 30_000_000_000,
            idle_after_ns: 60_000_000_000,
            ignore_local: Vec::new(),
            group_min: 3,
            max_conns: 0,
            postmortem_min_conns: None,
        }
    }

    fn tick(now_ns: u64) -> Input {
        Input::Tick { now_ns, fds: vec![] }
    }

    fn read_all(path: &Path) -> (Vec<Input>, Option<usize>) {
        let mut r = RecordReader::open(path).expect("open");
        let inputs = r.by_ref().collect::<anyhow::Result<Vec<_>>>().expect("read");
        (inputs, r.truncated_tail())
    }

    #[test]
    fn rotation_keeps_keep_files_and_each_starts_with_start() {
        let p = TempPath::new("rotate");
        let limits = RecordLimits {
            max_bytes: 400,
            keep: 2,
        };
        let mut w = RecordWriter::create(&p.0, limits).expect("create");
        w.write(&start());
        w.write(&Input::Track { pid: 7, now_ns: 2 });
        for t in 0..200 {
            w.write(&tick(1_000 + t));
            if t % 10 == 0 {
                w.flush();
            }
        }
        w.flush();
        assert_eq!(w.state(), RecordState::Recording);
        assert!(w.rotations() > 3, "{}", w.rotations());
        assert!(rotated(&p.0, 1).exists() && rotated(&p.0, 2).exists());
        assert!(!rotated(&p.0, 3).exists(), "keep = 2: the oldest is removed");
        let mut on_disk = 0;
        for path in [p.0.clone(), rotated(&p.0, 1), rotated(&p.0, 2)] {
            let len = std::fs::metadata(&path).expect("stat").len();
            on_disk += len;
            assert!(len <= 400, "{} is {len} bytes", path.display());
            let (inputs, tail) = read_all(&path);
            assert_eq!(tail, None);
            assert!(
                matches!(inputs[0], Input::Start { pids: ref p, .. } if p == &[42]),
                "{inputs:?}"
            );
            assert!(matches!(inputs[1], Input::Track { pid: 7, .. }), "{inputs:?}");
            assert!(matches!(inputs[2], Input::Tick { .. }), "{inputs:?}");
        }
        assert!(w.bytes_written() > on_disk);
        // The newest file ends with the newest input.
        let (inputs, _) = read_all(&p.0);
        assert!(
            matches!(inputs.last(), Some(Input::Tick { now_ns: 1_199, .. })),
            "{inputs:?}"
        );
    }

    #[test]
    fn keep_zero_keeps_only_the_newest_file() {
        let p = TempPath::new("keep0");
        let mut w = RecordWriter::create(
            &p.0,
            RecordLimits {
                max_bytes: 300,
                keep: 0,
            },
        )
        .expect("create");
        w.write(&start());
        for t in 0..50 {
            w.write(&tick(t));
        }
        w.flush();
        assert!(w.rotations() > 0);
        assert!(!rotated(&p.0, 1).exists());
        let (inputs, _) = read_all(&p.0);
        assert!(matches!(inputs[0], Input::Start { .. }));
    }

    #[test]
    fn a_line_bigger_than_the_cap_is_written_whole() {
        let p = TempPath::new("big");
        let mut w = RecordWriter::create(&p.0, RecordLimits { max_bytes: 10, keep: 1 }).expect("create");
        w.write(&start());
        w.write(&tick(5));
        w.write(&tick(6));
        w.flush();
        assert_eq!(w.state(), RecordState::Recording);
        let (inputs, _) = read_all(&p.0);
        assert!(
            matches!(inputs.as_slice(), [Input::Start { .. }, Input::Tick { now_ns: 6, .. }]),
            "{inputs:?}"
        );
    }

    #[test]
    fn old_rotations_of_an_earlier_session_are_removed() {
        let p = TempPath::new("stale");
        std::fs::write(rotated(&p.0, 1), "old\n").expect("write");
        let _w = RecordWriter::create(
            &p.0,
            RecordLimits {
                max_bytes: 1 << 20,
                keep: 1,
            },
        )
        .expect("create");
        assert!(!rotated(&p.0, 1).exists());
    }

    #[test]
    fn full_disk_stops_recording_once_without_error_or_panic() {
        let mut w = RecordWriter::create(
            "/dev/full",
            RecordLimits {
                max_bytes: 100,
                keep: 2,
            },
        )
        .expect("create /dev/full");
        w.write(&start());
        w.flush();
        let RecordState::Stopped { reason } = w.state() else {
            panic!("still recording into /dev/full");
        };
        assert!(
            reason.contains("/dev/full") && reason.contains("No space left"),
            "{reason}"
        );
        // A device is never rotated (renaming /dev/full would be a disaster), writes are no-ops.
        for t in 0..10_000 {
            w.write(&tick(t));
        }
        w.flush();
        assert_eq!(w.state(), RecordState::Stopped { reason });
        assert_eq!(w.warnings, 1);
        assert_eq!(w.rotations(), 0);
    }

    #[test]
    fn full_disk_stops_in_write_when_the_buffer_spills() {
        let mut w = RecordWriter::create("/dev/full", RecordLimits::UNLIMITED).expect("create /dev/full");
        for t in 0..10_000 {
            w.write(&tick(t));
        }
        assert!(matches!(w.state(), RecordState::Stopped { .. }));
        assert_eq!(w.warnings, 1);
    }

    #[test]
    fn cut_last_line_is_skipped_and_reported() {
        let p = TempPath::new("cut");
        let mut w = RecordWriter::create(&p.0, RecordLimits::UNLIMITED).expect("create");
        w.write(&start());
        w.write(&tick(5));
        w.flush();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p.0).expect("open");
        f.write_all(b"\n{\"input\":\"tick\",\"now_").expect("append");
        drop(f);
        let (inputs, tail) = read_all(&p.0);
        assert_eq!(inputs.len(), 2);
        assert_eq!(tail, Some(4), "line 3 is empty, line 4 is cut");
    }

    #[test]
    fn cut_inside_a_multibyte_character_is_a_cut_line() {
        let p = TempPath::new("utf8");
        let line = serde_json::to_vec(&start()).expect("json");
        let mut bytes = line.clone();
        bytes.extend_from_slice(b"\n{\"input\":\"track\",\"comm\":\"\xc3");
        std::fs::write(&p.0, bytes).expect("write");
        let (inputs, tail) = read_all(&p.0);
        assert_eq!(inputs.len(), 1);
        assert_eq!(tail, Some(2));
    }

    #[test]
    fn corrupt_middle_line_is_an_error_with_its_line_number() {
        let p = TempPath::new("corrupt");
        let start = serde_json::to_string(&start()).expect("json");
        let tick = serde_json::to_string(&tick(3)).expect("json");
        std::fs::write(&p.0, format!("{start}\n\n{{\"input\":\"tick\",\"now\n{tick}\n")).expect("write");
        let mut r = RecordReader::open(&p.0).expect("open");
        assert!(matches!(r.next(), Some(Ok(Input::Start { .. }))));
        let err = r.next().expect("an item").expect_err("line 3 is corrupt");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:3: not a connlife record line", p.0.display())),
            "{err}"
        );
        assert!(r.next().is_none(), "stops after an error");
        assert_eq!(r.truncated_tail(), None);
    }

    #[test]
    fn reads_from_any_buffered_reader() {
        let start = serde_json::to_string(&start()).expect("json");
        let bytes = format!("{start}\n\n{{\"input\":\"ti");
        let mut r = RecordReader::from_reader("<bytes>", bytes.as_bytes());
        let inputs = r.by_ref().collect::<anyhow::Result<Vec<_>>>().expect("read");
        assert!(matches!(inputs.as_slice(), [Input::Start { .. }]), "{inputs:?}");
        assert_eq!(r.truncated_tail(), Some(3));
        let mut r = RecordReader::from_reader("<bytes>", &b"{\n{}\n"[..]);
        let err = r.next().expect("an item").expect_err("line 1 is corrupt");
        assert!(
            err.to_string().starts_with("<bytes>:1: not a connlife record line"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_it() {
        let err = RecordReader::open("/nonexistent/record.jsonl").err().expect("an error");
        assert_eq!(err.to_string(), "cannot read record file /nonexistent/record.jsonl");
    }
}
