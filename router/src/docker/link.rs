//! Removing a veth the driver handed to dockerd in an earlier run of the router: the overlay
//! forgot it at start (the staging namespace it was made in died with that run), so the driver
//! deletes its host end by name, which takes the container's end with it.

use futures::TryStreamExt;

use super::DockerError;

/// Deletes interface `name` in the router's namespace; an interface already gone is fine.
pub async fn delete_if_present(name: &str) -> Result<(), DockerError> {
    let failed = |e: rtnetlink::Error| DockerError::Internal(format!("deleting {name}: {e}"));
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| DockerError::Internal(format!("opening netlink: {e}")))?;
    let task = tokio::spawn(conn);
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    let result = match found {
        Ok(Some(link)) => handle
            .link()
            .del(link.header.index)
            .execute()
            .await
            .map_err(failed),
        Ok(None) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
        Err(e) => Err(failed(e)),
    };
    task.abort();
    result
}
