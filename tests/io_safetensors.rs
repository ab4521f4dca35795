//! tests/io_safetensors.rs — the safetensors container: round trips of every float dtype and I8
//! through the writer and the memory-mapped reader, files written by the reference Python
//! library, and the refusal of every malformed header with an error that names the problem.

use std::collections::BTreeMap;
use std::path::PathBuf;

use half::{bf16, f16};
use int8rt::io::safetensors::{self, parse_header, Dtype, SafeTensors, TensorBuf, TensorSpec};
use int8rt::Error;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("int8rt-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Build a safetensors buffer from a raw header string and a data section.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn round_trip_every_float_dtype_and_i8_through_mmap() {
    let dir = TempDir::new("st-rt");
    let path = dir.0.join("t.safetensors");
    let xs: Vec<f32> = vec![0.0, -0.0, 1.5, -2.25, 65504.0, 1e-3, 2.7182817e-5, -7.0e-8];
    let mut tensors = BTreeMap::new();
    tensors.insert(
        "a.f32".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![2, 4], &xs).unwrap(),
    );
    tensors.insert(
        "b.f16".to_string(),
        TensorBuf::from_f32(Dtype::F16, vec![8], &xs).unwrap(),
    );
    tensors.insert(
        "c.bf16".to_string(),
        TensorBuf::from_f32(Dtype::BF16, vec![4, 2], &xs).unwrap(),
    );
    tensors.insert(
        "d.i8".to_string(),
        TensorBuf::from_i8(vec![3], &[-128, 0, 127]),
    );
    tensors.insert(
        "e.scalar".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![], &[2.5]).unwrap(),
    );
    tensors.insert(
        "f.empty".to_string(),
        TensorBuf::from_f32(Dtype::F32, vec![0, 3], &[]).unwrap(),
    );
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::write(&path, &tensors, &meta).unwrap();

    let st = SafeTensors::open(&path).unwrap();
    assert_eq!(st.len(), 6);
    assert_eq!(st.metadata(), &meta);
    assert_eq!(
        st.header().data_start % 8,
        0,
        "the data section starts 8-byte aligned"
    );
    let a = st.tensor("a.f32").unwrap();
    assert_eq!(a.shape(), &[2, 4]);
    assert_eq!(a.to_f32().unwrap(), xs);
    let b = st.tensor("b.f16").unwrap().to_f32().unwrap();
    let want_b: Vec<f32> = xs.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    assert_eq!(b, want_b);
    let c = st.tensor("c.bf16").unwrap().to_f32().unwrap();
    let want_c: Vec<f32> = xs.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    assert_eq!(c, want_c);
    assert_eq!(
        st.tensor("d.i8").unwrap().to_i8().unwrap(),
        vec![-128, 0, 127]
    );
    assert_eq!(
        st.tensor("d.i8").unwrap().to_i64().unwrap(),
        vec![-128, 0, 127]
    );
    assert_eq!(st.tensor("e.scalar").unwrap().to_f32().unwrap(), vec![2.5]);
    assert_eq!(st.tensor("e.scalar").unwrap().numel(), 1);
    assert_eq!(
        st.tensor("f.empty").unwrap().to_f32().unwrap(),
        Vec::<f32>::new()
    );
    // Wrong-dtype reads are errors that name the tensor.
    match st.tensor("d.i8").unwrap().to_f32() {
        Err(Error::Tensor { tensor, .. }) => assert_eq!(tensor, "d.i8"),
        other => panic!("expected a tensor error, got {other:?}"),
    }
    match st.tensor("nope") {
        Err(Error::Tensor { tensor, .. }) => assert_eq!(tensor, "nope"),
        other => panic!("expected a tensor error, got {other:?}"),
    }
    // The bytes of an F32 tensor are viewed in place, not copied.
    let bytes = st.tensor("a.f32").unwrap().bytes();
    assert_eq!(bytes.len(), 32);
    assert_eq!(&bytes[8..12], &1.5f32.to_le_bytes());
}

