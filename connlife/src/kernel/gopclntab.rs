//! Go's own function table (`.gopclntab`, Go 1.18+): the entry address and name of every
//! function, kept even in stripped binaries because the runtime needs it for tracebacks. With
//! it a stripped Go binary still gets the net/http uprobes (functions found by name) and named
//! frames (function by address). Pure: parsed from the ELF's bytes.
use object::{Object, ObjectSection, ObjectSegment};

/// `pcHeader.magic` of Go 1.18-1.19 and of Go 1.20+ (the function table is laid out alike).
const MAGIC_GO118: u32 = 0xffff_fff0;
const MAGIC_GO120: u32 = 0xffff_fff1;

/// The functions of one Go binary, sorted by entry address.
#[derive(Debug, Default)]
pub struct GoFunctions {
    /// (entry virtual address, name).
    functions: Vec<(u64, String)>,
    /// (file offset, virtual address, size) of each loaded segment, to map file offsets.
    segments: Vec<(u64, u64, u64)>,
}

impl GoFunctions {
    /// The table of an ELF file's bytes; `None` when it has no Go 1.18+ `.gopclntab`.
    pub fn parse(data: &[u8]) -> Option<GoFunctions> {
        let file = object::File::parse(data).ok()?;
        let section = file.section_by_name(".gopclntab")?;
        let table = section.data().ok()?;
        let text = file.section_by_name(".text").map(|s| s.address()).unwrap_or(0);
        let mut functions = parse_table(table, text, file.is_little_endian())?;
        functions.sort_unstable_by_key(|(entry, _)| *entry);
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect();
        Some(GoFunctions { functions, segments })
    }

    /// The entry address of the function named `name`.
    pub fn entry_of(&self, name: &str) -> Option<u64> {
        self.functions.iter().find(|(_, n)| n == name).map(|(entry, _)| *entry)
    }

    /// The function holding virtual address `addr`.
    pub fn function_at(&self, addr: u64) -> Option<&str> {
        let i = self.functions.partition_point(|(entry, _)| *entry <= addr);
        let (_, name) = self.functions.get(i.checked_sub(1)?)?;
        Some(name)
    }

