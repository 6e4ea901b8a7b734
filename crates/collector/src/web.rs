//! The pages `ispeed serve` shows a browser. For now one page: what this
//! server is, this month's figures per province from the public API, and
//! where the API is described. The dashboard and the browser test replace it.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../web/index.html");

/// Routes of the web pages (no state: pages read the public API).
pub fn pages<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(|| async { Html(INDEX_HTML) }))
}
