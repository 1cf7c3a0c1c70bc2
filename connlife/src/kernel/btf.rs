//! A small, pure (no I/O) reader of the kernel's BTF type information.
//!
//! Rust eBPF programs cannot emit CO-RE relocations, so they cannot ask the
//! loader to fix up field accesses such as `sk->__sk_common.skc_daddr` for the
//! running kernel. Instead userspace reads `/sys/kernel/btf/vmlinux`, hands the
//! bytes to [`Btf::parse`], asks [`Btf::member_offset`] / [`Btf::member_size`]
//! for the handful of fields the probes need, and passes those numbers to the
//! eBPF side, which reads `base + offset` with `bpf_probe_read_kernel`. aya's
//! `Btf` has no public member-offset API and btf-rs is LGPL, hence this parser.
//! It never panics on malformed input: every read is bounds-checked and every
//! walk through the type graph is depth- or budget-limited.

use std::collections::HashMap;

type Result<T, E = BtfError> = std::result::Result<T, E>;

const MAGIC: u16 = 0xeb9f;
const HDR_LEN: usize = 24;
/// Limit on typedef/modifier chains, array and anonymous-member nesting (cycles).
const MAX_DEPTH: u32 = 64;
/// Limit on members visited by one lookup through anonymous members.
const MAX_VISITS: u32 = 1 << 16;

// BTF_KIND_* from include/uapi/linux/btf.h.
const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("BTF truncated: {what} needs {need} bytes, only {have} available")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("bad BTF magic {0:#06x}")]
    BadMagic(u16),
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
    #[error("no struct or union named `{0}` in BTF")]
    NoSuchType(String),
    #[error("no typedef named `{0}` in BTF")]
    NoSuchTypedef(String),
    #[error("`{ty}` has no member `{member}`")]
    NoSuchMember { ty: String, member: String },
    #[error("`{ty}.{member}` is a bitfield and has no byte offset")]
    Bitfield { ty: String, member: String },
    #[error("`{0}` is not a struct or union")]
    NotAStruct(String),
    #[error("`{0}` has no size")]
    NoSize(String),
    #[error("malformed BTF: {0}")]
    Malformed(String),
}

fn malformed(msg: impl Into<String>) -> BtfError {
    BtfError::Malformed(msg.into())
}

fn truncated(what: &'static str, need: usize, have: usize) -> BtfError {
    BtfError::Truncated { what, need, have }
}

/// One entry of the type section. `aux` is kind-specific: INT [encoding, 0];
/// ARRAY [element type, element count]; STRUCT/UNION [first member index, count]; FUNC_PROTO
/// [first parameter index, count].
#[derive(Default, Clone, Copy)]
struct Ty {
    kind: u32,
    kflag: bool,
    name_off: u32,
    size_type: u32,
    aux: [u32; 2],
}

/// A struct/union member as stored in BTF: [name offset, type id, offset].
type Member = [u32; 3];

/// Parsed BTF: all types (index = type id, 0 = void), struct/union members, function
/// prototypes' parameter types, the string section and name -> id indexes of structs and
/// unions and of typedefs.
pub struct Btf {
    types: Vec<Ty>,
    members: Vec<Member>,
    params: Vec<u32>,
    strings: Vec<u8>,
    by_name: HashMap<String, u32>,
    typedefs: HashMap<String, u32>,
}

/// A function parameter's type, as far as a raw tracepoint program reading it cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgType {
    /// A pointer to the struct or union of that name ("" for anything else).
    Pointer(String),
    /// An integer (or enum) of that many bytes.
    Int(u32),
    Other,
}

/// A member found by [`Btf::find`]: (bit offset, member type id, is-bitfield).
type Found = (u64, u32, bool);

