//! The HTTP side: the page, its assets and a small JSON API, on axum and tokio. Every analysis
//! goes through the [work queue](crate::queue); every error is JSON `{"error": "..."}` with
//! the status of its [`ExploreError`].
//!
//! | method, path | what |
//! |---|---|
//! | `GET /` | the page (a view is stated in its query: `?image=d3&layer=conv5&channel=12`) |
//! | `GET /assets/{name}` | the page's script and style, embedded in the binary |
//! | `GET /api/model` | the network, its conv layers, the data set and index, the limits |
//! | `GET /api/images?offset=&limit=` | the data set's images (ids `d<N>`) |
//! | `POST /api/images` | an upload: the image's bytes, with its `Content-Type` (`image/png`, ...) |
//! | `GET /api/images/{id}` | the image as the network sees it (centre crop), PNG |
//! | `GET /api/activations?image=&layer=` | top-5 and every channel of the layer |
//! | `GET /api/projection?image=&layer=&channel=` | the channel's strongest unit, projected |
//! | `GET /api/top?layer=&channel=` | the channel's top-k over the data set (the index) |
//! | `POST /api/occlusion?image=&class=` | starts an occlusion job (202), class default: predicted |
//! | `GET`, `DELETE /api/jobs/{id}` | a job's progress and result; cancel it |

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::jobs::{JobReport, JobState, Jobs};
use crate::limits::{LIST_MAX, MAX_UPLOAD_BYTES, QUEUE_DEFAULT, RETRY_AFTER_S};
use crate::queue::WorkQueue;
use crate::{ExploreError, Explorer};

/// The page and its assets, embedded.
const ASSETS: [(&str, &str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8", include_str!("assets/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
];

/// The image types an upload may declare.
pub const UPLOAD_TYPES: [&str; 7] =
    ["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/x-portable-anymap"];

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where it listens (127.0.0.1 unless asked otherwise).
    pub addr: SocketAddr,
    /// Analyses run at once (default: one per core).
    pub workers: usize,
    /// Analyses that may wait for a worker before the server answers 503.
    pub waiting: usize,
}

impl ServeConfig {
    /// Loopback on `port`, one worker per core, the default queue.
    pub fn local(port: u16) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { addr: SocketAddr::from(([127, 0, 0, 1], port)), workers, waiting: QUEUE_DEFAULT }
    }
}

/// What the handlers share.
#[derive(Debug)]
struct AppState {
    explorer: Arc<Explorer>,
    queue: WorkQueue,
    jobs: Jobs,
}

type Shared = State<Arc<AppState>>;

impl IntoResponse for ExploreError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        r
    }
}

/// The explorer's routes over `explorer`, with a queue of `config.workers` and
/// `config.waiting`.
pub fn router(explorer: Arc<Explorer>, config: &ServeConfig) -> Router {
    let state =
        Arc::new(AppState { explorer, queue: WorkQueue::new(config.workers, config.waiting), jobs: Jobs::default() });
    Router::new()
        .route("/", get(|| asset_response("index.html")))
        .route("/assets/{name}", get(|Path(name): Path<String>| asset_response_owned(name)))
        .route("/api/model", get(model))
        .route("/api/images", get(list).post(upload))
        .route("/api/images/{id}", get(picture))
        .route("/api/activations", get(activations))
        .route("/api/projection", get(projection))
        .route("/api/top", get(top))
        .route("/api/occlusion", axum::routing::post(occlusion))
        .route("/api/jobs/{id}", get(job).delete(cancel_job))
        .fallback(|| async { ExploreError::NotFound("no such page or endpoint (see / for the explorer)".into()) })
        .layer(middleware::from_fn(reject_paths))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .with_state(state)
}

/// Serves `explorer` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    explorer: Arc<Explorer>,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(explorer, config)).with_graceful_shutdown(shutdown).await
}

/// Runs the server on a runtime of its own until Ctrl-C: binds `config.addr`, calls
/// `ready(address)` (the port is known then, also for port 0) and serves.
pub fn run_blocking(config: &ServeConfig, explorer: Explorer, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        ready(listener.local_addr()?);
        let stop = async {
            // Without a signal handler the server runs until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        serve(listener, Arc::new(explorer), config, stop).await
    })
}

