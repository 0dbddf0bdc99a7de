//! A cycle's exposition as a scrape hands it out: each format compressed once per cycle,
//! kept plain only once a client has asked for it plain, and the scrape-time metrics
//! spliced onto either form.
//!
//! The compressed form is a gzip member whose deflate stream stops, sync-flushed, after the
//! cycle's part. A scrape compresses only its own small tail (the process metrics) as the
//! final blocks and writes the trailer with the CRC of both parts combined, so a scrape of a
//! large fleet costs a few kilobytes of compression, not the whole body.

use std::io::Read as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// The compression level of the cycle's part. Level 1 compresses a cycle's exposition (long
/// runs of repeated label names and values) to within a fifth of what level 6 reaches, in
/// a third of the time: BENCHMARKS.md has the figures. The encode runs once per cycle on the
/// collector's thread, and its time is the cost that grows with the fleet.
const LEVEL: u32 = 1;

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`, without its `# EOF`.
    OpenMetrics,
}

/// Which forms clients have asked for since start; a form nobody asked for is not kept.
#[derive(Debug, Default)]
pub struct Demand {
    plain_text: AtomicBool,
    plain_openmetrics: AtomicBool,
}

impl Demand {
    /// A client wants `format` uncompressed.
    pub fn note_plain(&self, format: Format) {
        self.flag(format).store(true, Ordering::Relaxed);
    }

    /// Whether a client has wanted `format` uncompressed since start.
    pub fn wants_plain(&self, format: Format) -> bool {
        self.flag(format).load(Ordering::Relaxed)
    }

    fn flag(&self, format: Format) -> &AtomicBool {
        match format {
            Format::Text => &self.plain_text,
            Format::OpenMetrics => &self.plain_openmetrics,
        }
    }
}

/// One format of one cycle.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The plain bytes: set at the encode when a client has asked for them plain before,
    /// else at the first scrape that asks, so a burst of plain scrapes inflates once.
    plain: OnceLock<Bytes>,
    /// The gzip header and the deflate stream of the cycle's bytes, sync-flushed and open.
    gzip_open: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Encoded {
    /// Compresses `text`; keeps it plain too when `keep_plain`.
    pub fn new(text: String, keep_plain: bool) -> Self {
        let bytes = text.into_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes);
        let mut gzip_open = Vec::with_capacity(bytes.len() / 8 + 64);
        gzip_open.extend_from_slice(&GZIP_HEADER);
        deflate(&bytes, FlushCompress::Sync, &mut gzip_open);
        let plain = OnceLock::new();
        let len = bytes.len() as u64;
        if keep_plain {
            let _ = plain.set(Bytes::from(bytes));
        }
        Encoded {
            len,
            plain,
            gzip_open: Bytes::from(gzip_open),
            crc,
        }
    }

    /// The uncompressed size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The compressed size of the cycle's part.
    pub fn gzip_len(&self) -> usize {
        self.gzip_open.len()
    }

    /// The plain bytes: kept ones, or inflated from the compressed form the first time a
    /// client asks for them plain (from the next cycle on they are kept from the start).
    pub fn plain(&self) -> Bytes {
        self.plain.get_or_init(|| self.inflate()).clone()
    }

    fn inflate(&self) -> Bytes {
        let mut member = self.gzip_open.to_vec();
        finish(&mut member, &[], self.crc.clone(), self.len);
        let mut text = Vec::with_capacity(self.len as usize);
        // Inflating what this process deflated cannot fail; an empty answer if it did.
        let _ = flate2::read::GzDecoder::new(member.as_slice()).read_to_end(&mut text);
        Bytes::from(text)
    }

    /// The body parts of a compressed answer: the cycle's part as it is, then `tail`
    /// compressed as the final blocks with the trailer.
    pub fn gzip_with(&self, tail: &[u8]) -> [Bytes; 2] {
        let mut end = Vec::with_capacity(tail.len() / 2 + 64);
        finish(&mut end, tail, self.crc.clone(), self.len);
        [self.gzip_open.clone(), Bytes::from(end)]
    }
}

