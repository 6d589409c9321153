//! The REST API (axum): JSON under `/v1`, shaped after Flink's, described
//! by an OpenAPI document generated from the handlers and the types of
//! [`crate::api`] (utoipa) and served at `/v1/openapi.json`; and `/metrics`
//! in Prometheus text format.
//!
//! Every error answer is JSON (`{"errors": [{"place", "message"}]}`),
//! including bodies too large and malformed requests. Calls that change
//! something need the coordinator's token when it has one.

use crate::api::{
    BundleInfo, BundleList, CheckpointDetail, Checkpoints, ComponentUploaded, Errors, Exceptions, JobDetail, JobList,
    JobStateInfo, KeyStateInfo, Operation, Overview, RateHistory, SavepointBody, SavepointOperation, SpecCheck,
    SpecText, SubmitRequest, Submitted, Triggered, VertexInfo, WorkerList,
};
use crate::{ApiError, Coordinator};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most bytes of a JSON request body (a spec is at most 1 MiB).
const JSON_BYTES: usize = 4 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weir REST API",
        description = "Manage a Weir coordinator: bundles, jobs, workers. See docs/rest-api.md."
    ),
    tags(
        (name = "cluster", description = "The coordinator and its workers"),
        (name = "bundles", description = "Operator bundles and components"),
        (name = "jobs", description = "Jobs: submit, watch, cancel")
    ),
    components(schemas(Errors))
)]
struct ApiDoc;

/// A bundle (`.weir` file) or component (`.wasm`) as the request body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct Binary(Vec<u8>);

type Shared = State<Arc<Coordinator>>;
type Answer<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(Errors { errors: self.errors })).into_response()
    }
}

/// Runs `f` off the async threads (it reads and writes files, compiles
/// components, waits on locks).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Answer<T> + Send + 'static) -> Answer<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal("request", format!("the request's work failed: {e}"))))
}

/// Content types a file upload may have.
const BINARY: &[&str] = &["application/octet-stream", "application/zip", "application/wasm"];

/// Refuses a body of another content type than `allowed` (415). Browsers
/// send other sites' forms as text or form data only: a cross-site page
/// cannot post these without a preflight, which this API never grants.
fn content_type(headers: &axum::http::HeaderMap, allowed: &[&str]) -> Answer<()> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if allowed.contains(&essence.as_str()) {
        return Ok(());
    }
    Err(ApiError {
        status: 415,
        ..ApiError::bad_request(
            "content-type",
            format!("`{given}` is not {}: send `Content-Type: {}`", allowed.join(" or "), allowed[0]),
        )
    })
}

fn body(b: Result<Bytes, BytesRejection>, what: &str) -> Answer<Bytes> {
    b.map_err(|e| {
        let status = e.status().as_u16();
        ApiError { status, ..ApiError::bad_request(what, format!("cannot read the body: {}", e.body_text())) }
    })
}

/// The cluster at a glance: version, workers, slots, jobs by state.
#[utoipa::path(get, path = "/v1/overview", tag = "cluster", responses((status = 200, body = Overview)))]
async fn overview(State(c): Shared) -> Answer<Json<Overview>> {
    blocking(move || Ok(Json(c.overview()))).await
}

/// Workers and their slots (Flink's task managers).
#[utoipa::path(get, path = "/v1/workers", tag = "cluster", responses((status = 200, body = WorkerList)))]
async fn workers(State(c): Shared) -> Answer<Json<WorkerList>> {
    blocking(move || Ok(Json(c.workers()))).await
}

/// Every stored bundle, newest first.
#[utoipa::path(get, path = "/v1/bundles", tag = "bundles", responses((status = 200, body = BundleList)))]
async fn list_bundles(State(c): Shared) -> Answer<Json<BundleList>> {
    blocking(move || Ok(Json(c.bundles()))).await
}