fn asset_response(name: &str) -> std::future::Ready<Response> {
    std::future::ready(match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => {
            ([(header::CONTENT_TYPE, *mime), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => ExploreError::NotFound(format!("no asset `{name}`")).into_response(),
    })
}

async fn asset_response_owned(name: String) -> Response {
    asset_response(&name).await
}

/// Percent-decodes `s` (`+` stays; invalid escapes stay as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `name` (decoded) tries to reach outside: a `..` component or an absolute path
/// (`/x`, `\x`, `C:\x`).
pub fn escapes(name: &str) -> bool {
    let n = name.as_bytes();
    name.split(['/', '\\']).any(|c| c == "..")
        || name.starts_with('/')
        || name.starts_with('\\')
        || (n.len() >= 3 && n[0].is_ascii_alphabetic() && n[1] == b':' && (n[2] == b'/' || n[2] == b'\\'))
}

/// Refuses, before any handler, a request whose path has a `..` component or whose query
/// names an absolute path or has a `..` component (each decoded).
async fn reject_paths(req: Request, next: Next) -> Response {
    let path = percent_decode(req.uri().path());
    if path.split(['/', '\\']).any(|c| c == "..") {
        return ExploreError::BadRequest("a path with `..` is not allowed".into()).into_response();
    }
    // An absolute path inside the path (`/assets//etc/passwd`, `/assets/C:\x`).
    if path.contains("//") || path.contains('\\') || path.get(1..).unwrap_or("").split('/').any(escapes) {
        return ExploreError::BadRequest(format!("`{path}` names an absolute path")).into_response();
    }
    if let Some(q) = req.uri().query() {
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(&v.replace('+', " "));
            if escapes(&v) {
                return ExploreError::BadRequest(format!(
                    "`{}`: names are ids, not paths (no `..`, no absolute paths)",
                    percent_decode(k)
                ))
                .into_response();
            }
        }
    }
    next.run(req).await
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ExploreError> {
    q.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ExploreError::BadRequest(format!("missing `{name}`")))
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<usize>, ExploreError> {
    match q.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ExploreError::BadRequest(format!("`{name}` must be a whole number, got `{v}`"))),
    }
}

/// Runs `work` on the queue.
async fn queued<T: Send + 'static>(
    s: &AppState,
    work: impl FnOnce(&Explorer) -> Result<T, ExploreError> + Send + 'static,
) -> Result<T, ExploreError> {
    let ticket = s.queue.admit()?;
    let explorer = s.explorer.clone();
    ticket.run(move || work(&explorer)).await?
}

async fn model(State(s): Shared) -> Json<crate::explorer::ModelInfo> {
    Json(s.explorer.model_info())
}

async fn list(State(s): Shared, Query(q): Params) -> Result<Json<crate::explorer::ImageList>, ExploreError> {
    let offset = number(&q, "offset")?.unwrap_or(0);
    let limit = number(&q, "limit")?.unwrap_or(48).min(LIST_MAX);
    Ok(Json(s.explorer.list_images(offset, limit)?))
}