/// A gzip member header: no name, no time, "unknown" system.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// `input` as raw deflate blocks appended to `out`, ending with `flush`.
fn deflate(input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let mut compress = Compress::new(Compression::new(LEVEL), false);
    loop {
        let consumed = compress.total_in() as usize;
        out.reserve(64 * 1024);
        let status = compress.compress_vec(&input[consumed..], out, flush);
        let done = compress.total_in() as usize == input.len();
        match status {
            Ok(Status::StreamEnd) => return,
            Ok(_) if done && flush == FlushCompress::Sync && out.capacity() > out.len() => return,
            Ok(_) => {}
            // Compressing into a Vec cannot fail; stop rather than loop if it did.
            Err(_) => return,
        }
    }
}

/// Appends `tail` as the final deflate blocks, then the gzip trailer for everything: the
/// CRC of the cycle's part combined with the tail's, and the total size.
fn finish(out: &mut Vec<u8>, tail: &[u8], mut crc: crc32fast::Hasher, len: u64) {
    deflate(tail, FlushCompress::Finish, out);
    let mut tail_crc = crc32fast::Hasher::new();
    tail_crc.update(tail);
    crc.combine(&tail_crc);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    let total = len.wrapping_add(tail.len() as u64);
    // ISIZE is the size modulo 2^32, as RFC 1952 says.
    out.extend_from_slice(&((total & 0xffff_ffff) as u32).to_le_bytes());
}

/// A cycle's exposition in both formats, without the OpenMetrics `# EOF`.
#[derive(Debug, Clone)]
pub struct Exposition {
    /// Samples in the text format.
    pub series: u64,
    pub text: Encoded,
    pub openmetrics: Encoded,
    /// Shared with every later cycle: what clients have asked for.
    pub demand: Arc<Demand>,
}

impl Exposition {
    pub fn format(&self, format: Format) -> &Encoded {
        match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(parts: &[Bytes]) -> Vec<u8> {
        let joined: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(joined.as_slice())
            .read_to_end(&mut out)
            .expect("one valid gzip member");
        out
    }

    fn sample(lines: usize) -> String {
        (0..lines)
            .map(|i| format!("flexcloud_images{{account_id=\"acct{i:05}\",zone_id=\"Z\"}} {i}\n"))
            .collect()
    }

    #[test]
    fn the_compressed_answer_decodes_to_the_cycle_and_the_tail_exactly() {
        for lines in [0, 1, 10, 50_000] {
            let body = sample(lines);
            let encoded = Encoded::new(body.clone(), true);
            for tail in ["", "process_open_fds 7\n", &"x".repeat(100_000)] {
                let decoded = gunzip(&encoded.gzip_with(tail.as_bytes()));
                assert_eq!(
                    decoded,
                    format!("{body}{tail}").into_bytes(),
                    "{lines} lines"
                );
            }
            assert_eq!(encoded.plain(), body.as_bytes());
            assert_eq!(encoded.len(), body.len() as u64);
        }
    }

    #[test]
    fn a_form_not_kept_plain_is_inflated_when_asked_for() {
        let body = sample(1_000);
        let encoded = Encoded::new(body.clone(), false);
        assert!(encoded.plain.get().is_none());
        assert_eq!(encoded.plain(), body.as_bytes());
        assert!(encoded.plain.get().is_some(), "inflated once, then kept");
        assert!(
            encoded.gzip_len() * 5 < body.len(),
            "{} of {}",
            encoded.gzip_len(),
            body.len()
        );
    }

    #[test]
    fn standard_tools_read_the_member_as_one_stream() {
        // A multi-member reader and a single-member one agree: there is one member.
        let encoded = Encoded::new(sample(100), true);
        let joined: Vec<u8> = encoded
            .gzip_with(b"tail\n")
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect();
        let mut single = Vec::new();
        flate2::read::GzDecoder::new(joined.as_slice())
            .read_to_end(&mut single)
            .unwrap();
        let mut multi = Vec::new();
        flate2::read::MultiGzDecoder::new(joined.as_slice())
            .read_to_end(&mut multi)
            .unwrap();
        assert_eq!(single, multi);
    }
}
