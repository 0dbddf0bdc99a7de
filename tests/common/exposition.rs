//! The tests' one reader of the text exposition format: families with their type, and
//! samples with their labels (escapes undone) and value. promtool checks the format itself;
//! this only reads what the exporter wrote.
#![allow(dead_code)]

/// A `# TYPE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub name: String,
    pub kind: String,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Everything one exposition says.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: Vec<Family>,
    pub samples: Vec<Sample>,
}

/// Reads an exposition in the classic text format or OpenMetrics; panics on a line that is
/// neither a comment nor a sample, naming it.
pub fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("a TYPE line without a type: {line}"));
            exposition.families.push(Family {
                name: name.to_string(),
                kind: kind.trim().to_string(),
            });
        } else if !line.starts_with('#') {
            exposition.samples.push(sample(line));
        }
    }
    exposition
}

fn sample(line: &str) -> Sample {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(at) => line.split_at(at),
        None => panic!("a sample line without a value: {line}"),
    };
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => labels(inner, line),
        None => (Vec::new(), rest),
    };
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("a sample line without a value: {line}"));
    Sample {
        name: name.to_string(),
        labels,
        value: value
            .parse()
            .unwrap_or_else(|_| panic!("not a number ({value}) in: {line}")),
    }
}

/// `a="x",b="y\"z"}` into pairs with escapes undone, and what follows the brace.
fn labels<'a>(mut text: &'a str, line: &str) -> (Vec<(String, String)>, &'a str) {
    let mut pairs = Vec::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return (pairs, rest);
        }
        let (name, rest) = text
            .split_once("=\"")
            .unwrap_or_else(|| panic!("a label without a quoted value in: {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => panic!("an escape at the end of: {line}"),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => panic!("an unterminated label value in: {line}"),
            }
        };
        pairs.push((name.to_string(), value));
        text = &rest[end + 1..];
    }
}