/// Reads `N` consecutive u32 words at byte offset `at` of `buf`.
fn words<const N: usize>(buf: &[u8], be: bool, at: usize, what: &'static str) -> Result<[u32; N]> {
    let need = at.saturating_add(4 * N);
    let b = buf.get(at..need).ok_or(truncated(what, need, buf.len()))?;
    let le = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    Ok(std::array::from_fn(|i| if be { le(i).swap_bytes() } else { le(i) }))
}

/// The NUL-terminated string at `off` in the string section.
fn cstr(strings: &[u8], off: u32) -> Result<&str> {
    let bad = || malformed(format!("bad string at offset {off}"));
    let s = strings.get(off as usize..).ok_or_else(bad)?;
    let end = s.iter().position(|&b| b == 0).ok_or_else(bad)?;
    std::str::from_utf8(&s[..end]).map_err(|_| bad())
}

impl Btf {
    /// Parses a raw BTF blob (as in `/sys/kernel/btf/vmlinux`), of either endianness.
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let have = data.len();
        let magic = data.first_chunk::<2>().ok_or(truncated("magic", 2, have))?;
        let be = match u16::from_le_bytes(*magic) {
            MAGIC => false,
            m if m == MAGIC.swap_bytes() => true,
            m => return Err(BtfError::BadMagic(m)),
        };
        let [hdr_len, type_off, type_len, str_off, str_len] = words(data, be, 4, "header")?.map(|w| w as usize);
        if hdr_len < HDR_LEN {
            return Err(malformed(format!("header length {hdr_len} < {HDR_LEN}")));
        }
        let section = |off: usize, len: usize, what| {
            let start = hdr_len.saturating_add(off);
            let need = start.saturating_add(len);
            data.get(start..need).ok_or(truncated(what, need, have))
        };
        let tsec = section(type_off, type_len, "type section")?;
        let strings = section(str_off, str_len, "string section")?;

        let mut types = Vec::with_capacity(tsec.len() / 16);
        types.push(Ty::default());
        let mut members = Vec::with_capacity(tsec.len() / 24);
        let mut params = Vec::new();
        let mut at = 0;
        while at < tsec.len() {
            let [name_off, info, size_type] = words(tsec, be, at, "type")?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            at += 12;
            let extra = match kind {
                INT | VAR | DECL_TAG => 4,
                ARRAY => 12,
                STRUCT | UNION | DATASEC | ENUM64 => 12 * vlen,
                ENUM | FUNC_PROTO => 8 * vlen,
                PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => 0,
                k => return Err(BtfError::UnknownKind(k)),
            };
            let (need, have) = (at + extra, tsec.len());
            if need > have {
                return Err(truncated("type data", need, have));
            }
            let aux = match kind {
                INT => [words::<1>(tsec, be, at, "int")?[0], 0],
                ARRAY => match words(tsec, be, at, "array")? {
                    [elem, _index, nelems] => [elem, nelems],
                },
                STRUCT | UNION => [members.len() as u32, vlen as u32],
                FUNC_PROTO => [params.len() as u32, vlen as u32],
                _ => [0, 0],
            };
            if kind == FUNC_PROTO {
                // Each parameter: [name offset, type id].
                for p in (at..need).step_by(8) {
                    params.push(words::<2>(tsec, be, p, "parameter")?[1]);
                }
            }
            if matches!(kind, STRUCT | UNION) {
                for m in (at..need).step_by(12) {
                    members.push(words(tsec, be, m, "member")?);
                }
            }
            let kflag = info >> 31 == 1;
            types.push(Ty {
                kind,
                kflag,
                name_off,
                size_type,
                aux,
            });
            at = need;
        }