/// Uploads a bundle (the `.weir` file as the body). It is checked whole
/// before anything is stored; a refused one lists every problem.
#[utoipa::path(post, path = "/v1/bundles", tag = "bundles",
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = BundleInfo),
        (status = 200, description = "The same file was stored before", body = BundleInfo),
        (status = 400, description = "Refused: every problem", body = Errors),
        (status = 401, description = "The token is missing or wrong", body = Errors),
        (status = 403, description = "Refused: another site, another host name, or a read-only API", body = Errors),
        (status = 413, description = "Too large", body = Errors),
        (status = 415, description = "Not a file upload's content type", body = Errors)
    ))]
async fn upload_bundle(
    State(c): Shared,
    headers: axum::http::HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Answer<(StatusCode, Json<BundleInfo>)> {
    content_type(&headers, BINARY)?;
    let b = body(b, "bundle")?;
    blocking(move || {
        let (created, info) = c.upload_bundle(&b)?;
        Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(info)))
    })
    .await
}

/// A stored bundle: its manifest, spec and the jobs run from it.
#[utoipa::path(get, path = "/v1/bundles/{id}", tag = "bundles",
    params(("id" = String, Path, description = "The bundle's id (its SHA-256)")),
    responses((status = 200, body = BundleInfo), (status = 404, body = Errors)))]
async fn get_bundle(State(c): Shared, Path(id): Path<String>) -> Answer<Json<BundleInfo>> {
    blocking(move || c.bundle(&id).map(Json)).await
}

/// Removes a bundle no running job uses.
#[utoipa::path(delete, path = "/v1/bundles/{id}", tag = "bundles",
    params(("id" = String, Path, description = "The bundle's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "The token is missing or wrong", body = Errors),
        (status = 403, description = "Refused: another site, another host name, or a read-only API", body = Errors),
        (status = 404, body = Errors),
        (status = 409, description = "Jobs that have not ended use it", body = Errors)
    ))]
async fn delete_bundle(State(c): Shared, Path(id): Path<String>) -> Answer<StatusCode> {
    blocking(move || c.delete_bundle(&id).map(|()| StatusCode::NO_CONTENT)).await
}

/// Uploads one component (a `.wasm` file as the body), for a job
/// submitted as a spec.
#[utoipa::path(post, path = "/v1/components", tag = "bundles",
    request_body(content = Binary, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = ComponentUploaded),
        (status = 400, body = Errors),
        (status = 401, description = "The token is missing or wrong", body = Errors),
        (status = 403, description = "Refused: another site, another host name, or a read-only API", body = Errors),
        (status = 413, body = Errors),
        (status = 415, description = "Not a file upload's content type", body = Errors)
    ))]
async fn upload_component(
    State(c): Shared,
    headers: axum::http::HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Answer<(StatusCode, Json<ComponentUploaded>)> {
    content_type(&headers, BINARY)?;
    let b = body(b, "component")?;
    blocking(move || c.upload_component(&b).map(|u| (StatusCode::CREATED, Json(u)))).await
}

/// Every job, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses((status = 200, body = JobList)))]
async fn list_jobs(State(c): Shared) -> Answer<Json<JobList>> {
    blocking(move || Ok(Json(c.jobs()))).await
}

/// Submits a job from a stored bundle, or from a spec with uploaded
/// components; the answer's id is polled with `GET /v1/jobs/{id}`.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = SubmitRequest,
    responses(
        (status = 202, description = "Accepted", body = Submitted),
        (status = 400, description = "Refused: every problem", body = Errors),
        (status = 401, description = "The token is missing or wrong", body = Errors),
        (status = 403, description = "Refused: another site, another host name, or a read-only API", body = Errors),
        (status = 404, description = "No such bundle", body = Errors),
        (status = 413, description = "Larger than 4 MiB", body = Errors),
        (status = 415, description = "Not JSON", body = Errors)
    ))]
async fn submit_job(
    State(c): Shared,
    headers: axum::http::HeaderMap,
    b: axum::body::Body,
) -> Answer<(StatusCode, Json<Submitted>)> {
    content_type(&headers, &["application/json"])?;
    // Read to the JSON bound only, whatever the upload bound.
    let b = axum::body::to_bytes(b, JSON_BYTES).await.map_err(|_| ApiError {
        status: 413,
        ..ApiError::bad_request("request", format!("a submission has at most {JSON_BYTES} bytes"))
    })?;
    let req: SubmitRequest =
        serde_json::from_slice(&b).map_err(|e| ApiError::bad_request("request", format!("not a submission: {e}")))?;
    blocking(move || c.submit(req).map(|s| (StatusCode::ACCEPTED, Json(s)))).await
}

