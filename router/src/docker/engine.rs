//! A small client of the Docker Engine API over its unix socket: the few calls the driver needs
//! to learn who is behind an endpoint (dockerd does not pass container names to a remote
//! driver): list containers, inspect one, and follow the network events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::DockerError;

/// The events the watcher follows: network connects and disconnects.
const NETWORK_EVENTS: &str = "/events?filters=%7B%22type%22%3A%5B%22network%22%5D%7D";
/// The longest event line accepted.
const MAX_EVENT: usize = 1 << 20;

/// Where the Engine API listens.
#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerSummary {
    /// The container id.
    #[serde(rename = "Id")]
    pub id: String,
}

/// The parts of `GET /containers/{id}/json` the driver uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerJson {
    /// The container id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Its name, with Docker's leading `/`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Its configuration.
    #[serde(rename = "Config", default)]
    pub config: Option<ContainerConfig>,
    /// Its networks.
    #[serde(rename = "NetworkSettings", default)]
    pub network_settings: Option<NetworkSettings>,
}

/// `Config` of a container.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerConfig {
    /// Its labels.
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `NetworkSettings` of a container.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkSettings {
    /// Network name → the container's endpoint on it.
    #[serde(rename = "Networks", default)]
    pub networks: Option<BTreeMap<String, EndpointSettings>>,
}

/// The container's endpoint on one network.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EndpointSettings {
    /// Docker's network id.
    #[serde(rename = "NetworkID", default)]
    pub network_id: String,
    /// Docker's endpoint id (the one the driver saw in CreateEndpoint).
    #[serde(rename = "EndpointID", default)]
    pub endpoint_id: String,
}

/// One line of `GET /events`.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// `network`, `container`, ...
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// `connect`, `disconnect`, ...
    #[serde(rename = "Action", default)]
    pub action: String,
    /// What the event is about.
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
}

/// The object of an event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actor {
    /// For network events, the network id.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// For network events, `container` holds the container id.
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

impl Engine {
    /// The API at `host`, `unix:///PATH` (the form of `DOCKER_HOST`).
    pub fn from_host(host: &str) -> Result<Engine, DockerError> {
        match host.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(Engine {
                socket: PathBuf::from(path),
            }),
            _ => Err(DockerError::BadRequest(format!(
                "--docker-api {host:?}: only unix:///PATH is supported"
            ))),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn error(&self, reason: impl ToString) -> DockerError {
        DockerError::Engine {
            socket: self.socket.display().to_string(),
            reason: reason.to_string(),
        }
    }

    async fn get(&self, path: &str) -> Result<Response<Incoming>, DockerError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.error(e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.error(e))?;
        tokio::spawn(async move {
            // The connection ends with the one request below.
            let _ = conn.await;
        });
        let request = Request::get(path)
            .header("host", "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.error(e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.error(e))?;
        match response.status() {
            StatusCode::OK => Ok(response),
            status => Err(self.error(format!("GET {path}: {status}"))),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, DockerError> {
        let body = self
            .get(path)
            .await?
            .into_body()
            .collect()
            .await
            .map_err(|e| self.error(e))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| self.error(format!("GET {path}: {e}")))
    }

    /// The running containers.
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        self.get_json("/containers/json").await
    }

    /// Container `id` inspected.
    pub async fn inspect(&self, id: &str) -> Result<ContainerJson, DockerError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(self.error(format!("invalid container id {id:?}")));
        }
        self.get_json(&format!("/containers/{id}/json")).await
    }

    /// Subscribes to the network events from now on.
    pub async fn network_events(&self) -> Result<Events, DockerError> {
        let body = self.get(NETWORK_EVENTS).await?.into_body();
        Ok(Events {
            engine: self.clone(),
            body,
            buf: BytesMut::new(),
        })
    }
}

impl ContainerJson {
    /// Its name without Docker's leading `/`.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// Its labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }

    /// Its endpoints: `(network id, endpoint id)`.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        self.network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .map(|nets| {
                nets.values()
                    .filter(|e| !e.endpoint_id.is_empty())
                    .map(|e| (e.network_id.clone(), e.endpoint_id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The stream of events: one JSON object per line.
pub struct Events {
    engine: Engine,
    body: Incoming,
    buf: BytesMut,
}

impl Events {
    /// The next event; `None` when dockerd ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, DockerError> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(at + 1);
                let line = line.chunk().trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| self.engine.error(format!("event: {e}")));
            }
            if self.buf.len() > MAX_EVENT {
                return Err(self.engine.error("an event longer than 1 MiB"));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(self.engine.error(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unix_hosts_are_accepted() {
        let e = Engine::from_host("unix:///run/d/docker.sock").expect("unix");
        assert_eq!(e.socket(), Path::new("/run/d/docker.sock"));
        assert!(Engine::from_host("tcp://1.2.3.4:2375").is_err());
        assert!(Engine::from_host("unix://relative").is_err());
    }

    #[test]
    fn inspect_output_gives_name_labels_and_endpoints() {
        let text = r#"{"Id": "c1", "Name": "/web", "Config": {"Labels": {"app": "web"}},
            "NetworkSettings": {"Networks": {
                "wnet": {"NetworkID": "n1", "EndpointID": "e1", "IPAddress": "10.32.0.2"},
                "none": {"NetworkID": "n2", "EndpointID": ""}}}}"#;
        let c: ContainerJson = serde_json::from_str(text).expect("inspect JSON");
        assert_eq!(c.short_name(), "web");
        assert_eq!(c.labels().get("app").map(String::as_str), Some("web"));
        assert_eq!(c.endpoints(), vec![("n1".to_string(), "e1".to_string())]);
        let bare: ContainerJson =
            serde_json::from_str(r#"{"Id": "c2", "Config": {"Labels": null}}"#).expect("bare");
        assert!(bare.labels().is_empty() && bare.endpoints().is_empty());
    }

    #[test]
    fn events_parse() {
        let text = r#"{"Type":"network","Action":"connect","Actor":{"ID":"n1",
            "Attributes":{"container":"c1","name":"wnet","type":"weft"}},"time":1}"#;
        let e: Event = serde_json::from_str(text).expect("event");
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("network", "connect"));
        assert_eq!(e.actor.id, "n1");
        assert_eq!(e.actor.attributes["container"], "c1");
    }
}
