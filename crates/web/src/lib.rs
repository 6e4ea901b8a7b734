//! Presentation for browsers: HTML escaping, the Vietnamese and English
//! catalogues, SVG maps and charts, QR codes, and the embedded browser
//! assets (the test page's JavaScript and the style sheet).
//!
//! Must never do I/O, query a store or compute a statistic: callers hand it
//! finished numbers and it only renders them.

pub mod banner;
pub mod chart;
pub mod i18n;
pub mod map;
pub mod page;
pub mod qr;

/// Escapes text for HTML/SVG element content and quoted attribute values:
/// `&`, `<`, `>`, `"` and `'`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    /// Checks that every tag is closed in order, ignoring attribute
    /// contents; good enough for generated markup.
    pub fn assert_balanced(svg: &str) {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "stray < in {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap());
            }
            let between = &rest[close + 1..];
            let next = between.find('<').unwrap_or(between.len());
            assert!(!between[..next].contains('>'), "stray >");
            rest = between;
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }
}
