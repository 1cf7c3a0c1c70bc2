use connlife::{event::KernelEvent, loader::{Filter, Tracer}};
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let pids: Vec<u32> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let mut t = Tracer::load(&Filter { pids, comms: vec![] })?;
    println!("attached {:?} features {:?}", t.attached, t.features);
    let mut s = t.take_events()?;
    let mut out: Vec<Result<KernelEvent, _>> = Vec::new();
    loop { out.clear(); s.next_batch(&mut out).await?; for e in &out { println!("{}", serde_json::to_string(e.as_ref().unwrap()).unwrap()); } }
}
