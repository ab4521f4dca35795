// bench/probes/amx_peak.rs — the throw-away loop behind bench/RESULTS.md's AMX ceilings (one core:
// ~5.8 TOP/s register-only, 4.6–4.9 with tile loads from L1, 3.0–3.4 streaming from L2). Not part
// of the crate's build; kept so the figures can be re-measured: put it in a fresh cargo project as
// src/main.rs and run `cargo run --release` on a Linux machine with AMX-INT8. Modes: 0 = tdpbusd
// only, 1 = with tile loads from one 4 KiB block, 2 = 32 KiB, 3 = 256 KiB, 4 = 1 MiB working set.
use std::arch::asm;
#[repr(C, align(64))]
struct Cfg { p: u8, s: u8, r: [u8; 14], c: [u16; 16], rows: [u8; 16] }
#[repr(C, align(64))]
struct Buf([u8; 1<<20]);
fn main() {
    let ret: isize;
    unsafe { asm!("syscall", inlateout("rax") 158isize => ret, in("rdi") 0x1023usize, in("rsi") 18usize, lateout("rcx") _, lateout("r11") _); }
    assert_eq!(ret, 0);
    let mut c = [0u16; 16]; let mut rows = [0u8; 16];
    for t in 0..8 { c[t] = 64; rows[t] = 16; }
    let cfg = Cfg { p: 1, s: 0, r: [0; 14], c, rows };
    let buf = Box::new(Buf([1u8; 1<<20]));
    let p = buf.0.as_ptr();
    unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg) };
    for mode in 0..5 {
        let n = 2_000_000u64;
        let t = std::time::Instant::now();
        for i in 0..n {
            unsafe {
                match mode {
                0 => asm!("tdpbusd tmm0, tmm4, tmm6", "tdpbusd tmm1, tmm4, tmm7", "tdpbusd tmm2, tmm5, tmm6", "tdpbusd tmm3, tmm5, tmm7"),
                1 => asm!("tileloadd tmm4, [{a} + {s}*1]", "tileloadd tmm6, [{b} + {s}*1]", "tileloadd tmm7, [{b1} + {s}*1]",
                        "tdpbusd tmm0, tmm4, tmm6", "tdpbusd tmm1, tmm4, tmm7",
                        "tileloadd tmm5, [{a2} + {s}*1]",
                        "tdpbusd tmm2, tmm5, tmm6", "tdpbusd tmm3, tmm5, tmm7",
                        a = in(reg) p, a2 = in(reg) p.add(1024), b = in(reg) p.add(2048), b1 = in(reg) p.add(3072), s = in(reg) 64usize),
                2 => { let o = ((i as usize) % 8) * 4096; asm!("tileloadd tmm4, [{a} + {s}*1]", "tileloadd tmm6, [{b} + {s}*1]", "tileloadd tmm7, [{b1} + {s}*1]",
                        "tdpbusd tmm0, tmm4, tmm6", "tdpbusd tmm1, tmm4, tmm7",
                        "tileloadd tmm5, [{a2} + {s}*1]",
                        "tdpbusd tmm2, tmm5, tmm6", "tdpbusd tmm3, tmm5, tmm7",
                        a = in(reg) p.add(o), a2 = in(reg) p.add(o+1024), b = in(reg) p.add(o+2048), b1 = in(reg) p.add(o+3072), s = in(reg) 64usize) }
                _ => { let span = if mode == 3 { 64 } else { 256 }; let o = ((i as usize) % span) * 4096; asm!("tileloadd tmm4, [{a} + {s}*1]", "tileloadd tmm6, [{b} + {s}*1]", "tileloadd tmm7, [{b1} + {s}*1]",
                        "tdpbusd tmm0, tmm4, tmm6", "tdpbusd tmm1, tmm4, tmm7",
                        "tileloadd tmm5, [{a2} + {s}*1]",
                        "tdpbusd tmm2, tmm5, tmm6", "tdpbusd tmm3, tmm5, tmm7",
                        a = in(reg) p.add(o), a2 = in(reg) p.add(o+1024), b = in(reg) p.add(o+2048), b1 = in(reg) p.add(o+3072), s = in(reg) 64usize) }
                }
            }
        }
        let s = t.elapsed().as_secs_f64();
        let macs = n as f64 * 4.0 * 16384.0;
        println!("mode {mode}: {:.0} GOP/s, {:.1} ns per 4 tdpbusd", 2.0 * macs / s / 1e9, s / n as f64 * 1e9);
    }
}
