//! The network transports' tokio runtime: one thread (`spind-net`) drives a current-thread
//! runtime on which the web port's front (`http/front`), the unix JSON-RPC socket
//! (`rpc_socket`) and extsrc's listeners (`sources/extsrc`) run, a task per connection, instead
//! of a thread per connection. A task that waits for the core's answer to a JSON-RPC request
//! (a blocking channel) does it on the runtime's small blocking pool (`spind-net-wait`). The
//! core stays a plain thread fed by its channel; rumqttd runs its own runtime.

use std::io;
use std::sync::Mutex;
use std::thread;

use tokio::runtime::{Builder, Handle};

/// At most this many requests wait for the core at once (each on a blocking-pool thread); more
/// wait for a free one. The core answers one at a time anyway.
const MAX_WAITING: usize = 16;

static RUNTIME: Mutex<Option<Handle>> = Mutex::new(None);

/// The runtime's handle; the first call starts its thread, which runs for the process's life.
pub fn handle() -> io::Result<Handle> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let runtime = Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name("spind-net-wait")
        .max_blocking_threads(MAX_WAITING)
        .build()?;
    let handle = runtime.handle().clone();
    thread::Builder::new().name("spind-net".into()).spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    *slot = Some(handle.clone());
    Ok(handle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_runtime_serves_every_caller() {
        let (a, b) = (super::handle().unwrap(), super::handle().unwrap());
        assert_eq!(a.id(), b.id());
        let (tx, rx) = std::sync::mpsc::channel();
        a.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            tx.send(std::thread::current().name().map(String::from)).unwrap();
        });
        assert_eq!(rx.recv().unwrap().as_deref(), Some("spind-net"), "tasks run on the runtime's thread");
    }
}
