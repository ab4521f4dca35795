//! tests/io_fuzz_smoke.rs — the `load_checkpoint` fuzz target's body (fuzz/harness) on its seeds
//! and on deterministic mutations of them (bit flips, truncations, spliced bytes, edited header
//! lengths), so every `cargo test` exercises the malformed-input paths that `cargo fuzz` explores
//! at length. A panic here is a loader bug. The `.npy` parser gets the same treatment from its own
//! seeds.

#[path = "../fuzz/harness/load_checkpoint.rs"]
mod harness;

mod common;
use common::Rng;

fn seeds() -> Vec<Vec<u8>> {
    let dir = "fuzz/seeds/load_checkpoint";
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    assert!(v.len() >= 4, "seeds in {dir}");
    v
}

#[test]
fn seeds_load() {
    for s in seeds() {
        harness::check(&s);
    }
}

/// Flip 1 … `most` bits anywhere.
fn flip_bits(d: &mut [u8], rng: &mut Rng, most: i32) {
    for _ in 0..rng.int(1, most) {
        let p = rng.int(0, d.len() as i32 - 1) as usize;
        d[p] ^= 1 << rng.int(0, 7);
    }
}

/// Cut the bytes at a random length.
fn truncate(d: &mut Vec<u8>, rng: &mut Rng) {
    d.truncate(rng.int(0, d.len() as i32) as usize);
}

/// Overwrite one ASCII digit among the first `within` bytes with one of `with`.
fn swap_digit(d: &mut [u8], rng: &mut Rng, within: usize, with: &[u8]) {
    let digits: Vec<usize> = (0..within).filter(|&p| d[p].is_ascii_digit()).collect();
    if !digits.is_empty() {
        let p = digits[rng.int(0, digits.len() as i32 - 1) as usize];
        d[p] = with[rng.int(0, with.len() as i32 - 1) as usize];
    }
}

/// Replace the first occurrence of one of the `(from, to)` tokens, byte for byte.
fn swap_token(d: &mut Vec<u8>, rng: &mut Rng, swaps: &[(&str, &str)]) {
    let (a, b) = swaps[rng.int(0, swaps.len() as i32 - 1) as usize];
    if let Some(p) = d.windows(a.len()).position(|w| w == a.as_bytes()) {
        d.splice(p..p + a.len(), b.bytes());
    }
}

#[test]
fn mutated_seeds_never_panic() {
    let seeds = seeds();
    let mut rng = Rng::new(0x5eed);
    for i in 0..6000 {
        let mut d = seeds[i % seeds.len()].clone();
        let len = d.len();
        match rng.int(0, 6) {
            0 => flip_bits(&mut d, &mut rng, 8),
            1 => truncate(&mut d, &mut rng),
            // A digit inside the JSON parts (shapes, offsets, lengths, bits).
            2 => swap_digit(&mut d, &mut rng, len, b"0123456789-.e"),
            // Insert or delete a byte.
            3 => {
                let p = rng.int(0, len as i32 - 1) as usize;
                if rng.int(0, 1) == 0 {
                    d.insert(p, rng.int(0, 255) as u8);
                } else {
                    d.remove(p);
                }
            }
            // Edit the config length or the safetensors header length.
            4 => {
                let p = if rng.int(0, 1) == 0 {
                    0
                } else {
                    2 + u16::from_le_bytes([d[0], d[1]]) as usize
                };
                if p + 8 <= len {
                    let delta = rng.int(-16, 16) as i64;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&d[p..p + 8]);
                    let v = (u64::from_le_bytes(b) as i64).wrapping_add(delta) as u64;
                    d[p..p + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            // Swap a JSON token for another that the loader gives meaning to.
            5 => {
                let swaps = [
                    ("\"I8\"", "\"F32\""),
                    ("\"F16\"", "\"I8\""),
                    ("channel", "tensor"),
                    ("token", "tensor"),
                    ("true", "false"),
                    ("false", "true"),
                    ("[24,1]", "[24]"),
                    ("\"Linear\"", "\"re:(\""),
                    ("int-quantized", "pack-quantized"),
                    ("8", "4"),
                ];
                swap_token(&mut d, &mut rng, &swaps);
            }
            // Random bytes.
            _ => {
                d = (0..rng.int(0, 64)).map(|_| rng.int(0, 255) as u8).collect();
            }
        }
        harness::check(&d);
    }
}

/// `.npy` files the parser must take: version 1 from the crate's writer, and a version-2
/// header by hand for each other dtype.
fn npy_seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for shape in [vec![], vec![0], vec![3], vec![2, 3]] {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| i as f32 - 1.5).collect();
        v.push(int8rt::npy::to_bytes_f32(&shape, &data).unwrap());
    }
    for (descr, size) in [("<f8", 8), ("<i4", 4), ("<i8", 8)] {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}\n");
        let mut b = b"\x93NUMPY\x02\x00".to_vec();
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend((0..4 * size).map(|i| i as u8));
        v.push(b);
    }
    v
}

#[test]
fn npy_parse_survives_mutations() {
    use int8rt::npy::{parse, NpyData};
    let seeds = npy_seeds();
    for s in &seeds {
        parse(s, "seed.npy").expect("every seed parses");
    }
    let mut rng = Rng::new(0x6e70);
    for i in 0..6000 {
        let mut d = seeds[i % seeds.len()].clone();
        let len = d.len();
        match rng.int(0, 4) {
            0 => flip_bits(&mut d, &mut rng, 6),
            1 => truncate(&mut d, &mut rng),
            // A digit of the header (the shape, the version, the lengths).
            2 => swap_digit(&mut d, &mut rng, len.min(128), b"0123456789L-,)"),
            // A header token swapped for one the parser gives another meaning to.
            3 => {
                let swaps = [
                    ("<f4", "<f8"),
                    ("<f4", ">f4"),
                    ("<f8", "<i4"),
                    ("False", "True"),
                    ("False", "Nope"),
                    ("(2, 3)", "(99999999999999999999, 3)"),
                    ("(2, 3)", "(4294967296, 4294967296)"),
                    ("(2, 2)", "(2, 2, (1))"),
                    ("'shape'", "'shap'"),
                    ("}", ","),
                ];
                swap_token(&mut d, &mut rng, &swaps);
            }
            // The header length, moved by a little or a lot.
            _ => {
                if len >= 10 {
                    let v = u16::from_le_bytes([d[8], d[9]]);
                    let nv = v.wrapping_add(rng.int(-20, 20) as u16);
                    d[8..10].copy_from_slice(&nv.to_le_bytes());
                }
            }
        }
        if let Ok(a) = parse(&d, "mutated.npy") {
            let n = match &a.data {
                NpyData::F32(x) => x.len(),
                NpyData::F64(x) => x.len(),
                NpyData::I32(x) => x.len(),
                NpyData::I64(x) => x.len(),
            };
            assert_eq!(n, a.shape.iter().product::<usize>(), "{:?}", a.shape);
        }
    }
}
