//! The API's list pagination: `page`/`pageSize`, the `links` array and the 303 rules.

use serde::Serialize;

/// More items than this, asked for without paging parameters, get a 303 to page 1.
pub const UNPAGED_LIMIT: usize = 100;
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 400;

#[derive(Debug, Serialize, PartialEq)]
pub struct Link {
    pub rel: &'static str,
    pub href: String,
}

/// What to do with a list request.
#[derive(Debug, PartialEq)]
pub enum Paging {
    /// No paging parameters and a short list: everything, without `links`.
    All,
    /// One page: the item range and the `links` to send with it.
    Page {
        range: std::ops::Range<usize>,
        links: Vec<Link>,
    },
    /// A 303 to this location.
    SeeOther(String),
    /// A 400 with this message.
    BadRequest(String),
}

/// Decides paging for a list of `total` items requested at `base` (scheme, host and
/// path) with `query` (the raw query string).
pub fn decide(total: usize, base: &str, query: &str) -> Paging {
    let mut page = None;
    let mut page_size = None;
    let mut others = Vec::new();
    for (key, value) in form_pairs(query) {
        match key.as_str() {
            "page" => page = Some(value),
            "pageSize" => page_size = Some(value),
            _ => others.push((key, value)),
        }
    }
    if page.is_none() && page_size.is_none() {
        if total > UNPAGED_LIMIT {
            return Paging::SeeOther(href(base, &others, 1, DEFAULT_PAGE_SIZE));
        }
        return Paging::All;
    }
    let page = match page.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        Some(_) => return Paging::BadRequest("page must be a whole number from 1".into()),
    };
    let size = match page_size.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(s)) if s > MAX_PAGE_SIZE => {
            return Paging::SeeOther(href(base, &others, page, MAX_PAGE_SIZE));
        }
        Some(Ok(s)) if s >= 1 => s,
        Some(_) => {
            return Paging::BadRequest("pageSize must be a whole number from 1 to 400".into());
        }
    };
    let last = total.div_ceil(size).max(1);
    let start = ((page - 1) * size).min(total);
    let end = (start + size).min(total);
    let mut links = Vec::new();
    links.push(Link {
        rel: "self",
        href: href(base, &others, page, size),
    });
    if page > 1 {
        links.push(Link {
            rel: "first",
            href: href(base, &others, 1, size),
        });
        links.push(Link {
            rel: "previous",
            href: href(base, &others, (page - 1).min(last), size),
        });
    }
    if page < last {
        links.push(Link {
            rel: "next",
            href: href(base, &others, page + 1, size),
        });
        links.push(Link {
            rel: "last",
            href: href(base, &others, last, size),
        });
    }
    Paging::Page {
        range: start..end,
        links,
    }
}

fn href(base: &str, others: &[(String, String)], page: usize, size: usize) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(others);
    query.append_pair("page", &page.to_string());
    query.append_pair("pageSize", &size.to_string());
    format!("{base}?{}", query.finish())
}

/// Decoded `key=value` pairs of a query string.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(p: &Paging) -> Vec<&'static str> {
        match p {
            Paging::Page { links, .. } => links.iter().map(|l| l.rel).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn short_unpaged_lists_come_whole() {
        assert_eq!(decide(100, "http://h/a", ""), Paging::All);
        assert_eq!(decide(0, "http://h/a", "zone=Z"), Paging::All);
    }

    #[test]
    fn long_unpaged_lists_redirect_to_the_first_page_keeping_filters() {
        assert_eq!(
            decide(101, "http://h/a", "zone=US+1&type=BASE"),
            Paging::SeeOther("http://h/a?zone=US+1&type=BASE&page=1&pageSize=100".into())
        );
    }

    #[test]
    fn oversized_page_size_redirects_to_the_same_page_at_400() {
        assert_eq!(
            decide(5, "http://h/a", "page=3&pageSize=401"),
            Paging::SeeOther("http://h/a?page=3&pageSize=400".into())
        );
    }

    #[test]
    fn links_omit_first_and_previous_on_page_one_and_next_and_last_on_the_last() {
        let first = decide(250, "http://h/a", "page=1");
        assert_eq!(rels(&first), ["self", "next", "last"]);
        let middle = decide(250, "http://h/a", "page=2&pageSize=100");
        assert_eq!(rels(&middle), ["self", "first", "previous", "next", "last"]);
        let last = decide(250, "http://h/a", "page=3&pageSize=100");
        assert_eq!(rels(&last), ["self", "first", "previous"]);
        assert!(matches!(last, Paging::Page { range, .. } if range == (200..250)));
    }

    #[test]
    fn bad_paging_values_are_400() {
        assert!(matches!(decide(5, "b", "page=0"), Paging::BadRequest(_)));
        assert!(matches!(
            decide(5, "b", "pageSize=x"),
            Paging::BadRequest(_)
        ));
    }
}
