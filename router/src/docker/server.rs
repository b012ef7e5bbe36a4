//! The plugin socket: axum over a unix listener at `<dir>/<name>.sock`, one POST route per
//! method, answers in Docker's plugin content type, errors as `{"Err": "..."}`; and the
//! Engine API watcher that names the containers.

use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{DockerError, Driver, Engine};

/// The content type of Docker plugin answers.
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// Where and under which name the plugin is served.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The directory dockerd discovers plugins in (`/run/docker/plugins`).
    pub dir: PathBuf,
    /// The plugin name: the `-d` and `--ipam-driver` of `docker network create`.
    pub name: String,
    /// The Engine API followed for container names and labels.
    pub engine: Engine,
}

impl DockerConfig {
    /// The socket path, `<dir>/<name>.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }
}

/// The plugin's routes: `POST /<Method>` for every protocol method, 404 otherwise.
pub fn routes(driver: Driver) -> Router {
    Router::new()
        .route("/{method}", post(call))
        .fallback(|| async { answer(Err(DockerError::UnknownMethod("(no method)".into()))) })
        .with_state(driver)
}

async fn call(State(driver): State<Driver>, Path(method): Path<String>, body: Bytes) -> Response {
    let result = driver.call(&method, &body).await;
    if let Err(e) = &result {
        warn!(%method, "Docker plugin call failed: {e}");
    }
    answer(result)
}

fn answer(result: Result<Value, DockerError>) -> Response {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (e.status(), json!({"Err": e.to_string()})),
    };
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// The running plugin server.
pub struct DockerPlugin {
    task: JoinHandle<()>,
    watcher: JoinHandle<()>,
    socket: PathBuf,
}

impl DockerPlugin {
    /// Binds `<dir>/<name>.sock` (replacing a stale socket), serves `driver` on it and starts
    /// following the Engine API for it.
    pub fn start(config: &DockerConfig, driver: Driver) -> Result<DockerPlugin, DockerError> {
        let socket = config.socket();
        let io_err = |source| DockerError::Socket {
            path: socket.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(io_err)?;
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let listener = UnixListener::bind(&socket).map_err(io_err)?;
        let watcher = super::watch::spawn(config.engine.clone(), driver.clone());
        let app = routes(driver);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!("Docker plugin server ended: {e}");
            }
        });
        info!(socket = %socket.display(), "serving the Docker network and IPAM driver");
        Ok(DockerPlugin {
            task,
            watcher,
            socket,
        })
    }

    /// The socket it serves.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Stops serving and removes the socket.
    pub fn stop(self) {
        self.watcher.abort();
        self.task.abort();
        if let Err(e) = std::fs::remove_file(&self.socket) {
            warn!("removing {}: {e}", self.socket.display());
        }
    }
}
