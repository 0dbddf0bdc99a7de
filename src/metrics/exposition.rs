//! A cycle's exposition as a scrape hands it out: each format encoded only once a client
//! has asked for it and then compressed once per cycle, kept plain only once a client has
//! asked for it plain, and the scrape-time metrics spliced onto either form.
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
use prometheus_client::registry::Registry;

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

/// Which formats and forms clients have asked for since start: a format nobody asked for
/// is not encoded at the end of a cycle, and a form nobody asked for is not kept.
#[derive(Debug, Default)]
pub struct Demand {
    text: AtomicBool,
    openmetrics: AtomicBool,
    plain_text: AtomicBool,
    plain_openmetrics: AtomicBool,
}

impl Demand {
    /// A client wants `format`, compressed or not.
    pub fn note(&self, format: Format) {
        self.flag(format, false).store(true, Ordering::Relaxed);
    }

    /// A client wants `format` uncompressed.
    pub fn note_plain(&self, format: Format) {
        self.note(format);
        self.flag(format, true).store(true, Ordering::Relaxed);
    }

    /// Whether a client has wanted `format` since start.
    pub fn wants(&self, format: Format) -> bool {
        self.flag(format, false).load(Ordering::Relaxed)
    }

    /// Whether a client has wanted `format` uncompressed since start.
    pub fn wants_plain(&self, format: Format) -> bool {
        self.flag(format, true).load(Ordering::Relaxed)
    }

    /// The formats a cycle encodes as it ends: those asked for, or the text format before
    /// any client asked (the first scrape of the other then encodes it once).
    pub fn formats(&self) -> impl Iterator<Item = Format> + '_ {
        let none = !self.wants(Format::Text) && !self.wants(Format::OpenMetrics);
        [Format::Text, Format::OpenMetrics]
            .into_iter()
            .filter(move |f| self.wants(*f) || (none && *f == Format::Text))
    }

    fn flag(&self, format: Format, plain: bool) -> &AtomicBool {
        match (format, plain) {
            (Format::Text, false) => &self.text,
            (Format::OpenMetrics, false) => &self.openmetrics,
            (Format::Text, true) => &self.plain_text,
            (Format::OpenMetrics, true) => &self.plain_openmetrics,
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

/// A cycle's exposition in the formats clients ask for, without the OpenMetrics `# EOF`.
#[derive(Debug, Clone)]
pub struct Exposition {
    text: OnceLock<Encoded>,
    openmetrics: OnceLock<Encoded>,
    /// The cycle's metrics, for a format first asked for after the cycle ended. Small next
    /// to an encoding: it shares the snapshot and holds the counters.
    source: Arc<Registry>,
    /// Shared with every later cycle: what clients have asked for.
    pub demand: Arc<Demand>,
}

impl Exposition {
    /// Encodes `source` in the formats `demand` names now; any other waits for its first
    /// client.
    pub fn new(source: Registry, demand: Arc<Demand>) -> Self {
        let exposition = Exposition {
            text: OnceLock::new(),
            openmetrics: OnceLock::new(),
            source: Arc::new(source),
            demand,
        };
        for format in exposition.demand.formats() {
            exposition.format(format);
        }
        exposition
    }

    /// `format`, encoded now if this is its first client since the cycle ended.
    pub fn format(&self, format: Format) -> &Encoded {
        let cell = match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        };
        cell.get_or_init(|| encode(&self.source, format, self.demand.wants_plain(format)))
    }

    /// The first format encoded at the end of the cycle (text when clients want it): the
    /// cycle's series and size as the log and `flexcloud_exposition_*` give them.
    pub fn measured(&self) -> &Encoded {
        self.text
            .get()
            .or(self.openmetrics.get())
            .unwrap_or_else(|| self.format(Format::Text))
    }

    /// The text format, uncompressed: what a person or a test reads.
    pub fn plain_text(&self) -> Bytes {
        self.demand.note_plain(Format::Text);
        self.format(Format::Text).plain()
    }

    /// Whether `format` is encoded already, so serving it costs no encode.
    pub fn is_encoded(&self, format: Format) -> bool {
        match format {
            Format::Text => self.text.get().is_some(),
            Format::OpenMetrics => self.openmetrics.get().is_some(),
        }
    }
}

fn encode(registry: &Registry, format: Format, keep_plain: bool) -> Encoded {
    let mut writer = Writer::new(keep_plain);
    // Writing to a Writer cannot fail; an error here would be a bug in an encoder.
    let _ = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut writer, registry),
        Format::OpenMetrics => {
            prometheus_client::encoding::text::encode_registry(&mut writer, registry)
        }
    };
    writer.finish()
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

    fn registry() -> Registry {
        let mut registry = Registry::default();
        let gauge: prometheus_client::metrics::gauge::Gauge = Default::default();
        gauge.set(7);
        registry.register("flexcloud_test", "A test gauge", gauge);
        registry
    }

    #[test]
    fn a_cycle_encodes_only_the_formats_clients_asked_for() {
        let demand = Arc::new(Demand::default());
        // Before any client: the text format only, so the log has its figures.
        let first = Exposition::new(registry(), demand.clone());
        assert!(first.is_encoded(Format::Text));
        assert!(!first.is_encoded(Format::OpenMetrics));
        // The first OpenMetrics client of that cycle gets it encoded then.
        demand.note(Format::OpenMetrics);
        let late = String::from_utf8(first.format(Format::OpenMetrics).plain().to_vec()).unwrap();
        assert!(late.contains("flexcloud_test 7\n"), "{late}");
        assert!(!late.contains("# EOF"), "the scrape appends the end");
        // From the next cycle on, only what clients ask for.
        let next = Exposition::new(registry(), demand.clone());
        assert!(next.is_encoded(Format::OpenMetrics));
        assert!(!next.is_encoded(Format::Text));
        assert_eq!(next.measured().samples(), 1);
        assert_eq!(next.format(Format::OpenMetrics).plain(), late.as_bytes());
        demand.note(Format::Text);
        let both = Exposition::new(registry(), demand);
        assert!(both.is_encoded(Format::Text) && both.is_encoded(Format::OpenMetrics));
    }

    #[test]
    fn a_form_asked_for_plain_is_kept_plain_from_the_next_cycle() {
        let demand = Arc::new(Demand::default());
        demand.note(Format::Text);
        let gzip_only = Exposition::new(registry(), demand.clone());
        assert!(gzip_only.format(Format::Text).plain.get().is_none());
        demand.note_plain(Format::Text);
        let kept = Exposition::new(registry(), demand);
        assert!(kept.format(Format::Text).plain.get().is_some());
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