/// A job: state, timestamps, vertices with their metrics.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = JobDetail), (status = 404, body = Errors)))]
async fn get_job(State(c): Shared, Path(id): Path<String>) -> Answer<Json<JobDetail>> {
    blocking(move || c.job_detail(&id).map(Json)).await
}

/// One vertex of a job.
#[utoipa::path(get, path = "/v1/jobs/{id}/vertices/{vertex}", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), ("vertex" = String, Path, description = "The vertex id")),
    responses((status = 200, body = VertexInfo), (status = 404, body = Errors)))]
async fn get_vertex(State(c): Shared, Path((id, vertex)): Path<(String, String)>) -> Answer<Json<VertexInfo>> {
    blocking(move || c.vertex(&id, &vertex).map(Json)).await
}

/// A job's failures: the root cause and the history, each with the
/// failing operator, subtask, record and the guest's message.
#[utoipa::path(get, path = "/v1/jobs/{id}/exceptions", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = Exceptions), (status = 404, body = Errors)))]
async fn get_exceptions(State(c): Shared, Path(id): Path<String>) -> Answer<Json<Exceptions>> {
    blocking(move || c.exceptions(&id).map(Json)).await
}

/// Cancels a job; poll the request id for when it has stopped.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 202, body = Triggered),
        (status = 401, description = "The token is missing or wrong", body = Errors),
        (status = 403, description = "Refused: another site, another host name, or a read-only API", body = Errors),
        (status = 404, body = Errors),
        (status = 409, description = "The job has ended", body = Errors)
    ))]
async fn cancel_job(State(c): Shared, Path(id): Path<String>) -> Answer<(StatusCode, Json<Triggered>)> {
    blocking(move || c.cancel(&id).map(|t| (StatusCode::ACCEPTED, Json(t)))).await
}

/// A job's checkpoints and savepoints: counts, the latest completed,
/// history.
#[utoipa::path(get, path = "/v1/jobs/{id}/checkpoints", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = Checkpoints), (status = 404, body = Errors)))]
async fn get_checkpoints(State(c): Shared, Path(id): Path<String>) -> Answer<Json<Checkpoints>> {
    blocking(move || c.checkpoints(&id).map(Json)).await
}

/// One checkpoint of the job (of any of its executions) with every task's part:
/// when its barrier reached the task, its alignment, its synchronous
/// snapshot and the bytes written.
#[utoipa::path(get, path = "/v1/jobs/{id}/checkpoints/{checkpoint}", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("checkpoint" = u64, Path, description = "The checkpoint's number")
    ),
    responses((status = 200, body = CheckpointDetail), (status = 400, body = Errors), (status = 404, body = Errors)))]
async fn get_checkpoint(
    State(c): Shared,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Answer<Json<CheckpointDetail>> {
    let checkpoint: u64 = checkpoint.parse().map_err(|_| {
        ApiError::bad_request("checkpoint", format!("`{checkpoint}` is not a checkpoint number: give its id, e.g. 3"))
    })?;
    blocking(move || c.checkpoint(&id, checkpoint).map(Json)).await
}

/// A query string that does not fit, as the API's own 400.
fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request(
        "query",
        format!(
            "{}: give `key=TEXT` (look-ups), `checkpoint=N` (a checkpoint's number) or `since=MS` (epoch ms) as the call takes",
            e.body_text()
        ),
    )
}

/// From when.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SinceQuery {
    /// Only samples taken after this, epoch ms (default: all kept).
    since: Option<u64>,
}

/// A job's rates per vertex over the last ten minutes (records in and out
/// per second, busy and back-pressured time), for charts; `since` gives
/// only the samples after it.
#[utoipa::path(get, path = "/v1/jobs/{id}/rates", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), SinceQuery),
    responses(
        (status = 200, body = RateHistory),
        (status = 400, description = "`since` is not a number of milliseconds", body = Errors),
        (status = 404, body = Errors)
    ))]
