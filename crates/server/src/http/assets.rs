//! The built web UI (`ui/dist`), embedded in release builds and read from disk in debug builds.
//!
//! - Unknown non-API paths get `index.html`, so the UI's own routes survive a reload.
//! - Every answer carries an `ETag` (the file's SHA-256, which rust-embed computes) and
//!   `Cache-Control: no-cache`: the browser keeps its copy and revalidates it, and an
//!   unchanged file costs a `304 Not Modified` without a body. The file names are not hashed
//!   (`pkg/porchlight_ui_bg.wasm`), so nothing may be cached without revalidation, or an
//!   upgraded server would be talking to yesterday's UI. Leaflet (`vendor/`), pinned by its
//!   lock, may be used for a day without asking.
//! - Text, JavaScript and wasm are sent gzip-compressed to browsers that accept it
//!   (`Vary: Accept-Encoding`), compressed once per file version and kept in memory.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::{EmbeddedFile, RustEmbed};

#[derive(RustEmbed)]
#[folder = "../../ui/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Porchlight</title>\
<p>The Porchlight web UI has not been built. Run <code>bash scripts/build-ui.sh</code> and restart.\
 The API is available under <code>/api</code>.";

pub async fn serve(uri: Uri, request_headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") || path == "api" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "no such API endpoint" })),
        )
            .into_response();
    }
    let asset = (!path.is_empty())
        .then(|| Assets::get(path).map(|f| (path, f)))
        .flatten()
        .or_else(|| Assets::get("index.html").map(|f| ("index.html", f)));
    match asset {
        Some((name, file)) => answer(name, file, &request_headers).await,
        None => Html(NOT_BUILT).into_response(),
    }
}

async fn answer(name: &str, file: EmbeddedFile, request: &HeaderMap) -> Response {
    let etag = etag(&file);
    let cache = if name.starts_with("vendor/") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if matches_etag(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let mime = file.metadata.mimetype().to_owned();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if compressible(&mime)
        && accepts_gzip(request)
        && let Some(body) = gzipped(&etag, &file.data).await
    {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return (headers, body.as_ref().clone()).into_response();
    }
    // Not compressible, not accepted, or compression failed (logged): the plain file.
    (headers, file.data.into_owned()).into_response()
}

fn etag(file: &EmbeddedFile) -> String {
    let hash: String = file.metadata.sha256_hash()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hash}\"")
}

/// `If-None-Match` names this version (or `*`).
fn matches_etag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn compressible(mime: &str) -> bool {
    mime.starts_with("text/")
        || mime.starts_with("application/javascript")
        || mime.starts_with("application/wasm")
        || mime.starts_with("application/json")
        || mime.starts_with("image/svg+xml")
}

/// The gzip of one file version, made once (on a blocking thread) and kept.
async fn gzipped(etag: &str, data: &[u8]) -> Option<Arc<Vec<u8>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(etag).cloned()) {
        return Some(hit);
    }
    let data = data.to_vec();
    let compressed = tokio::task::spawn_blocking(move || {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&data)?;
        encoder.finish()
    })
    .await;
    match compressed {
        Ok(Ok(body)) => {
            let body = Arc::new(body);
            if let Ok(mut c) = cache.lock() {
                c.insert(etag.to_owned(), Arc::clone(&body));
            }
            Some(body)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "compressing a UI file failed; sent uncompressed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "compressing a UI file panicked; sent uncompressed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    async fn body(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[test]
    fn gzip_is_sent_only_to_who_accepts_it() {
        assert!(accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(!accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "gzip;q=0, br"
        )])));
        assert!(!accepts_gzip(&headers(&[(
            header::ACCEPT_ENCODING,
            "br, identity"
        )])));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(compressible("application/wasm"));
        assert!(compressible("text/css; charset=utf-8"));
        assert!(!compressible("image/png"));
    }

    /// The built UI (CI builds it before the tests): the wasm module and the page come
    /// compressed with their ETag, unpack to the very bytes sent uncompressed, and a second
    /// request naming the ETag gets a 304 without a body.
    #[tokio::test]
    async fn the_built_ui_comes_gzipped_with_an_etag_and_revalidates_with_a_304() {
        let Some(wasm) = Assets::get("pkg/porchlight_ui_bg.wasm") else {
            eprintln!("ui/dist is not built (scripts/build-ui.sh); nothing to check");
            return;
        };
        for path in ["/pkg/porchlight_ui_bg.wasm", "/", "/history"] {
            let uri: Uri = path.parse().unwrap();
            let plain = serve(uri.clone(), HeaderMap::new()).await;
            assert_eq!(plain.status(), StatusCode::OK);
            assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
            let etag = plain.headers()[header::ETAG].to_str().unwrap().to_owned();
            assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
            let plain = body(plain).await;

            let zipped = serve(
                uri.clone(),
                headers(&[(header::ACCEPT_ENCODING, "gzip, br")]),
            )
            .await;
            assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip", "{path}");
            assert_eq!(zipped.headers()[header::ETAG], etag.as_str());
            let zipped = body(zipped).await;
            assert!(
                zipped.len() < plain.len(),
                "{path}: {} ≥ {}",
                zipped.len(),
                plain.len()
            );
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(&zipped[..])
                .read_to_end(&mut unpacked)
                .unwrap();
            assert_eq!(unpacked, plain, "{path}");

            let again = serve(uri, headers(&[(header::IF_NONE_MATCH, &etag)])).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert!(body(again).await.is_empty());
        }
        assert_eq!(
            wasm.data.len(),
            body(
                serve(
                    "/pkg/porchlight_ui_bg.wasm".parse().unwrap(),
                    HeaderMap::new()
                )
                .await
            )
            .await
            .len()
        );
        // Another version of the file: the old ETag no longer matches.
        let stale = serve(
            "/".parse().unwrap(),
            headers(&[(header::IF_NONE_MATCH, "\"0000\"")]),
        )
        .await;
        assert_eq!(stale.status(), StatusCode::OK);
    }
}
