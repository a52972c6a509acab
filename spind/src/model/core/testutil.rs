//! A core on a temporary state directory, for unit tests.

use std::path::Path;

use crate::model::core::{Core, CoreSettings};
use crate::model::event::Publish;
use crate::model::names::Names;
use crate::model::persist::StateDir;

pub fn core_in(dir: &Path, settings: CoreSettings) -> Core {
    let state = StateDir::open(dir).expect("state dir");
    let names = Names::load(&state.names_file(), &dir.join("dhcp"), &dir.join("leases"));
    Core::new(settings, state, names, None, 1000).expect("core")
}

/// Payloads published on `topic`, as text.
pub fn on_topic(out: &[Publish], topic: &str) -> Vec<String> {
    out.iter().filter(|p| p.topic == topic).map(|p| String::from_utf8_lossy(&p.payload).into_owned()).collect()
}
