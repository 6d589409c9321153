//! The browser dashboard: `web/dist` (a Vite build of `web/`) embedded at
//! compile time and served at `/`, beside the REST API it talks to.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "../../web/dist/"]
#[allow_missing = true]
struct Assets;

/// Headers every page of the dashboard gets: only this origin's scripts,
/// styles and API; never framed by another site (its buttons change jobs).
const SECURITY: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Whether the binary was built with the dashboard.
pub fn embedded() -> bool {
    Assets::get("index.html").is_some()
}

fn file(path: &str, cache: &'static str) -> Response {
    match Assets::get(path) {
        Some(f) => {
            let mime = f.metadata.mimetype().to_owned();
            (StatusCode::OK, SECURITY, [(header::CONTENT_TYPE, mime.as_str()), (header::CACHE_CONTROL, cache)], f.data)
                .into_response()
        }
        None => crate::ApiError::not_found(
            "path",
            format!("the dashboard has no file `{path}` (reload the page: the binary may have been rebuilt)"),
        )
        .into_response(),
    }
}

/// `/`: the app's page, or what to do when it was not built in.
pub async fn index() -> Response {
    if !embedded() {
        let page = "<!doctype html><title>Weir</title><h1>The dashboard is not in this binary</h1>\
                    <p>It was built without <code>web/dist</code>. Build it with <code>bash scripts/build.sh</code> \
                    (which runs <code>npm ci</code> and <code>npm run build</code> in <code>web/</code>, \
                    Node.js 20.19 or later) and start weir again. The REST API works meanwhile: \
                    <a href=\"/v1/openapi.json\">/v1/openapi.json</a>.</p>";
        return (StatusCode::SERVICE_UNAVAILABLE, SECURITY, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page)
            .into_response();
    }
    file("index.html", "no-cache")
}

/// `/assets/…`: scripts and styles, named by their hash, so cached for good.
pub async fn asset(Path(path): Path<String>) -> Response {
    file(&format!("assets/{path}"), "public, max-age=31536000, immutable")
}
