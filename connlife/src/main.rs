static OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connlife"));
fn main() {
    let mut ebpf = aya::Ebpf::load(OBJ).unwrap();
    for (name, _, _) in connlife_common::PROGRAMS { let p: &mut aya::programs::TracePoint = ebpf.program_mut(name).unwrap().try_into().unwrap(); println!("{name} ok {}", p.load().is_ok()); }
}
