//! The store's start-up WAL replay over one file's bytes: frame scanning (magic, length,
//! crc, resynchronisation after damage, the legacy format), record decoding and the
//! conversion of each record into memtable rows.
//!
//! Two input modes (first byte even / odd):
//! - raw: the rest is the file, as found on disk;
//! - framed: the rest is a list of records `[tag][len][payload; len]` (signal = tag % 3,
//!   tag >= 0x80 gives a sequence number near u64::MAX), framed by the store's own encoder
//!   so payloads reach the decoder, then damaged by the last three bytes
//!   (`[op][position; 2]`: nothing, a flipped byte, a truncation, inserted garbage).
//!
//! Properties: replay never panics; the intact prefix is no longer than the file; a
//! second start-up on the truncated file replays the same records and truncates nothing
//! (truncation is stable); an undamaged framed file replays every record it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seismo_store::fuzzing::{encode_wal_frame, replay_wal_file};
use seismo_store::Signal;

fn framed(data: &[u8]) -> (Vec<u8>, Vec<u64>, bool) {
    let (records, damage) = data.split_at(data.len().saturating_sub(3));
    let mut file = Vec::new();
    let mut seqs = Vec::new();
    let mut rest = records;
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        let n = seqs.len() as u64 + 1;
        let seq = if tag & 0x80 != 0 { u64::MAX - 2 + n.min(2) } else { n };
        encode_wal_frame(&mut file, seq, Signal::ALL[usize::from(tag % 3)], payload);
        seqs.push(seq);
        rest = tail;
    }
    let damaged = match damage {
        [op, hi, lo] if !file.is_empty() => {
            let at = usize::from(u16::from_be_bytes([*hi, *lo])) % file.len();
            match op % 4 {
                1 => file[at] ^= 1 << (op / 4 % 8),
                2 => file.truncate(at),
                3 => {
                    file.splice(at..at, damage.iter().copied());
                }
                _ => return (file, seqs, false),
            }
            true
        }
        _ => false,
    };
    (file, seqs, damaged)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (file, expected) = if mode % 2 == 0 {
        (rest.to_vec(), None)
    } else {
        let (file, seqs, damaged) = framed(rest);
        (file, (!damaged).then_some(seqs))
    };
    let first = replay_wal_file(&file);
    assert!(first.valid_len <= file.len() as u64);
    if let Some(seqs) = expected {
        assert_eq!(first.seqs, seqs, "an undamaged file replays every record");
        assert_eq!(first.valid_len, file.len() as u64, "an undamaged file is not truncated");
    }
    let truncated = &file[..first.valid_len as usize];
    let second = replay_wal_file(truncated);
    assert_eq!(second.seqs, first.seqs, "the truncated file replays the same records");
    assert_eq!(second.valid_len, truncated.len() as u64, "truncation is stable");
    assert_eq!((second.rows, second.skipped), (first.rows, first.skipped));
});
