//! The built web UI (`ui/dist`), embedded in release builds and read from disk in debug builds.
//!
//! Unknown non-API paths get `index.html`, so the UI's own routes survive a reload.

use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../ui/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Porchlight</title>\
<p>The Porchlight web UI has not been built. Run <code>bash scripts/build-ui.sh</code> and restart.\
 The API is available under <code>/api</code>.";

pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") || path == "api" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "no such API endpoint" })),
        )
            .into_response();
    }
    if let Some(file) = (!path.is_empty()).then(|| Assets::get(path)).flatten() {
        let mime = file.metadata.mimetype().to_owned();
        let cache = if path.starts_with("pkg/") {
            "no-cache"
        } else {
            "public, max-age=300"
        };
        return (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, cache.to_owned()),
            ],
            file.data.into_owned(),
        )
            .into_response();
    }
    match Assets::get("index.html") {
        Some(index) => (
            [(header::CACHE_CONTROL, "no-cache")],
            Html(index.data.into_owned()),
        )
            .into_response(),
        None => Html(NOT_BUILT).into_response(),
    }
}