async fn get_rates(
    State(c): Shared,
    Path(id): Path<String>,
    q: Result<Query<SinceQuery>, QueryRejection>,
) -> Answer<Json<RateHistory>> {
    let Query(q) = q.map_err(query_error)?;
    blocking(move || c.rate_history(&id, q.since.unwrap_or(0)).map(Json)).await
}

/// Which checkpoint to read: the latest completed when not given.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StateQuery {
    /// A completed checkpoint's (or savepoint's) number.
    checkpoint: Option<u64>,
}

/// What a job's latest completed checkpoint (or savepoint) holds, read
/// from its files: operators, state names, keys per key group.
#[utoipa::path(get, path = "/v1/jobs/{id}/state", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), StateQuery),
    responses(
        (status = 200, body = JobStateInfo),
        (status = 401, description = "The coordinator has a token, and it is missing or wrong", body = Errors),
        (status = 400, description = "A query that is not a checkpoint number", body = Errors),
        (status = 404, description = "No such job, or no completed checkpoint", body = Errors),
        (status = 409, description = "The checkpoint's files are gone or damaged", body = Errors)
    ))]
async fn get_state(
    State(c): Shared,
    Path(id): Path<String>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Answer<Json<JobStateInfo>> {
    let Query(q) = q.map_err(query_error)?;
    blocking(move || c.job_state(&id, q.checkpoint).map(Json)).await
}

/// One key of a keyed operator.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct KeyQuery {
    /// The key, as text (its UTF-8 bytes).
    key: String,
    /// A completed checkpoint's (or savepoint's) number.
    checkpoint: Option<u64>,
}

/// One key's state in a keyed operator of a job's latest completed
/// checkpoint, decoded.
#[utoipa::path(get, path = "/v1/jobs/{id}/state/{operator}", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("operator" = String, Path, description = "The operator's id"),
        KeyQuery
    ),
    responses(
        (status = 200, body = KeyStateInfo),
        (status = 401, description = "The coordinator has a token, and it is missing or wrong", body = Errors),
        (status = 400, description = "No such operator, or not a keyed one", body = Errors),
        (status = 404, description = "No such job, or no completed checkpoint", body = Errors)
    ))]
async fn get_key_state(
    State(c): Shared,
    Path((id, operator)): Path<(String, String)>,
    q: Result<Query<KeyQuery>, QueryRejection>,
) -> Answer<Json<KeyStateInfo>> {
    let Query(q) = q.map_err(query_error)?;
    blocking(move || c.key_state(&id, &operator, &q.key, q.checkpoint).map(Json)).await
}

/// Checks a spec without running it: its problems at their lines, or the
/// components a submission of it must map.
#[utoipa::path(post, path = "/v1/specs/validate", tag = "jobs",
    request_body = SpecText,
    responses(
        (status = 200, body = SpecCheck),
        (status = 400, description = "Not a request with a spec", body = Errors),
        (status = 413, description = "Larger than 4 MiB", body = Errors),
        (status = 415, description = "Not JSON", body = Errors)
    ))]
async fn validate_spec(
    State(c): Shared,
    headers: axum::http::HeaderMap,
    b: axum::body::Body,
) -> Answer<Json<SpecCheck>> {
    content_type(&headers, &["application/json"])?;
    let b = axum::body::to_bytes(b, JSON_BYTES).await.map_err(|_| ApiError {
        status: 413,
        ..ApiError::bad_request("request", format!("a spec to check has at most {JSON_BYTES} bytes"))
    })?;
    let req: SpecText = serde_json::from_slice(&b)
        .map_err(|e| ApiError::bad_request("request", format!("not a spec to check: {e}")))?;
    blocking(move || Ok(Json(c.check_spec(&req.spec)))).await
}

