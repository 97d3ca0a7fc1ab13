//! Identity newtypes: trace and span ids as fixed-size bytes with hex display/parse.

use std::fmt;
use std::str::FromStr;

use crate::error::StoreError;

/// A W3C / OTLP trace id: 16 bytes. The all-zero id is invalid per the spec.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// A W3C / OTLP span id: 8 bytes. The all-zero id is invalid per the spec.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

macro_rules! id_impl {
    ($ty:ident, $len:expr, $what:expr) => {
        impl $ty {
            /// Length of the id in bytes.
            pub const LEN: usize = $len;

            /// Builds the id from raw bytes.
            ///
            /// # Errors
            /// `StoreError::InvalidId` when `bytes` is not exactly the id's length.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, StoreError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| {
                    StoreError::InvalidId(format!("{} must be {} bytes, got {}", $what, $len, bytes.len()))
                })?;
                Ok(Self(arr))
            }

            /// True for the all-zero id, which the OTLP spec calls invalid.
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|b| *b == 0)
            }

            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            /// Lowercase hex, as Jaeger and OTLP/JSON print it.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        /// Serialized as lowercase hex, as everywhere ids are shown.
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self.to_hex())
            }
        }

        impl FromStr for $ty {
            type Err = StoreError;

            /// Parses hex (either case). Shorter hex is left-padded with zeros, as
            /// Jaeger does for 64-bit trace ids.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.is_empty() || s.len() > $len * 2 {
                    return Err(StoreError::InvalidId(format!(
                        "{} must be 1 to {} hex digits, got {:?}",
                        $what,
                        $len * 2,
                        s
                    )));
                }
                let padded = format!("{:0>width$}", s, width = $len * 2);
                let bytes = hex::decode(&padded)
                    .map_err(|e| StoreError::InvalidId(format!("{} {:?} is not hex: {}", $what, s, e)))?;
                Self::from_slice(&bytes)
            }
        }
    };
}

id_impl!(TraceId, 16, "trace id");
id_impl!(SpanId, 8, "span id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_padding() {
        let id: TraceId = "5B8EFFF798038103D269B633813FC60C".parse().unwrap();
        assert_eq!(id.to_hex(), "5b8efff798038103d269b633813fc60c");
        let short: TraceId = "abc".parse().unwrap();
        assert_eq!(short.to_hex(), "00000000000000000000000000000abc");
        assert!("xyz".parse::<SpanId>().is_err());
        assert!("".parse::<SpanId>().is_err());
        assert!(SpanId::from_slice(&[1, 2, 3]).is_err());
        assert!(TraceId::default().is_zero());
    }
}
