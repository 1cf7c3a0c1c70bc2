//! tracefs: find (or mount) it and read tracepoint `format` files, so the kernel programs read
//! each field at the offset this kernel uses instead of one compiled in.
use std::{collections::HashMap, fs, path::PathBuf};

use anyhow::{bail, Context as _};

/// One tracepoint's fields: name -> (offset, size).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Format {
    pub fields: HashMap<String, (u32, u32)>,
}

impl Format {
    pub fn offset(&self, name: &str) -> Option<u32> {
        self.fields.get(name).map(|&(off, _)| off)
    }
}

/// Parse a tracefs `format` file (pure). Lines look like
/// `\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;`.
pub fn parse_format(text: &str) -> anyhow::Result<Format> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';').map(str::trim) {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = Some(v.parse::<u32>().with_context(|| format!("bad offset in {line:?}"))?);
            } else if let Some(v) = part.strip_prefix("size:") {
                size = Some(v.parse::<u32>().with_context(|| format!("bad size in {line:?}"))?);
            } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            bail!("malformed field line {line:?}");
        };
        // The name is the last identifier, without any array suffix: `__u8 saddr[4]`.
        let name = decl
            .split_whitespace()
            .last()
            .map(|n| n.split('[').next().unwrap_or(n).trim_start_matches('*'))
            .unwrap_or_default();
        if name.is_empty() {
            bail!("no field name in {line:?}");
        }
        fields.insert(name.to_string(), (offset, size));
    }
    if fields.is_empty() {
        bail!("no fields found");
    }
    Ok(Format { fields })
}

/// The tracefs mount point, mounting it at /sys/kernel/tracing when nothing is mounted.
pub fn ensure_mounted() -> anyhow::Result<PathBuf> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let dir = PathBuf::from(dir);
        if dir.join("events").is_dir() {
            return Ok(dir);
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: mount(2) with NUL-terminated C strings that live through the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {err}");
    }
    Ok(PathBuf::from("/sys/kernel/tracing"))
}

/// Read and parse `events/<category>/<name>/format`; `Ok(None)` when the tracepoint is absent.
pub fn read_format(root: &std::path::Path, category: &str, name: &str) -> anyhow::Result<Option<Format>> {
    let path = root.join("events").join(category).join(name).join("format");
    match fs::read_to_string(&path) {
        Ok(text) => parse_format(&text)
            .map(Some)
            .with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "name: inet_sock_set_state\nID: 1460\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\n\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\nprint fmt: \"family=%s\"\n";

    #[test]
    fn parses_pointer_array_and_plain_fields() {
        let f = parse_format(STATE).unwrap();
        assert_eq!(f.fields["skaddr"], (8, 8));
        assert_eq!(f.fields["oldstate"], (16, 4));
        assert_eq!(f.fields["saddr_v6"], (40, 16));
        assert_eq!(f.offset("common_type"), Some(0));
        assert_eq!(f.offset("missing"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_format("hello").is_err());
        assert!(parse_format("\tfield:int x;\toffset:zz;\tsize:4;").is_err());
    }
}
