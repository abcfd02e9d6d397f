//! Request bodies a client compressed: CloudWatch's SDKs gzip PutMetricData
//! bodies from 10 KiB on (`Content-Encoding: gzip`, the model's
//! `requestcompression`). Inflated with a bound, so a small body cannot
//! expand into unbounded memory.

use std::io::Read;

use axum::http::HeaderMap;
use bytes::Bytes;

/// The inflated body would be larger than the service takes.
pub struct TooLarge;

/// The body as the operation reads it: inflated if it is gzip-encoded (and
/// at most `limit` bytes once inflated), else as it is. A body that is not
/// valid gzip is left as it is, for the decoder to refuse.
pub fn inflate(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, TooLarge> {
    let gzip = headers
        .get_all("content-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body);
    }
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(&body[..]).take(limit as u64 + 1);
    match decoder.read_to_end(&mut out) {
        Ok(n) if n > limit => Err(TooLarge),
        Ok(_) => Ok(Bytes::from(out)),
        Err(_) => Ok(body),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn gzip_bodies_are_inflated_within_the_limit() {
        let mut headers = HeaderMap::new();
        headers.insert("content-encoding", "gzip".parse().unwrap());
        let data = b"Action=PutMetricData&Namespace=App".repeat(100);
        assert_eq!(
            inflate(&headers, gzip(&data), 1 << 20).ok().unwrap(),
            Bytes::from(data.clone())
        );
        // A zip bomb stops at the limit.
        assert!(inflate(&headers, gzip(&vec![b'a'; 10 << 20]), 1 << 20).is_err());
        // Not gzip at all: left for the decoder to refuse.
        assert_eq!(
            inflate(&headers, Bytes::from_static(b"plain"), 100)
                .ok()
                .unwrap(),
            Bytes::from_static(b"plain")
        );
        assert_eq!(
            inflate(&HeaderMap::new(), gzip(b"x"), 100).ok().unwrap(),
            gzip(b"x")
        );
    }
}
