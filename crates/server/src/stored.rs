//! How the control plane's objects are encoded as store values: JSON, and
//! above [`COMPRESS_FROM`] bytes that JSON compressed with LZ4 behind a
//! marker byte. A task's JSON is about 1.3 KB, mostly ARNs that repeat
//! within it, so it compresses well (the ratio has not been measured on
//! real tasks); at a million tasks the SQLite writer and its checkpoints
//! spent a third of the CPU on the bytes.
//!
//! Plain JSON always begins with `{`, so values written before compression
//! (or below the threshold) still read back as they are.

use std::borrow::Cow;

/// The first byte of a compressed value; then the LZ4 block with its
/// uncompressed length in front (little-endian `u32`).
const LZ4: u8 = 0x01;

/// Smaller values are stored as plain JSON: compressing them saves little.
const COMPRESS_FROM: usize = 256;

/// A stored value never decompresses to more than this; a larger claimed
/// length means the value is damaged (and is not allocated).
const MAX_VALUE: usize = 64 << 20;

/// The stored form of an object's JSON.
pub fn encode(json: Vec<u8>) -> Vec<u8> {
    if json.len() < COMPRESS_FROM {
        return json;
    }
    let compressed = lz4_flex::compress_prepend_size(&json);
    let mut value = Vec::with_capacity(1 + compressed.len());
    value.push(LZ4);
    value.extend_from_slice(&compressed);
    value
}

/// An object's JSON from its stored form.
pub fn decode(value: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match value.split_first() {
        Some((&LZ4, block)) => {
            let claimed = block.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            match claimed {
                Some(n) if n <= MAX_VALUE => {}
                _ => return Err("compressed value has a damaged length".into()),
            }
            lz4_flex::decompress_size_prepended(block).map(Cow::Owned).map_err(|e| format!("compressed value is damaged: {e}"))
        }
        _ => Ok(Cow::Borrowed(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_are_compressed_and_read_back() {
        let arn = "arn:aws:ecs:us-east-1:111111111111:task/default/0192d3c4e5f6a7b8c9d0e1f2a3b4c5d6";
        let json = format!(r#"{{"taskArn":"{arn}","containers":[{{"taskArn":"{arn}"}}],"clusterArn":"{arn}"}}"#).into_bytes();
        let value = encode(json.clone());
        assert_eq!(value[0], LZ4);
        assert!(value.len() < json.len() * 2 / 3, "{} bytes from {}", value.len(), json.len());
        assert_eq!(decode(&value).unwrap().as_ref(), json.as_slice());
    }

    #[test]
    fn small_values_and_old_values_stay_json() {
        let json = br#"{"name":"web"}"#.to_vec();
        assert_eq!(encode(json.clone()), json);
        assert!(matches!(decode(&json).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        assert!(decode(&[LZ4]).is_err());
        assert!(decode(&[LZ4, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]).is_err());
        let mut value = encode(vec![b'x'; 1000]);
        value.truncate(value.len() / 2);
        assert!(decode(&value).is_err());
    }
}