    /// The function holding the byte at `offset` in the file (a frame's module offset).
    pub fn function_at_file_offset(&self, offset: u64) -> Option<&str> {
        let addr = self
            .segments
            .iter()
            .find(|&&(start, _, size)| offset >= start && offset - start < size)
            .map(|&(start, vaddr, _)| vaddr + (offset - start))?;
        self.function_at(addr)
    }

    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

/// The function table of a `.gopclntab` section (runtime/symtab.go, `pcHeader` and
/// `functab`): `text` stands in for `textStart` when the linker left it 0 (PIE).
fn parse_table(t: &[u8], text: u64, little: bool) -> Option<Vec<(u64, String)>> {
    let u32_at = |off: usize| -> Option<u32> {
        let b: [u8; 4] = t.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let magic = u32_at(0)?;
    if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
        return None;
    }
    let ptr_size = usize::from(*t.get(7)?);
    if ptr_size != 8 && ptr_size != 4 {
        return None;
    }
    let word = |i: usize| -> Option<u64> {
        let off = 8 + i * ptr_size;
        let b = t.get(off..off + ptr_size)?;
        let mut v = 0u64;
        for k in 0..ptr_size {
            let byte = if little { b[ptr_size - 1 - k] } else { b[k] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let nfunc = usize::try_from(word(0)?).ok()?;
    let text_start = match word(2)? {
        0 => text,
        t => t,
    };
    let funcname_offset = usize::try_from(word(3)?).ok()?;
    let pcln_offset = usize::try_from(word(7)?).ok()?;
    // Every function needs 8 bytes of functab: a corrupt count cannot make us allocate more.
    if nfunc > t.len() / 8 {
        return None;
    }
    let mut functions = Vec::with_capacity(nfunc);
    for i in 0..nfunc {
        let entry_off = u32_at(pcln_offset.checked_add(8 * i)?)?;
        let func_off = u32_at(pcln_offset.checked_add(8 * i + 4)?)? as usize;
        // _func: entryOff uint32, nameOff int32, ...
        let name_off = u32_at(pcln_offset.checked_add(func_off)?.checked_add(4)?)? as usize;
        let start = funcname_offset.checked_add(name_off)?;
        let name = t.get(start..)?;
        let end = name.iter().position(|&b| b == 0)?;
        let name = std::str::from_utf8(&name[..end]).ok()?;
        functions.push((text_start + u64::from(entry_off), name.to_string()));
    }
    Some(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic table: header, two functions, names.
    fn table(magic: u32, text_start: u64) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(magic.to_le_bytes());
        t.extend([0, 0, 1, 8]);
        let funcname_offset = 8 + 8 * 8;
        let names = b"main.a\0net/http.(*Transport).roundTrip\0";
        let pcln_offset = funcname_offset + names.len();
        for w in [2u64, 0, text_start, funcname_offset as u64, 0, 0, 0, pcln_offset as u64] {
            t.extend(w.to_le_bytes());
        }
        t.extend(names);
        // functab: 2 entries + the end marker, then the two _func records.
        let func0 = 3 * 8;
        let func1 = func0 + 8;
        for (entry, func) in [(0x10u32, func0 as u32), (0x80, func1 as u32), (0x100, 0)] {
            t.extend(entry.to_le_bytes());
            t.extend(func.to_le_bytes());
        }
        for (entry, name) in [(0x10u32, 0u32), (0x80, 7)] {
            t.extend(entry.to_le_bytes());
            t.extend(name.to_le_bytes());
        }
        t
    }

    #[test]
    fn names_functions_by_address_and_finds_entries_by_name() {
        for magic in [MAGIC_GO118, MAGIC_GO120] {
            let functions = parse_table(&table(magic, 0x40_1000), 0, true).unwrap();
            let g = GoFunctions {
                functions,
                segments: vec![(0, 0x40_0000, 0x10_0000)],
            };
            assert_eq!(g.entry_of("net/http.(*Transport).roundTrip"), Some(0x40_1080));
            assert_eq!(g.function_at(0x40_1010), Some("main.a"));
            assert_eq!(g.function_at(0x40_107f), Some("main.a"));
            assert_eq!(g.function_at(0x40_1090), Some("net/http.(*Transport).roundTrip"));
            assert_eq!(g.function_at(0x40_0fff), None, "before the first function");
            assert_eq!(g.function_at_file_offset(0x1010), Some("main.a"));
            assert_eq!(g.function_at_file_offset(0x20_0000), None, "in no segment");
        }
    }

    #[test]
    fn text_start_of_zero_falls_back_to_the_text_section() {
        let functions = parse_table(&table(MAGIC_GO118, 0), 0x45_0000, true).unwrap();
        assert_eq!(functions[0], (0x45_0010, "main.a".to_string()));
    }

    #[test]
    fn other_or_corrupt_tables_are_refused() {
        assert!(
            parse_table(&table(0xffff_fffa, 0), 0, true).is_none(),
            "Go 1.16/1.17 layout"
        );
        let mut t = table(MAGIC_GO118, 0);
        t[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_table(&t, 0, true).is_none(), "absurd function count");
        assert!(parse_table(&t[..20], 0, true).is_none(), "cut short");
        assert!(parse_table(&[], 0, true).is_none());
    }

    /// A real stripped Go binary: the functions the uprobes need are found without symbols.
    #[test]
    fn a_stripped_go_binary_keeps_its_function_names() {
        let Some(data) = crate::kernel::go_probes::build_test_go_client("stripped", &["-ldflags=-s -w"]) else {
            return;
        };
        let g = GoFunctions::parse(&data).expect("a .gopclntab");
        assert!(g.len() > 1000, "{} functions", g.len());
        let entry = g.entry_of("net/http.(*Transport).roundTrip").expect("roundTrip");
        assert_eq!(g.function_at(entry + 1), Some("net/http.(*Transport).roundTrip"));
        assert!(g.entry_of("main.main").is_some());
    }
}