async fn upload(
    State(s): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ExploreError> {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = kind.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !UPLOAD_TYPES.contains(&mime.as_str()) {
        return Err(ExploreError::UnsupportedType(format!(
            "upload the image's bytes with its Content-Type ({}); got `{kind}`",
            UPLOAD_TYPES.join(", ")
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ExploreError::TooLarge(format!(
                "the upload is over the limit of {MAX_UPLOAD_BYTES} bytes ({} MiB)",
                MAX_UPLOAD_BYTES >> 20
            ))
        } else {
            ExploreError::BadRequest(format!("cannot read the upload: {e}"))
        }
    })?;
    let p = queued(&s, move |x| x.upload(&body)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": p.id, "name": p.name }))).into_response())
}

async fn picture(State(s): Shared, Path(id): Path<String>) -> Result<Response, ExploreError> {
    let png = queued(&s, move |x| {
        let p = x.image(&id)?;
        let mut bytes = Vec::new();
        p.picture
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| ExploreError::Internal(e.to_string()))?;
        Ok(bytes)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

async fn activations(State(s): Shared, Query(q): Params) -> Result<Json<crate::explorer::Activations>, ExploreError> {
    let (image, layer) = (param(&q, "image")?.to_string(), param(&q, "layer")?.to_string());
    Ok(Json(queued(&s, move |x| x.activations(&image, &layer)).await?))
}

async fn projection(State(s): Shared, Query(q): Params) -> Result<Json<crate::explorer::ProjectionView>, ExploreError> {
    let (image, layer) = (param(&q, "image")?.to_string(), param(&q, "layer")?.to_string());
    let channel = number(&q, "channel")?.ok_or_else(|| ExploreError::BadRequest("missing `channel`".into()))?;
    Ok(Json(queued(&s, move |x| x.projection(&image, &layer, channel).map(|(v, _)| v)).await?))
}

async fn top(State(s): Shared, Query(q): Params) -> Result<Json<crate::explorer::TopView>, ExploreError> {
    let layer = param(&q, "layer")?.to_string();
    let channel = number(&q, "channel")?.ok_or_else(|| ExploreError::BadRequest("missing `channel`".into()))?;
    Ok(Json(queued(&s, move |x| x.top(&layer, channel)).await?))
}

async fn occlusion(State(s): Shared, Query(q): Params) -> Result<Response, ExploreError> {
    let image = param(&q, "image")?.to_string();
    let class = number(&q, "class")?;
    // A bad image or class is answered now, not as a failed job.
    let probe = image.clone();
    let n = s.explorer.net().spec().classes();
    if let Some(c) = class.filter(|&c| c >= n) {
        return Err(ExploreError::BadRequest(format!("class {c} is out of range: the network has {n} (0..{})", n - 1)));
    }
    queued(&s, move |x| x.image(&probe).map(|_| ())).await?;
    let ticket = s.queue.admit()?;
    let (id, job) = s.jobs.start();
    let explorer = s.explorer.clone();
    let running = job.clone();
    tokio::spawn(ticket.run(move || {
        if running.cancelled() {
            return running.set(JobState::Cancelled);
        }
        running.set(JobState::Running);
        let out = explorer.occlusion(&image, class, &mut running.steer());
        running.set(match out {
            Ok(Some(result)) => JobState::Done { result },
            Ok(None) => JobState::Cancelled,
            Err(e) => JobState::Failed { error: e.to_string() },
        });
    }));
    let report = s.jobs.report(id).unwrap_or(JobReport { id, done: 0, total: 0, state: JobState::Queued });
    drop(job);
    Ok((StatusCode::ACCEPTED, Json(report)).into_response())
}

fn job_id(id: &str) -> Result<u64, ExploreError> {
    id.parse().map_err(|_| ExploreError::BadRequest(format!("bad job id `{id}`")))
}

async fn job(State(s): Shared, Path(id): Path<String>) -> Result<Json<JobReport>, ExploreError> {
    let id = job_id(&id)?;
    s.jobs
        .report(id)
        .map(Json)
        .ok_or_else(|| ExploreError::NotFound(format!("no job {id} (finished jobs are forgotten after newer ones)")))
}

async fn cancel_job(State(s): Shared, Path(id): Path<String>) -> Result<Json<JobReport>, ExploreError> {
    let id = job_id(&id)?;
    s.jobs.cancel(id).map(Json).ok_or_else(|| ExploreError::NotFound(format!("no job {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_reach_outside_are_recognised() {
        for bad in ["..", "../x", "a/../b", "a\\..\\b", "/etc/passwd", "\\x", "C:\\x", "c:/x"] {
            assert!(escapes(bad), "{bad}");
        }
        for good in ["d17", "conv5_3", "features.28", "a..b", "u0123456789abcdef", ""] {
            assert!(!escapes(good), "{good}");
        }
        assert_eq!(percent_decode("%2e%2E/%2Fx"), "..//x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