/// Takes a savepoint of a running job (`stop: true` stops it once the
/// savepoint is committed); poll the request id for its folder.
#[utoipa::path(post, path = "/v1/jobs/{id}/savepoints", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    request_body = SavepointBody,
    responses(
        (status = 202, body = Triggered),
        (status = 400, description = "A folder not allowed, or a job without checkpoints", body = Errors),
        (status = 401, description = "The token is missing or wrong", body = Errors),
        (status = 403, description = "Refused: another site, another host name, or a read-only API", body = Errors),
        (status = 404, body = Errors),
        (status = 409, description = "The job is not running", body = Errors),
        (status = 415, description = "Not JSON", body = Errors)
    ))]
async fn trigger_savepoint(
    State(c): Shared,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    b: axum::body::Body,
) -> Answer<(StatusCode, Json<Triggered>)> {
    content_type(&headers, &["application/json"])?;
    let b = axum::body::to_bytes(b, JSON_BYTES).await.map_err(|_| ApiError {
        status: 413,
        ..ApiError::bad_request("request", format!("a savepoint request has at most {JSON_BYTES} bytes"))
    })?;
    let body: SavepointBody = if b.is_empty() {
        SavepointBody::default()
    } else {
        serde_json::from_slice(&b)
            .map_err(|e| ApiError::bad_request("request", format!("not a savepoint request: {e}")))?
    };
    blocking(move || c.savepoint(&id, body).map(|t| (StatusCode::ACCEPTED, Json(t)))).await
}

/// Where a savepoint is.
#[utoipa::path(get, path = "/v1/jobs/{id}/savepoints/{trigger}", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), ("trigger" = String, Path, description = "The request id")),
    responses((status = 200, body = SavepointOperation), (status = 404, body = Errors)))]
async fn get_savepoint(
    State(c): Shared,
    Path((id, trigger)): Path<(String, String)>,
) -> Answer<Json<SavepointOperation>> {
    blocking(move || c.savepoint_status(&id, &trigger).map(Json)).await
}

/// Where a cancellation is.
#[utoipa::path(get, path = "/v1/jobs/{id}/cancel/{trigger}", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), ("trigger" = String, Path, description = "The request id")),
    responses((status = 200, body = Operation), (status = 404, body = Errors)))]
async fn get_cancellation(State(c): Shared, Path((id, trigger)): Path<(String, String)>) -> Answer<Json<Operation>> {
    blocking(move || c.cancellation(&id, &trigger).map(Json)).await
}

/// Whether `host` (a Host header or an Origin's authority) names this
/// machine's loopback interface.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    matches!(name.to_ascii_lowercase().as_str(), "127.0.0.1" | "localhost" | "::1")
}

/// Refuses requests of other sites (an `Origin` that is not this host's),
/// requests to a loopback API under another name (DNS rebinding), calls
/// that change something of a read-only API, and, when the coordinator has
/// a token, calls that change something or read a job's state without it.
async fn authorize(State((c, loopback)): State<(Arc<Coordinator>, bool)>, req: Request, next: Next) -> Response {
    let refuse = |status: u16, place: &str, message: String| {
        ApiError { status, ..ApiError::bad_request(place, message) }.into_response()
    };
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if loopback && !host.is_empty() && !loopback_host(&host) {
        return refuse(
            403,
            "host",
            format!(
                "`{host}` is not this machine's loopback address; this API answers only to 127.0.0.1, localhost and [::1]"
            ),
        );
    }
    let path = req.uri().path();
    // Checking a spec changes nothing, though it is a POST (a body).
    let changes =
        !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) && path != "/v1/specs/validate";
    // Keyed state is the job's data: as guarded as a change.
    let guarded = changes || (path.starts_with("/v1/jobs/") && path.split('/').nth(4) == Some("state"));
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        // `null`: a sandboxed or data: page, which may not change anything.
        if (origin == "null" && changes) || (origin != "null" && !authority.eq_ignore_ascii_case(&host)) {
            return refuse(403, "origin", format!("requests from `{origin}` (another site) are refused"));
        }
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared
        && n > c.config().max_upload_bytes as u64
    {
        // Refused from its declared length, before a byte is read.
        return refuse(
            413,
            "request",
            format!(
                "the body's {n} bytes are more than the {} this coordinator takes (length limit exceeded; see --max-upload-mb)",
                c.config().max_upload_bytes
            ),
        );
    }
    if changes && c.config().read_only {
        return refuse(
            403,
            "request",
            "this is `weir run`'s API for its one job, and it only reads; run `weir coordinator` to manage jobs".into(),
        );
    }
    if let Some(token) = &c.config().token
        && guarded
    {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let given = given.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        // Compared in time independent of where they differ.
        let same = given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0, |a, (x, y)| a | (x ^ y)) == 0;
        if !same {
            return ApiError {
                status: 401,
                ..ApiError::bad_request(
                    "authorization",
                    "this call needs the coordinator's token: send `Authorization: Bearer TOKEN` (the CLI: \
                     --token or WEIR_TOKEN; the token is in the coordinator's data dir, file `token`)",
                )
            }
            .into_response();
        }
    }
    next.run(req).await
}

