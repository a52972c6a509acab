//! How every transport hands a JSON-RPC request to the core: the request text goes into the
//! core's channel as an `Input::Rpc`, with where its answer goes. The unix socket and HTTP wait
//! for the answer ([`ask`]); MQTT does not ([`send_for_mqtt`]): the core publishes the answer on
//! `SPIN/jsonrpc/a` itself. The request size limit is the same on every transport.

use std::fmt;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use crate::model::event::{Input, RpcReply};

/// Largest request accepted, in bytes, on every transport.
pub const MAX_REQUEST: usize = 65536;
/// Time we wait for the core's answer before giving up on a request.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The reply to a request over [`MAX_REQUEST`] (unix socket and HTTP).
pub const TOO_LARGE_REPLY: &str =
    r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Request too large (limit 65536 bytes)"}}"#;

/// Why a request got no answer from the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AskError {
    /// The core's channel is closed (the daemon is stopping).
    Stopped,
    /// No answer within [`REPLY_TIMEOUT`].
    Timeout,
    /// The core dropped the reply channel without answering.
    Dropped,
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AskError::Stopped => "the core has stopped",
            AskError::Timeout => "the core did not answer in time",
            AskError::Dropped => "the core dropped the request",
        })
    }
}

impl std::error::Error for AskError {}

/// Passes a request to the core and waits for its answer (`None`: nothing to send back, a
/// notification whose method has no result).
pub fn ask(core: &Sender<Input>, request: String) -> Result<Option<String>, AskError> {
    let (tx, rx) = mpsc::sync_channel(1);
    core.send(Input::Rpc { request, reply: RpcReply::Channel(tx) }).map_err(|_| AskError::Stopped)?;
    rx.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => AskError::Timeout,
        mpsc::RecvTimeoutError::Disconnected => AskError::Dropped,
    })
}

/// Passes a request that arrived on `SPIN/jsonrpc/q` to the core, which publishes the answer.
/// Err if the core has stopped.
pub fn send_for_mqtt(core: &Sender<Input>, request: String) -> Result<(), AskError> {
    core.send(Input::Rpc { request, reply: RpcReply::Mqtt }).map_err(|_| AskError::Stopped)
}

/// A stand-in for the core in transport tests: answers `echo:<request>`, or nothing for the
/// request `notify`.
#[cfg(test)]
pub(crate) fn fake_core() -> Sender<Input> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for input in rx {
            if let Input::Rpc { request, reply: RpcReply::Channel(r) } = input {
                let _ = r.send((request != "notify").then(|| format!("echo:{request}")));
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_the_core_and_its_answer_comes_back() {
        let core = fake_core();
        assert_eq!(ask(&core, "x".into()), Ok(Some("echo:x".into())));
        assert_eq!(ask(&core, "notify".into()), Ok(None));
    }

    #[test]
    fn a_stopped_core_is_an_error_that_says_so() {
        let (tx, rx) = mpsc::channel::<Input>();
        drop(rx);
        assert_eq!(ask(&tx, "x".into()), Err(AskError::Stopped));
        assert_eq!(send_for_mqtt(&tx, "x".into()), Err(AskError::Stopped));
        assert_eq!(AskError::Stopped.to_string(), "the core has stopped");
    }

    #[test]
    fn mqtt_requests_are_answered_on_the_answer_topic_not_back_here() {
        let (tx, rx) = mpsc::channel::<Input>();
        send_for_mqtt(&tx, "req".into()).unwrap();
        assert!(matches!(rx.recv().unwrap(), Input::Rpc { request, reply: RpcReply::Mqtt } if request == "req"));
    }
}
