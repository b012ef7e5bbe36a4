//! Follows the Docker Engine API for the names and labels of the containers on weft networks,
//! as Weave Net did: dockerd tells a remote driver only endpoint ids. On a network `connect`
//! the container is inspected and its name and labels handed to the [`Driver`] (DNS, policy);
//! on `disconnect` the name goes. At every (re)connection to the API the running containers are
//! listed and named again, so a router restart or a broken event stream loses nothing.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::engine::{Engine, Event};
use super::store::Container;
use super::{DockerError, Driver};

/// Wait before reconnecting to the API after a failure or the end of the stream.
const RETRY: Duration = Duration::from_secs(1);

/// Starts following `engine` for `driver`; runs until aborted.
pub fn spawn(engine: Engine, driver: Driver) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reported = false;
        loop {
            match follow(&engine, &driver).await {
                Ok(()) => info!("the Docker event stream ended; reconnecting"),
                Err(e) if !reported => {
                    warn!("following Docker for container names: {e} (retrying every second)");
                    reported = true;
                }
                Err(e) => debug!("following Docker: {e}"),
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

/// Subscribes to network events, names the running containers, then handles events until the
/// stream ends. The subscription comes first so no connect between the two is missed.
async fn follow(engine: &Engine, driver: &Driver) -> Result<(), DockerError> {
    let mut events = engine.network_events().await?;
    info!(socket = %engine.socket().display(), "following Docker for container names");
    for c in engine.containers().await? {
        if let Err(e) = name(engine, driver, &c.id).await {
            warn!(container = %c.id, "naming the container: {e}");
        }
    }
    while let Some(event) = events.next().await? {
        if let Err(e) = handle(engine, driver, &event).await {
            warn!(action = %event.action, "handling a Docker event: {e}");
        }
    }
    Ok(())
}

async fn handle(engine: &Engine, driver: &Driver, event: &Event) -> Result<(), DockerError> {
    if event.kind != "network" || !driver.has_network(&event.actor.id).await {
        return Ok(());
    }
    let Some(container) = event.actor.attributes.get("container") else {
        return Ok(());
    };
    match event.action.as_str() {
        "connect" => name(engine, driver, container).await,
        "disconnect" => driver
            .unname_container(container, &event.actor.id)
            .await
            .map(|_| ()),
        _ => Ok(()),
    }
}

/// Inspects container `id` and names each of its endpoints the driver knows.
async fn name(engine: &Engine, driver: &Driver, id: &str) -> Result<(), DockerError> {
    let c = engine.inspect(id).await?;
    let container = Container {
        id: c.id.clone(),
        name: c.short_name().to_string(),
        labels: c.labels(),
    };
    for (_, endpoint) in c.endpoints() {
        driver.name_container(&endpoint, container.clone()).await?;
    }
    Ok(())
}