#[test]
fn streaming_writer_refuses_a_wrong_byte_count_and_leaves_no_file() {
    let dir = TempDir::new("st-stream");
    let path = dir.0.join("t.safetensors");
    let specs = vec![TensorSpec {
        name: "w".into(),
        dtype: Dtype::F32,
        shape: vec![2, 2],
    }];
    let err = safetensors::write_streaming(&path, &specs, &BTreeMap::new(), |_| Ok(vec![0u8; 12]))
        .unwrap_err();
    match err {
        Error::Tensor { tensor, detail, .. } => {
            assert_eq!(tensor, "w");
            assert!(detail.contains("12 bytes"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "no partial file is left"
    );
}

#[test]
fn reads_a_file_written_by_the_reference_python_library() {
    // tests/data/ct-llmcompressor/model.safetensors was written by `safetensors.numpy.save_file`
    // (scripts/make-ct-fixture.py).
    let st = SafeTensors::open("tests/data/ct-llmcompressor/model.safetensors").unwrap();
    assert_eq!(st.metadata().get("format").map(String::as_str), Some("pt"));
    let w = st.tensor("lm_head.weight").unwrap();
    assert_eq!((w.dtype(), w.shape()), (Dtype::F16, &[8usize, 16][..]));
    assert_eq!(w.to_f32().unwrap().len(), 128);
    let q = st.tensor("model.layers.0.mlp.up_proj.weight").unwrap();
    assert_eq!((q.dtype(), q.shape()), (Dtype::I8, &[24usize, 16][..]));
}

fn expect_format_err(bytes: Vec<u8>, needle: &str) {
    match SafeTensors::from_bytes("bad.safetensors", bytes) {
        Err(Error::Format { file, detail }) => {
            assert_eq!(file, "bad.safetensors");
            assert!(detail.contains(needle), "`{detail}` lacks `{needle}`");
        }
        other => panic!("expected a format error with `{needle}`, got {other:?}"),
    }
}

fn expect_tensor_err(bytes: Vec<u8>, tensor: &str, needle: &str) {
    match SafeTensors::from_bytes("bad.safetensors", bytes) {
        Err(Error::Tensor {
            tensor: t, detail, ..
        }) => {
            assert_eq!(t, tensor, "{detail}");
            assert!(detail.contains(needle), "`{detail}` lacks `{needle}`");
        }
        other => panic!("expected a tensor error on `{tensor}` with `{needle}`, got {other:?}"),
    }
}

#[test]
fn malformed_headers_are_refused_with_errors_naming_the_problem() {
    expect_format_err(vec![], "too short");
    expect_format_err(vec![1, 0, 0], "too short");
    expect_format_err(u64::MAX.to_le_bytes().to_vec(), "exceeds the limit");
    expect_format_err(100u64.to_le_bytes().to_vec(), "runs past the end");
    expect_format_err(raw("[1, 2]", &[]), "does not start with");
    expect_format_err(raw("{\"a\": ", &[]), "not a JSON object");
    expect_format_err(raw("{\"__metadata__\": 3}", &[]), "__metadata__");
    expect_format_err(raw("{\"__metadata__\": {\"k\": 1}}", &[]), "not a string");
    expect_tensor_err(raw("{\"w\": 3}", &[]), "w", "not a JSON object");
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
        "w",
        "unknown dtype",
    );
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
        "w",
        "not a size",
    );
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
        "w",
        "not a size",
    );
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
        "w",
        "overflows",
    );
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
        "w",
        "overflows the byte count",
    );
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
        "w",
        "needs 8",
    );
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}"#,
            &[0; 4],
        ),
        "w",
        "backwards",
    );
    expect_tensor_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}"#,
            &[0; 4],
        ),
        "w",
        "two sizes",
    );
    expect_tensor_err(
        raw(r#"{"w": {"dtype": "F32", "shape": [1]}}"#, &[0; 4]),
        "w",
        "data_offsets",
    );
    // Offsets past the data section: reported as a size mismatch of the whole section.
    expect_format_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#,
            &[0; 2],
        ),
        "data section holds 2",
    );
    // Trailing bytes nobody owns.
    expect_format_err(
        raw(
            r#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#,
            &[0; 6],
        ),
        "data section holds 6",
    );
    // Overlap and gaps.
    expect_tensor_err(
        raw(
            r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
            &[0; 8],
        ),
        "b",
        "overlap",
    );
    expect_tensor_err(
        raw(
            r#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#,
            &[0; 12],
        ),
        "b",
        "gap",
    );
    // Deeply nested JSON is an error (serde_json's recursion limit), not a stack overflow.
    let deep = format!("{{\"a\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    expect_format_err(raw(&deep, &[]), "not a JSON object");
    // A path that is not a regular file: said so, not as the mapping's "No such device".
    let e = SafeTensors::open(std::env::temp_dir()).err().unwrap();
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::IsADirectory),
        "{e}"
    );
    #[cfg(unix)]
    {
        let e = SafeTensors::open("/dev/null").err().unwrap();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}