        let mut by_name = HashMap::new();
        let mut typedefs = HashMap::new();
        for (id, ty) in types.iter().enumerate() {
            if ty.kind == TYPEDEF && ty.name_off != 0 {
                typedefs.insert(cstr(strings, ty.name_off)?.to_owned(), id as u32);
            }
            if !matches!(ty.kind, STRUCT | UNION) || ty.name_off == 0 {
                continue;
            }
            let name = cstr(strings, ty.name_off)?;
            // Names can repeat (e.g. empty duplicates); prefer the type with members.
            match by_name.get(name) {
                Some(&old) if types[old as usize].aux[1] > 0 || ty.aux[1] == 0 => {}
                _ => drop(by_name.insert(name.to_owned(), id as u32)),
            }
        }
        let strings = strings.to_vec();
        Ok(Btf {
            types,
            members,
            params,
            strings,
            by_name,
            typedefs,
        })
    }

    /// The arguments a raw tracepoint program of `tracepoint` gets, in order: the parameters of
    /// the kernel's `btf_trace_<tracepoint>` prototype after its leading `void *__data` (the
    /// tracepoint's `TP_PROTO`, which its `format` file does not show).
    pub fn raw_tracepoint_args(&self, tracepoint: &str) -> Result<Vec<ArgType>, BtfError> {
        let name = format!("btf_trace_{tracepoint}");
        let id = *self
            .typedefs
            .get(&name)
            .ok_or_else(|| BtfError::NoSuchTypedef(name.clone()))?;
        let ptr = self.ty(self.resolve(id)?)?;
        let proto = match ptr.kind {
            PTR => *self.ty(self.resolve(ptr.size_type)?)?,
            _ => return Err(malformed(format!("`{name}` is not a function pointer"))),
        };
        if proto.kind != FUNC_PROTO {
            return Err(malformed(format!("`{name}` is not a function pointer")));
        }
        let range = proto.aux[0] as usize..proto.aux[0] as usize + proto.aux[1] as usize;
        let params = self.params.get(range).ok_or_else(|| malformed("bad parameter range"))?;
        params.iter().skip(1).map(|&p| self.arg_type(p)).collect()
    }

    fn arg_type(&self, id: u32) -> Result<ArgType> {
        let t = self.ty(self.resolve(id)?)?;
        Ok(match t.kind {
            INT | ENUM | ENUM64 => ArgType::Int(t.size_type),
            PTR => {
                let target = self.ty(self.resolve(t.size_type)?)?;
                match target.kind {
                    STRUCT | UNION => ArgType::Pointer(cstr(&self.strings, target.name_off)?.to_owned()),
                    _ => ArgType::Pointer(String::new()),
                }
            }
            _ => ArgType::Other,
        })
    }

    /// True if a struct or union with this name exists.
    pub fn has_struct(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Size in bytes of the struct or union named `name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let id = *self
            .by_name
            .get(name)
            .ok_or_else(|| BtfError::NoSuchType(name.into()))?;
        self.size_of(id, 0)
    }

    /// Byte offset of `path` (member names, each following the previous member's
    /// type through typedef/const/volatile) inside the struct named `struct_name`.
    /// Members of anonymous nested structs/unions are found transparently at each
    /// step, with the anonymous member's offset added (e.g. path
    /// ["__sk_common", "skc_cookie"] in "sock", or ["skc_daddr"] in "sock_common"
    /// where it sits inside anonymous unions). A bitfield member is an error.
    pub fn member_offset(&self, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.walk(struct_name, path).map(|(off, _, _)| off)
    }

    /// Size in bytes of the member type at the end of `path` (resolving
    /// typedefs/modifiers; arrays = elem size * nelems; pointers = 8).
    pub fn member_size(&self, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let (_, id, name) = self.walk(struct_name, path)?;
        match self.size_of(id, 0) {
            Err(BtfError::NoSize(_)) => Err(BtfError::NoSize(name)),
            r => r,
        }
    }

    fn ty(&self, id: u32) -> Result<&Ty> {
        let bad = || malformed(format!("type id {id} out of range"));
        self.types.get(id as usize).ok_or_else(bad)
    }

    /// Follows typedef/volatile/const/restrict/type_tag to the underlying type.
    fn resolve(&self, mut id: u32) -> Result<u32> {
        for _ in 0..MAX_DEPTH {
            let t = self.ty(id)?;
            if !matches!(t.kind, TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG) {
                return Ok(id);
            }
            id = t.size_type;
        }
        Err(malformed("typedef/modifier chain too long"))
    }

    /// Resolves `path` to (byte offset, type id of the last member, dotted name).
    fn walk(&self, struct_name: &str, path: &[&str]) -> Result<(u32, u32, String)> {
        let no_type = || BtfError::NoSuchType(struct_name.into());
        let mut id = *self.by_name.get(struct_name).ok_or_else(no_type)?;
        let (mut bits, mut ty) = (0u64, struct_name.to_owned());
        for &member in path {
            let sid = self.resolve(id)?;
            if !matches!(self.ty(sid)?.kind, STRUCT | UNION) {
                return Err(BtfError::NotAStruct(ty));
            }
            let member = member.to_owned();
            let Some((off, mty, bitfield)) = self.find(sid, &member, 0, &mut 0)? else {
                return Err(BtfError::NoSuchMember { ty, member });
            };
            if bitfield {
                return Err(BtfError::Bitfield { ty, member });
            }
            (bits, id, ty) = (bits + off, mty, format!("{ty}.{member}"));
        }
        let off = u32::try_from(bits / 8).map_err(|_| malformed("offset overflows u32"))?;
        Ok((off, id, ty))
    }

    /// Finds `name` in struct/union `id`, descending into anonymous members.
    fn find(&self, id: u32, name: &str, depth: u32, visits: &mut u32) -> Result<Option<Found>> {
        let t = *self.ty(id)?;
        let range = t.aux[0] as usize..t.aux[0] as usize + t.aux[1] as usize;
        let bad = || malformed("bad member range");
        let members = self.members.get(range).ok_or_else(bad)?;
        for &[name_off, mty, offset] in members {
            *visits += 1;
            if depth > MAX_DEPTH || *visits > MAX_VISITS {
                return Err(malformed("anonymous members nested too deep"));
            }
            // With kind_flag, offset = bitfield_size << 24 | bit_offset.
            let (bits, bf_size) = match t.kflag {
                true => (offset & 0xff_ffff, offset >> 24),
                false => (offset, 0),
            };
            let mname = cstr(&self.strings, name_off)?;
            if mname.is_empty() {
                let inner = self.resolve(mty)?;
                if matches!(self.ty(inner)?.kind, STRUCT | UNION) {
                    if let Some((off, ty, bf)) = self.find(inner, name, depth + 1, visits)? {
                        return Ok(Some((u64::from(bits) + off, ty, bf)));
                    }
                }
            } else if mname == name {
                // Without kind_flag, a bitfield shows in the INT encoding (bit offset, width).
                let r = self.ty(self.resolve(mty)?)?;
                let (enc, bytes) = (r.aux[0], r.size_type);
                let int_bf = r.kind == INT && ((enc >> 16) & 0xff != 0 || enc & 0xff != bytes.wrapping_mul(8));
                let bitfield = bf_size != 0 || bits % 8 != 0 || (!t.kflag && int_bf);
                return Ok(Some((u64::from(bits), mty, bitfield)));
            }
        }
        Ok(None)
    }

    fn size_of(&self, id: u32, depth: u32) -> Result<u32> {
        if depth > MAX_DEPTH {
            return Err(malformed("arrays nested too deep"));
        }
        let t = self.ty(self.resolve(id)?)?;
        match t.kind {
            INT | STRUCT | UNION | ENUM | ENUM64 | FLOAT => Ok(t.size_type),
            PTR => Ok(8),
            ARRAY => (self.size_of(t.aux[0], depth + 1)?.checked_mul(t.aux[1]))
                .ok_or_else(|| malformed("array size overflows u32")),
            _ => Err(BtfError::NoSize(String::new())), // named by member_size
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob type by type; ids are handed out from 1 in order.
    #[derive(Default)]
    struct Builder {
        types: Vec<u32>,
        strs: Vec<u8>,
        next: u32,
    }

    impl Builder {
        /// Adds a string; offsets count the leading NUL that `build` prepends.
        fn s(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            self.strs.extend(s.as_bytes().iter().chain(&[0]));
            (self.strs.len() - s.len()) as u32
        }
        /// `info` = kind_flag << 31 | kind << 24 | vlen.
        fn ty(&mut self, name: &str, info: u32, size_type: u32, extra: &[u32]) -> u32 {
            let name = self.s(name);
            self.types.extend([name, info, size_type]);
            self.types.extend(extra);
            self.next += 1;
            self.next
        }
        fn comp(&mut self, name: &str, info: u32, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let mut extra = vec![];
            for &(n, t, o) in members {
                extra.extend([self.s(n), t, o]);
            }
            self.ty(name, info | members.len() as u32, size, &extra)
        }
        fn build(&self, be: bool) -> Vec<u8> {
            let w = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
            let magic = if be { [0xeb, 0x9f] } else { [0x9f, 0xeb] };
            let mut out = vec![magic[0], magic[1], 1, 0];
            let (tlen, slen) = (self.types.len() as u32 * 4, self.strs.len() as u32 + 1);
            for v in [24, 0, tlen, tlen, slen].iter().chain(&self.types) {
                out.extend(w(*v));
            }
            out.push(0);
            out.extend(&self.strs);
            out
        }
    }

    fn sample() -> Builder {
        let (st, un, kf) = (STRUCT << 24, UNION << 24, 1 << 31);
        let mut b = Builder::default();
        let int = b.ty("int", INT << 24, 4, &[32]); // 1
        let char_ = b.ty("char", INT << 24, 1, &[8]); // 2
        let u32_t = b.ty("u32_t", TYPEDEF << 24, int, &[]); // 3
        let c = b.ty("", CONST << 24, u32_t, &[]); // 4
        let v = b.ty("", VOLATILE << 24, c, &[]); // 5
        let cu32 = b.ty("cu32", TYPEDEF << 24, v, &[]); // 6
        let arr = b.ty("", ARRAY << 24, 0, &[char_, int, 8]); // 7
        let anon_u = b.comp("", un, 8, &[("a", int, 0), ("b", arr, 0)]); // 8
        let anon_s = b.comp("", st, 8, &[("x", int, 0), ("y", cu32, 32)]); // 9
        b.comp("inner", st, 0, &[]); // 10: empty duplicate before the real one
        let inner = b.comp("inner", st, 16, &[("", anon_u, 0), ("", anon_s, 64)]); // 11

        // Every other kind, so that a wrong trailing-data size derails later ids.
        let (a, z, arg) = (b.s("A"), b.s("Z"), b.s("arg"));
        b.ty("e", ENUM << 24 | 2, 4, &[a, 0, z, 1]); // 12
        let proto = b.ty("", FUNC_PROTO << 24 | 1, int, &[arg, int]); // 13
        b.ty("f", FUNC << 24, proto, &[]); // 14
        let var = b.ty("v", VAR << 24, int, &[1]); // 15
        b.ty(".data", DATASEC << 24 | 1, 4, &[var, 0, 4]); // 16
        b.ty("double", FLOAT << 24, 8, &[]); // 17
        b.ty("tag", DECL_TAG << 24, var, &[u32::MAX]); // 18
        let tagged = b.ty("user", TYPE_TAG << 24, int, &[]); // 19
        b.ty("e64", ENUM64 << 24 | 1, 8, &[z, 1, 0]); // 20
        let restrict = b.ty("", RESTRICT << 24, 23, &[]); // 21 -> 23
        b.ty("outer", FWD << 24, 0, &[]); // 22
        assert_eq!(b.ty("", PTR << 24, 24, &[]), 23);
        let m = [("flags", int, 3 << 24), ("tagged", tagged, 32)];
        let m = [m[0], m[1], ("in", 25, 64), ("p", restrict, 192)];
        assert_eq!(b.comp("outer", kf | st, 32, &m), 24);
        b.ty("inner_t", TYPEDEF << 24, inner, &[]); // 25
        let bf3 = b.ty("bf3", INT << 24, 4, &[3]); // 26
        let m = [("a", bf3, 0), ("b", int, 36), ("c", char_, 40), ("f", proto, 64)];
        b.comp("legacy", st, 8, &m); // 27: no kind_flag; a, b are bitfields
        b.comp("outer", st, 0, &[]); // 28: empty duplicate after the real one
                                     // A raw tracepoint's prototype: (void *__data, struct outer *, int, u32_t).
        let void_p = b.ty("", PTR << 24, 0, &[]); // 29
        let outer_p = b.ty("", PTR << 24, 24, &[]); // 30
        let d = b.s("__data");
        let tp = b.ty("", FUNC_PROTO << 24 | 4, 0, &[d, void_p, 0, outer_p, 0, int, 0, u32_t]); // 31
        let tp_p = b.ty("", PTR << 24, tp, &[]); // 32
        b.ty("btf_trace_demo", TYPEDEF << 24, tp_p, &[]); // 33
        b.ty("btf_trace_bad", TYPEDEF << 24, int, &[]); // 34
        b
    }

    fn split(path: &str) -> Vec<&str> {
        path.split('.').filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn offsets_sizes_and_errors() {
        for be in [false, true] {
            let btf = Btf::parse(&sample().build(be)).unwrap();
            for (s, path, off, size) in [
                ("outer", "", 0, 32),
                ("outer", "in", 8, 16),
                ("outer", "in.a", 8, 4),
                ("outer", "in.b", 8, 8),
                ("outer", "in.x", 16, 4),
                ("outer", "in.y", 20, 4),
                ("outer", "tagged", 4, 4),
                ("outer", "p", 24, 8),
                ("inner", "y", 12, 4),
                ("legacy", "c", 5, 1),
            ] {
                let p = split(path);
                let got = btf.member_offset(s, &p).unwrap();
                assert_eq!((got, btf.member_size(s, &p).unwrap()), (off, size), "{s}.{path}");
            }
            assert!(btf.has_struct("inner") && btf.has_struct("outer") && !btf.has_struct("e"));
            for (s, path, msg) in [
                ("outer", "flags", "`outer.flags` is a bitfield and has no byte offset"),
                ("legacy", "a", "`legacy.a` is a bitfield and has no byte offset"),
                ("legacy", "b", "`legacy.b` is a bitfield and has no byte offset"),
                ("outer", "in.a.z", "`outer.in.a` is not a struct or union"),
                ("outer", "in.zz", "`outer.in` has no member `zz`"),
                ("nope", "", "no struct or union named `nope` in BTF"),
            ] {
                let p = split(path);
                assert_eq!(btf.member_offset(s, &p).unwrap_err().to_string(), msg);
                assert_eq!(btf.member_size(s, &p).unwrap_err().to_string(), msg);
            }
            let err = btf.member_size("legacy", &["f"]).unwrap_err().to_string();
            assert_eq!(err, "`legacy.f` has no size");
            assert_eq!(
                btf.raw_tracepoint_args("demo").unwrap(),
                [ArgType::Pointer("outer".into()), ArgType::Int(4), ArgType::Int(4)]
            );
            let err = btf.raw_tracepoint_args("bad").unwrap_err().to_string();
            assert_eq!(err, "malformed BTF: `btf_trace_bad` is not a function pointer");
            let err = btf.raw_tracepoint_args("nope").unwrap_err().to_string();
            assert_eq!(err, "no typedef named `btf_trace_nope` in BTF");
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let blob = sample().build(false);
        for len in 0..blob.len() {
            let r = Btf::parse(&blob[..len]);
            assert!(matches!(r, Err(BtfError::Truncated { .. })), "len {len}");
        }
        let mut bad = blob.clone();
        bad[0] = 0;
        assert!(matches!(Btf::parse(&bad), Err(BtfError::BadMagic(0xeb00))));
        let mut b = Builder::default();
        b.ty("x", 20 << 24, 0, &[]);
        assert!(matches!(Btf::parse(&b.build(false)), Err(BtfError::UnknownKind(20))));
        // Random corruption must never panic or hang (cycles are depth/budget limited).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut m = blob.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = 24 + (seed >> 32) as usize % (m.len() - 24);
                m[i] = (seed >> 8) as u8 & if seed & 1 == 0 { 0xff } else { 0x1f };
            }
            if let Ok(btf) = Btf::parse(&m) {
                for p in ["in.y", "in.b", "p", "in.zz", "flags", ""] {
                    let _ = btf.member_offset("outer", &split(p));
                    let _ = btf.member_size("outer", &split(p));
                }
            }
        }
    }

    #[test]
    fn vmlinux() {
        let path = "/sys/kernel/btf/vmlinux";
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => return eprintln!("skipping vmlinux test: cannot read {path}: {e}"),
        };
        let start = std::time::Instant::now();
        let btf = Btf::parse(&data).unwrap();
        let (n, took) = (btf.types.len() - 1, start.elapsed());
        eprintln!("parsed {} bytes, {n} types in {took:?}", data.len());
        // "struct.path[=offset]"; the offset is given where it is stable across kernels.
        let fields = "sock_common.skc_daddr=0 sock_common.skc_rcv_saddr=4
            sock_common.skc_dport=12 sock_common.skc_num=14 sock_common.skc_family=16
            sock_common.skc_state=18 sock_common.skc_net sock_common.skc_cookie
            sock_common.skc_v6_daddr sock_common.skc_v6_rcv_saddr sock.sk_protocol
            sock.__sk_common.skc_family=16 sock.__sk_common.skc_cookie task_struct.files
            task_struct.exit_code files_struct.fdt fdtable.fd fdtable.max_fds file.f_op
            file.private_data file_operations.release socket.sk socket.type net.ns.inum";
        for spec in fields.split_whitespace() {
            let (spec, stable) = spec.split_once('=').map_or((spec, None), |(s, o)| (s, Some(o)));
            let (s, path) = spec.split_once('.').unwrap();
            let (off, size) = (btf.member_offset(s, &split(path)), btf.member_size(s, &split(path)));
            eprintln!("{spec}: offset {off:?} size {size:?}");
            assert!(off.is_ok() && size.is_ok(), "{spec}: {off:?} {size:?}");
            assert!(stable.is_none_or(|o| o.parse().ok() == off.ok()), "{spec}");
        }
        assert_eq!(btf.member_size("sock_common", &["skc_v6_daddr"]).unwrap(), 16);
        let sk = ArgType::Pointer("sock".into());
        let args = btf.raw_tracepoint_args("inet_sock_set_state").unwrap();
        assert_eq!(args, [sk.clone(), ArgType::Int(4), ArgType::Int(4)]);
        // 6.3+: (struct sock *sk, int ret, int flags), what the usage programs read.
        if let Ok(args) = btf.raw_tracepoint_args("sock_send_length") {
            assert_eq!(args, [sk, ArgType::Int(4), ArgType::Int(4)]);
        }
        // A kind_flag bitfield in current kernels (`u8 sk_gso_disabled : 1`), absent in old ones.
        let r = btf.member_offset("sock", &["sk_gso_disabled"]);
        assert!(matches!(
            r,
            Err(BtfError::Bitfield { .. } | BtfError::NoSuchMember { .. })
        ));
    }
}
