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
    samples: u64,
}

/// Takes an encoder's text as it is written and deflates it in chunks, so a cycle's plain
/// text exists whole only when a client wants it plain.
#[derive(Debug)]
pub struct Writer {
    compress: Compress,
    gzip: Vec<u8>,
    pending: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    /// Sample lines seen (those not starting with `#`), and whether the next byte starts a line.
    samples: u64,
    line_start: bool,
    plain: Option<Vec<u8>>,
}

/// How much text is gathered before it is deflated: large enough for the compressor to
/// find its matches, small enough to cost nothing next to the compressed body.
const CHUNK: usize = 64 * 1024;

impl Writer {
    /// `keep_plain`: keep the whole text too, for clients that want it uncompressed.
    pub fn new(keep_plain: bool) -> Self {
        let mut gzip = Vec::with_capacity(CHUNK);
        gzip.extend_from_slice(&GZIP_HEADER);
        Writer {
            compress: Compress::new(Compression::new(LEVEL), false),
            gzip,
            pending: Vec::with_capacity(CHUNK),
            crc: crc32fast::Hasher::new(),
            len: 0,
            samples: 0,
            line_start: true,
            plain: keep_plain.then(Vec::new),
        }
    }

    fn deflate_pending(&mut self, flush: FlushCompress) {
        for &byte in &self.pending {
            if self.line_start && byte != b'#' && byte != b'\n' {
                self.samples += 1;
            }
            self.line_start = byte == b'\n';
        }
        self.crc.update(&self.pending);
        self.len += self.pending.len() as u64;
        deflate(&mut self.compress, &self.pending, flush, &mut self.gzip);
        if let Some(plain) = &mut self.plain {
            plain.extend_from_slice(&self.pending);
        }
        self.pending.clear();
    }

    /// The compressed text, sync-flushed so a scrape can append its own tail.
    pub fn finish(mut self) -> Encoded {
        self.deflate_pending(FlushCompress::Sync);
        self.gzip.shrink_to_fit();
        let plain = OnceLock::new();
        if let Some(bytes) = self.plain {
            let _ = plain.set(Bytes::from(bytes));
        }
        Encoded {
            plain,
            gzip_open: Bytes::from(self.gzip),
            crc: self.crc,
            len: self.len,
            samples: self.samples,
        }
    }
}

impl std::fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.pending.extend_from_slice(s.as_bytes());
        if self.pending.len() >= CHUNK {
            self.deflate_pending(FlushCompress::None);
        }
        Ok(())
    }
}

impl Encoded {
    /// Compresses `text`; keeps it plain too when `keep_plain`.
    pub fn new(text: &str, keep_plain: bool) -> Self {
        let mut writer = Writer::new(keep_plain);
        // Writing to a Writer cannot fail.
        let _ = std::fmt::Write::write_str(&mut writer, text);
        writer.finish()
    }

    /// Sample lines in it.
    pub fn samples(&self) -> u64 {
        self.samples
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

/// `input` as raw deflate blocks of `compress` appended to `out`, ending with `flush`.
fn deflate(compress: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let mut consumed = 0;
    loop {
        let before = compress.total_in();
        out.reserve(CHUNK.min(input.len() - consumed + 1024));
        let status = compress.compress_vec(&input[consumed..], out, flush);
        consumed += (compress.total_in() - before) as usize;
        let all_in = consumed == input.len();
        match (status, flush) {
            (Ok(Status::StreamEnd), _) => return,
            // Without a flush, done once everything is taken in; a sync flush is done when
            // it left room in the output (zlib's rule: a full output may hold more).
            (Ok(_), FlushCompress::None) if all_in => return,
            (Ok(_), FlushCompress::Sync) if all_in && out.capacity() > out.len() => return,
            (Ok(_), _) => {}
            // Compressing into a Vec cannot fail; stop rather than loop if it did.
            (Err(_), _) => return,
        }
    }
}

/// Appends `tail` as the final deflate blocks, then the gzip trailer for everything: the
/// CRC of the cycle's part combined with the tail's, and the total size.
fn finish(out: &mut Vec<u8>, tail: &[u8], mut crc: crc32fast::Hasher, len: u64) {
    let mut compress = Compress::new(Compression::new(LEVEL), false);
    deflate(&mut compress, tail, FlushCompress::Finish, out);
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
            let encoded = Encoded::new(&body, true);
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
            assert_eq!(encoded.samples(), lines as u64);
        }
    }

    #[test]
    fn text_written_in_pieces_across_chunks_is_counted_and_compressed_whole() {
        use std::fmt::Write as _;
        let mut writer = Writer::new(false);
        let mut whole = String::new();
        for i in 0..20_000 {
            // Pieces of every size, so lines and comments straddle the chunk boundaries.
            let piece = format!("# HELP m{i} x\nm{i}{{a=\"{}\"}} {i}\n", "v".repeat(i % 97));
            let (head, rest) = piece.split_at(i % piece.len());
            writer.write_str(head).unwrap();
            writer.write_str(rest).unwrap();
            whole.push_str(&piece);
        }
        assert!(whole.len() > 10 * CHUNK);
        let encoded = writer.finish();
        assert_eq!(encoded.samples(), 20_000);
        assert_eq!(gunzip(&encoded.gzip_with(b"")), whole.as_bytes());
        assert_eq!(encoded.plain(), whole.as_bytes());
    }

    #[test]
    fn a_form_not_kept_plain_is_inflated_when_asked_for() {
        let body = sample(1_000);
        let encoded = Encoded::new(&body, false);
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
        let encoded = Encoded::new(&sample(100), true);
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
