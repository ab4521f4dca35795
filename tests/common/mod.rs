//! tests/common — shared helpers for the integration tests: a seeded generator (no dependency, so
//! every run sees the same data), data by range class, and the path list the machine supports.

#![allow(dead_code)]

use int8rt::gemm::Path;

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi]` (inclusive).
    pub fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i32
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    /// Approximately normal (sum of four uniforms), mean 0, standard deviation `sd`.
    pub fn normal(&mut self, sd: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum::<f32>() - 2.0;
        s * sd * 1.732
    }
    pub fn i8s(&mut self, n: usize, lo: i32, hi: i32) -> Vec<i8> {
        (0..n).map(|_| self.int(lo, hi) as i8).collect()
    }
    pub fn u8s(&mut self, n: usize, lo: i32, hi: i32) -> Vec<u8> {
        (0..n).map(|_| self.int(lo, hi) as u8).collect()
    }
    pub fn f32s(&mut self, n: usize, sd: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(sd)).collect()
    }
}

/// Every CPU path this machine can run (the reference excluded). Under `INT8RT_REQUIRE_AVX2=1`
/// (set by CI) a missing AVX2 path is a failure, not a silent skip.
pub fn cpu_paths() -> Vec<Path> {
    let paths: Vec<Path> = int8rt::gemm::cpu::available_paths()
        .into_iter()
        .filter(|&p| p != Path::Reference)
        .collect();
    if std::env::var("INT8RT_REQUIRE_AVX2").as_deref() == Ok("1") {
        assert!(
            paths.contains(&Path::Avx2),
            "INT8RT_REQUIRE_AVX2=1 but the AVX2 path is not available: {:?}",
            Path::Avx2.cpu_availability()
        );
    }
    paths
}
