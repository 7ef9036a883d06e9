//! Where this kernel keeps a process's command line, read from its own BTF
//! (`/sys/kernel/btf/vmlinux`). The exec probe copies a new program's argv out at the exec
//! itself; it needs the byte offsets of `task_struct.mm` and `mm_struct.arg_start`/`arg_end`,
//! which differ between kernel builds. C eBPF would get them from CO-RE relocations; Rust eBPF
//! has none, so userspace looks them up here and writes them into the object before loading
//! it. Only the struct and member records of the BTF type section are read (format:
//! <https://docs.kernel.org/bpf/btf.html>, "Type Encoding").

use spot_sim_common::ArgvOffsets;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// Kinds that only qualify or rename another type: followed to reach a member's struct.
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;
/// Anonymous structs nest a few levels at most (`mm_struct` puts its fields in one).
const MAX_NESTING: usize = 8;

/// The running kernel's BTF, read once at start for the argv offsets and the tracepoints
/// (5.5 MB here, about 3 ms a read).
pub(super) fn read() -> Result<Vec<u8>, String> {
    let path = "/sys/kernel/btf/vmlinux";
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// The offsets the exec probe reads argv with, from a BTF blob (the kernel's: [`read`]).
pub(super) fn argv_offsets_in(data: &[u8]) -> Result<ArgvOffsets, String> {
    let btf = Btf::parse(data)?;
    let task = btf.struct_named("task_struct")?;
    let mm = btf.struct_named("mm_struct")?;
    Ok(ArgvOffsets {
        task_mm: btf.member_offset(task, "mm", 0)?,
        mm_arg_start: btf.member_offset(mm, "arg_start", 0)?,
        mm_arg_end: btf.member_offset(mm, "arg_end", 0)?,
        _pad: 0,
    })
}

/// One type record: its kind, name, the id it refers to, and its members (structs and unions).
struct Type {
    kind: u32,
    name_off: u32,
    /// For the qualifier kinds: the type they qualify.
    refers_to: u32,
    /// Member records `(name_off, type, offset)`, where `offset` is already in bits.
    members: Vec<(u32, u32, u32)>,
}

struct Btf<'a> {
    /// By id; id 0 is `void`.
    types: Vec<Type>,
    strings: &'a [u8],
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "BTF cut short".to_string())
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or("BTF cut short")?;
        if magic != BTF_MAGIC {
            return Err("not little-endian BTF".into());
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off).ok_or("BTF section offset")?;
            data.get(start..start.checked_add(len).ok_or("BTF section length")?)
                .ok_or("BTF section out of bounds")
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut types = vec![Type {
            kind: 0,
            name_off: 0,
            refers_to: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < type_data.len() {
            let (ty, next) = Self::record(type_data, at)?;
            types.push(ty);
            at = next;
        }
        Ok(Btf { types, strings })
    }

    /// The type record at `at`, and where the next one starts.
    fn record(data: &[u8], at: usize) -> Result<(Type, usize), String> {
        let name_off = u32_at(data, at)?;
        let info = u32_at(data, at + 4)?;
        let size_or_type = u32_at(data, at + 8)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        let extra = at + 12;
        let mut members = Vec::new();
        let len = match kind {
            1 | 14 | 17 => 4, // int, var, decl_tag
            3 => 12,          // array
            KIND_STRUCT | KIND_UNION => {
                for i in 0..vlen {
                    let m = extra + 12 * i;
                    let offset = u32_at(data, m + 8)?;
                    // With kflag the top byte is a bitfield's size; the offset is below it.
                    let bits = if kflag { offset & 0x00ff_ffff } else { offset };
                    members.push((u32_at(data, m)?, u32_at(data, m + 4)?, bits));
                }
                12 * vlen
            }
            6 | 13 => 8 * vlen,        // enum, func_proto
            15 | 19 => 12 * vlen,      // datasec, enum64
            2 | 7..=12 | 16 | 18 => 0, // ptr, fwd, modifiers, func, float, type_tag
            k => return Err(format!("BTF kind {k} unknown here")),
        };
        let ty = Type {
            kind,
            name_off,
            refers_to: size_or_type,
            members,
        };
        Ok((ty, extra + len))
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The struct of that name that has members (not a forward declaration).
    fn struct_named(&self, name: &str) -> Result<&Type, String> {
        self.types
            .iter()
            .find(|t| {
                t.kind == KIND_STRUCT
                    && !t.members.is_empty()
                    && self.name(t.name_off) == name.as_bytes()
            })
            .ok_or_else(|| format!("the kernel's BTF has no struct {name}"))
    }

    /// The struct or union a member's type is, through typedefs and qualifiers.
    fn aggregate(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..MAX_NESTING {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_STRUCT | KIND_UNION => return Some(t),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.refers_to;
                }
                _ => return None,
            }
        }
        None
    }

    /// Byte offset of member `name` in `t`, looking inside its anonymous structs and unions.
    fn member_offset(&self, t: &Type, name: &str, depth: usize) -> Result<u32, String> {
        let missing = || format!("the kernel's BTF has no member {name} where expected");
        if depth > MAX_NESTING {
            return Err(missing());
        }
        for &(name_off, ty, bits) in &t.members {
            if self.name(name_off) == name.as_bytes() {
                if bits % 8 != 0 {
                    return Err(format!("{name} is a bitfield in the kernel's BTF"));
                }
                return Ok(bits / 8);
            }
            if name_off == 0 {
                if let Some(inner) = self.aggregate(ty) {
                    if let Ok(off) = self.member_offset(inner, name, depth + 1) {
                        return Ok(bits / 8 + off);
                    }
                }
            }
        }
        Err(missing())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: `strings` NUL-separated, `types` as encoded records.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&type_bytes);
        out.extend_from_slice(strings);
        out
    }

    fn info(kind: u32, vlen: u32, kflag: bool) -> u32 {
        (u32::from(kflag) << 31) | (kind << 24) | vlen
    }

    #[test]
    fn members_are_found_in_anonymous_structs_behind_typedefs_with_their_offsets_added() {
        // Strings: 0 "", 1 "task_struct", 13 "mm", 16 "mm_struct", 26 "arg_start", 36 "arg_end",
        // 44 "pad", 48 "anon_t".
        let strings = b"\0task_struct\0mm\0mm_struct\0arg_start\0arg_end\0pad\0anon_t\0";
        let types = [
            // [1] int (4 extra bytes)
            0,
            info(1, 0, false),
            8,
            64,
            // [2] ptr -> 4
            0,
            info(2, 0, false),
            4,
            // [3] struct task_struct { int pad @0; struct mm_struct *mm @ 1136 bytes }
            1,
            info(KIND_STRUCT, 2, false),
            1144,
            44,
            1,
            0,
            13,
            2,
            1136 * 8,
            // [4] struct mm_struct { (anon) typedef anon_t @ 64 bytes } with kflag offsets
            16,
            info(KIND_STRUCT, 1, true),
            1472,
            0,
            6,
            64 * 8,
            // [5] the anonymous struct { pad @0, arg_start @ 424, arg_end @ 432 }
            0,
            info(KIND_STRUCT, 3, true),
            1400,
            44,
            1,
            0,
            26,
            1,
            424 * 8,
            36,
            1,
            432 * 8,
            // [6] typedef anon_t -> const -> 5
            48,
            info(KIND_TYPEDEF, 0, false),
            7,
            // [7] const -> 5
            0,
            info(KIND_CONST, 0, false),
            5,
        ];
        let o = argv_offsets_in(&blob(&types, strings)).unwrap();
        assert_eq!(
            o,
            ArgvOffsets {
                task_mm: 1136,
                mm_arg_start: 488,
                mm_arg_end: 496,
                _pad: 0
            }
        );
    }

    #[test]
    fn a_kernel_without_the_member_or_with_broken_btf_says_so() {
        let strings = b"\0task_struct\0mm\0";
        let types = [1, info(KIND_STRUCT, 1, false), 8, 13, 0, 0];
        let e = argv_offsets_in(&blob(&types, strings)).unwrap_err();
        assert!(e.contains("no struct mm_struct"), "{e}");
        assert!(argv_offsets_in(b"\x9f\xeb").is_err());
        assert!(argv_offsets_in(&blob(&types, strings)[..30]).is_err());
        let unknown_kind = [1, info(30, 0, false), 0];
        assert!(argv_offsets_in(&blob(&unknown_kind, strings))
            .unwrap_err()
            .contains("kind 30"));
    }

    #[test]
    fn this_kernels_btf_has_the_command_line_offsets() {
        let Ok(data) = read() else {
            eprintln!("skipped: no /sys/kernel/btf/vmlinux");
            return;
        };
        let o = argv_offsets_in(&data).unwrap();
        assert!(o.known(), "{o:?}");
        // `unsigned long arg_start, arg_end` sit side by side in every kernel.
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8, "{o:?}");
        assert!(o.task_mm > 0 && o.task_mm.is_multiple_of(8), "{o:?}");
    }
}
