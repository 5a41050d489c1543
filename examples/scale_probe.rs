use std::time::Instant;
fn main() {
    let text = std::fs::read_to_string(std::env::args().nth(1).unwrap()).unwrap();
    let t = Instant::now();
    let s = ntksweep::config::Sweep::parse(&text, "big.yaml", "big", &[]).unwrap();
    eprintln!("parse {} jobs: {:.2}s", s.jobs.len(), t.elapsed().as_secs_f64());
    let out = std::path::Path::new("/tmp/lj/probe_out");
    let t = Instant::now();
    ntksweep::run::write_plan(&s, out).unwrap();
    eprintln!("write_plan: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let st = ntksweep::run::scan(&s, out);
    eprintln!("scan: {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let pending = ntksweep::run::pending(&st, false);
    let b = ntksweep::schedule::plan_batches_resuming(&s.jobs, &pending, 8, Some(1e10), &[]);
    eprintln!("plan_batches: {:.2}s ({} batches)", t.elapsed().as_secs_f64(), b.len());
    let t = Instant::now();
    let steps: u64 = pending.iter().map(|&i| s.jobs[i].config.training.all_steps()).sum();
    eprintln!("steps: {:.2}s {steps}", t.elapsed().as_secs_f64());
}
