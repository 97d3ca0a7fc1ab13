//! `Content-Encoding` of OTLP/HTTP bodies, decompressed with a hard bound.
//!
//! The bound is the point: a few kilobytes of gzip can inflate to gigabytes. Every decoder
//! reads through `Read::take(limit + 1)`, so at most `limit + 1` bytes are ever produced
//! and held; one byte over the limit is enough to answer 413.

use std::io::Read;

use bytes::Bytes;
use flate2::read::{MultiGzDecoder, ZlibDecoder};

use crate::error::CollectorError;

/// A supported `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentEncoding {
    Identity,
    Gzip,
    /// HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2), as Go's collector reads it.
    Deflate,
    Zstd,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header; absent means identity.
    ///
    /// # Errors
    /// [`CollectorError::UnsupportedContentEncoding`] for anything else, including stacked
    /// codings (`gzip, zstd`). It becomes 415 Unsupported Media Type: RFC 9110 §15.5.16
    /// names 415 for "a content coding the origin server does not support", it is what
    /// the client can act on (send identity or gzip), and it keeps 400 for bad data.
    pub(crate) fn from_header(value: Option<&[u8]>) -> Result<Self, CollectorError> {
        let Some(raw) = value else {
            return Ok(ContentEncoding::Identity);
        };
        let unsupported = || CollectorError::UnsupportedContentEncoding(String::from_utf8_lossy(raw).into_owned());
        let text = std::str::from_utf8(raw).map_err(|_| unsupported())?;
        // "identity" is a no-op in a list; anything left must be a single coding.
        let mut codings =
            text.split(',').map(str::trim).filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        let encoding = match codings.next() {
            None => ContentEncoding::Identity,
            Some(c) if c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip") => ContentEncoding::Gzip,
            Some(c) if c.eq_ignore_ascii_case("deflate") => ContentEncoding::Deflate,
            Some(c) if c.eq_ignore_ascii_case("zstd") => ContentEncoding::Zstd,
            Some(_) => return Err(unsupported()),
        };
        if codings.next().is_some() {
            return Err(unsupported());
        }
        Ok(encoding)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ContentEncoding::Identity => "identity",
            ContentEncoding::Gzip => "gzip",
            ContentEncoding::Deflate => "deflate",
            ContentEncoding::Zstd => "zstd",
        }
    }

    /// Decompresses `body`, producing at most `limit` bytes.
    ///
    /// # Errors
    /// [`CollectorError::PayloadTooLarge`] when the output would pass `limit` (the rest of
    /// the input is never inflated); [`CollectorError::Decompress`] when `body` is not
    /// valid in this encoding.
    pub(crate) fn decode(self, body: Bytes, limit: usize) -> Result<Bytes, CollectorError> {
        if self == ContentEncoding::Identity {
            return check_limit(body.len(), limit, false).map(|()| body);
        }
        if body.is_empty() {
            return Ok(body);
        }
        let bad = |e: std::io::Error| CollectorError::Decompress { encoding: self.as_str(), reason: e.to_string() };
        let input = &body[..];
        let out = match self {
            ContentEncoding::Identity => unreachable!("returned above"),
            ContentEncoding::Gzip => read_bounded(MultiGzDecoder::new(input), input.len(), limit),
            ContentEncoding::Deflate => read_bounded(ZlibDecoder::new(input), input.len(), limit),
            ContentEncoding::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(input).map_err(bad)?;
                decoder.window_log_max(zstd_window_log_max(limit)).map_err(bad)?;
                read_bounded(decoder, input.len(), limit)
            }
        }
        .map_err(bad)?;
        check_limit(out.len(), limit, true)?;
        Ok(Bytes::from(out))
    }
}

fn check_limit(len: usize, limit: usize, decompressed: bool) -> Result<(), CollectorError> {
    if len > limit {
        return Err(CollectorError::PayloadTooLarge { limit, decompressed });
    }
    Ok(())
}

/// Reads at most `limit + 1` bytes; the caller turns "more than `limit`" into 413.
fn read_bounded(reader: impl Read, input_len: usize, limit: usize) -> std::io::Result<Vec<u8>> {
    // OTLP protobuf typically compresses 4-10x; start there, never above the limit.
    let mut out = Vec::with_capacity(input_len.saturating_mul(4).min(limit.saturating_add(1)));
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    Ok(out)
}

