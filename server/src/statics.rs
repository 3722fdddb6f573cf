//! The `--static` folder: served by `tower_http`'s `ServeDir`, behind a
//! guard that keeps what a folder of web pages should not give away: any
//! name starting with a dot (`.git/config`, `.env`, `.htpasswd`), and any
//! symlink that leads out of the folder. Both answer 404, like a file that
//! is not there.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

/// A router serving `dir` behind the guard.
pub fn service(dir: &Path) -> Router {
    let root = Arc::new(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
    Router::new()
        .fallback_service(ServeDir::new(dir))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let root = root.clone();
            async move {
                if allowed(&root, req.uri().path()).await {
                    next.run(req).await
                } else {
                    not_found()
                }
            }
        }))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Whether the request path may be served from `root` (canonical): no
/// segment starts with a dot (after percent-decoding), and the file or
/// folder it names, if it exists, is inside `root` once symlinks are
/// followed.
async fn allowed(root: &Path, path: &str) -> bool {
    let Some(relative) = relative_path(path) else {
        return false;
    };
    match tokio::fs::canonicalize(root.join(&relative)).await {
        Ok(real) => real.starts_with(root),
        // Not there: ServeDir answers 404 itself.
        Err(_) => true,
    }
}

/// The path below the folder a request names, or `None` if a segment is
/// hidden (starts with a dot, `..` included) or cannot be a file name.
fn relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains('\\') || segment.contains('\0') {
            return None;
        }
        let as_path = Path::new(segment);
        if !matches!(as_path.components().next(), Some(Component::Normal(_)))
            || as_path.components().count() != 1
        {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

/// `%XX` decoding of a URL path; `None` for a bad escape or bytes that are
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_are_refused_however_spelled() {
        for bad in [
            "/.git/config",
            "/a/.env",
            "/%2egit/config",
            "/%2Ehtpasswd",
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a%5c..%5cb",
            "/a%00b",
            "/%zz",
        ] {
            assert!(relative_path(bad).is_none(), "{bad}");
        }
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(
            relative_path("/pkg/peerwire_bg.wasm"),
            Some(PathBuf::from("pkg/peerwire_bg.wasm"))
        );
        assert_eq!(
            relative_path("/a%20b.html"),
            Some(PathBuf::from("a b.html"))
        );
    }
}