fn api_routes() -> OpenApiRouter<Arc<Coordinator>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(overview))
        .routes(routes!(workers))
        .routes(routes!(list_bundles, upload_bundle))
        .routes(routes!(get_bundle, delete_bundle))
        .routes(routes!(upload_component))
        .routes(routes!(list_jobs, submit_job))
        .routes(routes!(get_job))
        .routes(routes!(get_vertex))
        .routes(routes!(get_exceptions))
        .routes(routes!(cancel_job))
        .routes(routes!(get_cancellation))
        .routes(routes!(get_checkpoints))
        .routes(routes!(get_checkpoint))
        .routes(routes!(get_state))
        .routes(routes!(get_rates))
        .routes(routes!(get_key_state))
        .routes(routes!(validate_spec))
        .routes(routes!(trigger_savepoint))
        .routes(routes!(get_savepoint))
}

/// The API's OpenAPI document (what `/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The API reference in Markdown, from the OpenAPI document (the
/// reference section of `docs/rest-api.md`).
pub fn reference_markdown() -> String {
    let doc = serde_json::to_value(openapi()).expect("invariant: the OpenAPI document serializes");
    crate::reference::markdown(&doc)
}

/// The API's router and its OpenAPI document; `loopback`: it is served
/// on a loopback address (and answers only to loopback host names).
pub fn router(c: Arc<Coordinator>, loopback: bool) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = api_routes().split_for_parts();
    let router = router.with_state(c.clone());
    let document = api.clone();
    let metrics_state = c.clone();
    let router = router
        .route("/v1/openapi.json", axum::routing::get(move || async move { Json(document) }))
        .route("/", axum::routing::get(crate::dashboard::index))
        .route("/assets/{*path}", axum::routing::get(crate::dashboard::asset))
        .route(
            "/metrics",
            axum::routing::get(move || async move {
                let c = metrics_state.clone();
                let text = tokio::task::spawn_blocking(move || c.prometheus()).await.unwrap_or_default();
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
            }),
        )
        .fallback(|method: Method, uri: axum::http::Uri| async move {
            ApiError::not_found("path", format!("no such resource: {method} {uri} (GET /v1/openapi.json lists them)"))
        })
        .layer(axum::middleware::from_fn_with_state((c.clone(), loopback), authorize))
        .layer(DefaultBodyLimit::max(c.config().max_upload_bytes));
    (router, api)
}

/// Blocks until the process is asked to stop (SIGINT or SIGTERM).
pub fn wait_for_signal() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })
}

/// The REST API served on a thread of its own.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (or, with `any_port`, a free port on the same address
    /// if it is taken) and serves `c`'s API until [`Server::stop`] or drop.
    pub fn start(c: Arc<Coordinator>, addr: SocketAddr, any_port: bool) -> std::io::Result<Server> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let listener = rt.block_on(async {
            match tokio::net::TcpListener::bind(addr).await {
                Err(e) if any_port && e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await
                }
                r => r,
            }
        })?;
        let bound = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (router, _) = router(c, bound.ip().is_loopback());
        let thread = std::thread::Builder::new().name("weir-rest".into()).spawn(move || {
            rt.block_on(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = rx.await;
                });
                if let Err(e) = serve.await {
                    tracing::error!("the REST API stopped: {e}");
                }
            });
        })?;
        Ok(Server { addr: bound, stop: Some(tx), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for open requests to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