/// zstd frames declare a window the decoder must allocate up front. Allow a window no
/// larger than needed for a body of `limit` bytes (and at least the 8 MiB of zstd's
/// default levels), so a forged header cannot make us reserve zstd's 128 MiB maximum.
fn zstd_window_log_max(limit: usize) -> u32 {
    let needed = usize::BITS - limit.saturating_sub(1).leading_zeros();
    needed.clamp(23, 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap().into()
    }

    #[test]
    fn header_parsing() {
        let parse = |v: &str| ContentEncoding::from_header(Some(v.as_bytes()));
        assert_eq!(ContentEncoding::from_header(None).unwrap(), ContentEncoding::Identity);
        assert_eq!(parse("identity").unwrap(), ContentEncoding::Identity);
        assert_eq!(parse("").unwrap(), ContentEncoding::Identity);
        assert_eq!(parse("GZIP").unwrap(), ContentEncoding::Gzip);
        assert_eq!(parse(" zstd ").unwrap(), ContentEncoding::Zstd);
        assert_eq!(parse("deflate").unwrap(), ContentEncoding::Deflate);
        assert_eq!(parse("gzip, identity").unwrap(), ContentEncoding::Gzip);
        assert!(matches!(parse("br"), Err(CollectorError::UnsupportedContentEncoding(v)) if v == "br"));
        assert!(parse("gzip, zstd").is_err());
        assert!(parse("snappy").is_err());
    }

    #[test]
    fn round_trips() {
        let data = b"otlp payload ".repeat(100);
        assert_eq!(ContentEncoding::Gzip.decode(gzip(&data), 1 << 20).unwrap(), data);
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(ContentEncoding::Zstd.decode(zstd.into(), 1 << 20).unwrap(), data);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&data).unwrap();
        assert_eq!(ContentEncoding::Deflate.decode(zlib.finish().unwrap().into(), 1 << 20).unwrap(), data);
        assert_eq!(ContentEncoding::Identity.decode(Bytes::from(data.clone()), 1 << 20).unwrap(), data);
    }

    #[test]
    fn concatenated_gzip_members_are_one_body() {
        let mut two = gzip(b"hello ").to_vec();
        two.extend_from_slice(&gzip(b"world"));
        assert_eq!(ContentEncoding::Gzip.decode(two.into(), 100).unwrap(), &b"hello world"[..]);
    }

    #[test]
    fn exactly_the_limit_passes_one_more_byte_fails() {
        let data = vec![7u8; 1000];
        assert_eq!(ContentEncoding::Gzip.decode(gzip(&data), 1000).unwrap().len(), 1000);
        let err = ContentEncoding::Gzip.decode(gzip(&[7u8; 1001]), 1000).unwrap_err();
        assert!(matches!(err, CollectorError::PayloadTooLarge { limit: 1000, decompressed: true }), "{err}");
        let err = ContentEncoding::Identity.decode(Bytes::from(vec![0u8; 1001]), 1000).unwrap_err();
        assert!(matches!(err, CollectorError::PayloadTooLarge { decompressed: false, .. }), "{err}");
    }

    /// 64 MiB of zeros gzip to ~64 KiB; with a 1 MiB limit the decoder must stop after
    /// 1 MiB + 1 byte instead of inflating the whole thing.
    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&chunk).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 128 * 1024, "bomb is {} bytes", bomb.len());
        let err = ContentEncoding::Gzip.decode(bomb.into(), 1 << 20).unwrap_err();
        assert!(matches!(err, CollectorError::PayloadTooLarge { limit: 1_048_576, decompressed: true }), "{err}");
    }

    #[test]
    fn zstd_bomb_is_refused_too() {
        let bomb = zstd::encode_all(&vec![0u8; 16 << 20][..], 3).unwrap();
        let err = ContentEncoding::Zstd.decode(bomb.into(), 1 << 20).unwrap_err();
        assert!(matches!(err, CollectorError::PayloadTooLarge { .. }), "{err}");
    }

    #[test]
    fn garbage_is_a_decompression_error() {
        for encoding in [ContentEncoding::Gzip, ContentEncoding::Deflate, ContentEncoding::Zstd] {
            let err = encoding.decode(Bytes::from_static(b"definitely not compressed"), 1000).unwrap_err();
            assert!(matches!(err, CollectorError::Decompress { .. }), "{encoding:?}: {err}");
        }
        let truncated = gzip(&[1u8; 5000]).slice(..20);
        assert!(matches!(ContentEncoding::Gzip.decode(truncated, 10_000), Err(CollectorError::Decompress { .. })));
    }

    #[test]
    fn zstd_window_follows_the_limit() {
        assert_eq!(zstd_window_log_max(20 * 1024 * 1024), 25);
        assert_eq!(zstd_window_log_max(1024), 23);
        assert_eq!(zstd_window_log_max(usize::MAX), 31);
    }
}
