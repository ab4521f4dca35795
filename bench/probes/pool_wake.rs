// bench/probes/pool_wake.rs — the throw-away loop behind bench/RESULTS.md's two-thread M = 1
// paragraph (AMD EPYC Zen 3 VM, 2 vCPUs, 2026-11-27): streaming 16 MiB (a 1 × 4096² GEMV's int8
// weights) in 16 chunks on one thread, through a 2-worker rayon pool (`install` + `par_iter`, how
// the crate's CPU driver fans out; its workers sleep between calls), and by the caller plus one
// helper thread that spins between calls (how ONNX Runtime's pool waits by default). Prints the
// 10/50/90 % points of 2,000 calls. Not part of the crate's build: put it in a fresh cargo project
// (dependency `rayon = "1"`) as src/main.rs and run `RUSTFLAGS="-C target-cpu=native" cargo run
// --release`.
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

// XOR of one of 16 chunks of the buffer (a GEMV's weight stream, roughly: it runs at memory speed).
fn chunk_sum(b: &[u64], c: usize) -> i64 {
    let n = b.len() / 16;
    let mut x = [0u64; 8];
    for ch in b[c * n..(c + 1) * n].chunks_exact(8) {
        for i in 0..8 {
            x[i] ^= ch[i];
        }
    }
    x.iter().fold(0u64, |a, &v| a ^ v) as i64
}

fn main() {
    let buf: Arc<Vec<u64>> = Arc::new((0..2usize << 20).map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let report = |name: &str, mut ts: Vec<f64>| {
        ts.sort_by(|a, b| a.total_cmp(b));
        println!("{name:34} p10 {:6.0} p50 {:6.0} p90 {:6.0} us", ts[ts.len() / 10], ts[ts.len() / 2], ts[ts.len() * 9 / 10]);
    };
    // 1 thread
    let mut ts = vec![];
    for _ in 0..2000 {
        let s = Instant::now();
        let t: i64 = (0..16).map(|c| chunk_sum(&buf, c)).fold(0, |a, b| a ^ b);
        std::hint::black_box(t);
        ts.push(s.elapsed().as_secs_f64() * 1e6);
    }
    report("1 thread", ts);
    // rayon install + par_iter
    let mut ts = vec![];
    for _ in 0..2000 {
        let s = Instant::now();
        let t: i64 = pool.install(|| (0..16).into_par_iter().map(|c| chunk_sum(&buf, c)).reduce(|| 0, |a, b| a ^ b));
        std::hint::black_box(t);
        ts.push(s.elapsed().as_secs_f64() * 1e6);
    }
    report("rayon install (2 workers)", ts);
    // a spinning helper: polls `epoch`, takes chunks from `next` like the caller
    let epoch = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(16));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let h = {
        let (epoch, next, done, stop, buf) = (epoch.clone(), next.clone(), done.clone(), stop.clone(), buf.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(Ordering::Acquire) {
                let e = epoch.load(Ordering::Acquire);
                if e == seen { std::hint::spin_loop(); continue; }
                seen = e;
                let mut acc = 0;
                loop {
                    let c = next.fetch_add(1, Ordering::AcqRel);
                    if c >= 16 { break; }
                    acc ^= chunk_sum(&buf, c);
                }
                std::hint::black_box(acc);
                done.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    let mut ts = vec![];
    for _ in 0..2000 {
        let s = Instant::now();
        next.store(0, Ordering::Release);
        let d0 = done.load(Ordering::Acquire);
        epoch.fetch_add(1, Ordering::AcqRel);
        let mut acc = 0;
        loop {
            let c = next.fetch_add(1, Ordering::AcqRel);
            if c >= 16 { break; }
            acc ^= chunk_sum(&buf, c);
        }
        while done.load(Ordering::Acquire) == d0 { std::hint::spin_loop(); }
        std::hint::black_box(acc);
        ts.push(s.elapsed().as_secs_f64() * 1e6);
    }
    report("caller + 1 spinning helper", ts);
    stop.store(true, Ordering::Release);
    h.join().unwrap();
}