#[test]
fn a_valid_hand_written_header_parses_with_unaligned_data() {
    // A 3-byte header leaves the data unaligned; reads must still be exact.
    let mut data = Vec::new();
    data.extend_from_slice(&1.25f32.to_le_bytes());
    data.extend_from_slice(&(-3i64).to_le_bytes());
    let header = r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"I64","shape":[1],"data_offsets":[4,12]}}"#;
    let bytes = raw(header, &data);
    let h = parse_header("h", &bytes).unwrap();
    assert_eq!(h.tensors.len(), 2);
    let st = SafeTensors::from_bytes("h", bytes).unwrap();
    assert_eq!(st.tensor("x").unwrap().to_f32().unwrap(), vec![1.25]);
    assert_eq!(st.tensor("y").unwrap().to_i64().unwrap(), vec![-3]);
}

/// `Dtype::ALL` is generated with the enum (every variant once, in order); this pins the order
/// and that `parse` inverts `as_str` with distinct names, and refuses near misses.
#[test]
fn dtype_all_lists_every_dtype_once_and_parse_inverts_as_str() {
    for (i, d) in Dtype::ALL.iter().enumerate() {
        assert_eq!(*d as usize, i, "{d:?} out of declaration order");
        assert_eq!(Dtype::parse(d.as_str()), Some(*d));
    }
    assert_eq!(Dtype::ALL.len(), 15);
    assert_eq!(Dtype::parse("F32 "), None);
    assert_eq!(Dtype::parse("f32"), None);
    assert_eq!(Dtype::parse(""), None);
}

mod round_trip_props {
    //! Property: any set of tensors (any names — empty, unicode, quotes, backslashes, the
    //! reserved `__metadata__` —, every dtype, shapes with zero dimensions, data of the right or a
    //! wrong length) and any metadata either serialize and read back exactly, or are refused by
    //! the writer with a typed error. Nothing panics.
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z][a-z0-9_.]{0,12}",
            1 => Just(String::new()),
            1 => Just("__metadata__".to_string()),
            1 => "\\PC{0,6}",
            1 => Just("q\"u\\o\nte".to_string()),
        ]
    }

    fn tensor() -> impl Strategy<Value = TensorBuf> {
        (
            prop::sample::select(Dtype::ALL.to_vec()),
            prop::collection::vec(0usize..5, 0..4),
            prop_oneof![6 => Just(0i64), 1 => -2i64..3],
            any::<u8>(),
        )
            .prop_map(|(dtype, shape, off, fill)| {
                let n = shape.iter().product::<usize>() * dtype.size();
                let len = (n as i64 + off).max(0) as usize;
                let data = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
                TensorBuf { dtype, shape, data }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn tensors_round_trip_or_are_refused(
            tensors in prop::collection::btree_map(name(), tensor(), 0..5),
            metadata in prop::collection::btree_map(name(), "\\PC{0,8}", 0..3),
        ) {
            // The writer refuses exactly the sets with a reserved name or data of the wrong length.
            let invalid = tensors.contains_key("__metadata__")
                || tensors.values().any(|t| {
                    t.data.len() != t.shape.iter().product::<usize>() * t.dtype.size()
                });
            let bytes = match safetensors::to_bytes(&tensors, &metadata) {
                Ok(b) => b,
                Err(e) => {
                    prop_assert!(invalid, "refused a valid set: {e}");
                    return Ok(());
                }
            };
            prop_assert!(!invalid, "wrote an invalid set");
            let st = SafeTensors::from_bytes("props.safetensors", bytes)
                .map_err(|e| TestCaseError::fail(format!("written bytes do not read back: {e}")))?;
            prop_assert_eq!(st.len(), tensors.len());
            prop_assert_eq!(st.metadata(), &metadata);
            for (name, t) in &tensors {
                let v = st.tensor(name).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(v.dtype(), t.dtype);
                prop_assert_eq!(v.shape(), &t.shape[..]);
                prop_assert_eq!(v.bytes(), &t.data[..]);
            }
        }
    }
}
