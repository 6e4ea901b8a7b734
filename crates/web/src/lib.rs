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
