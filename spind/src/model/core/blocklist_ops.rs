//! The core's side of blocklists (issue 13): the config's files and the household's lists
//! loaded at start (the cached copies), the operations behind `add_blocklist`,
//! `remove_blocklist`, `refresh_blocklists` and `list_blocklists`, what the fetcher hands in
//! (`Event::BlocklistFetched`), and the lists as the [`NameMatcher`] applies them.

use log::{info, warn};
use serde_json::Value;

use super::{Core, CoreSettings, OpError, OpResult};
use crate::model::blocklist::MAX_NAMES;
use crate::model::event::Publish;
use std::sync::Arc;

use crate::model::listsources::{cache_file, Blocklists, FetchQueue, Fetched, ListDef, ListSources, MAX_LISTS};
use crate::model::persist::StateDir;
use crate::model::policy::NameMatcher;

impl Core {
    /// The config's lists and the household's (`blocklists.json` and each list's cached copy).
    pub(super) fn load_blocklists(settings: &CoreSettings, state: &StateDir) -> anyhow::Result<Blocklists> {
        let mut b = Blocklists::new(settings.blocklists.clone());
        let file = state.blocklists_file();
        let mut sources = match std::fs::read_to_string(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ListSources::default(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
            Ok(text) => {
                let (s, warnings) = ListSources::from_file_text(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e} (fix or remove the file)", file.display()))?;
                for w in warnings {
                    warn!("{}: {w}", file.display());
                }
                s
            }
        };
        for w in sources.load_cached(&state.blocklists_dir(), MAX_NAMES.saturating_sub(b.names())) {
            warn!("blocklist cache: {w}");
        }
        b.sources = sources;
        b.rebuild();
        Ok(b)
    }

    /// The fetcher's queue: it is told every list at once (and fetches what is due).
    pub fn set_fetcher(&mut self, queue: Arc<FetchQueue>) {
        self.blocklists.fetcher = Some(queue);
        self.blocklists.tell_fetcher(Vec::new());
    }

    /// Hands the lists to a freshly compiled matcher, with the addresses of the devices the
    /// per-device lists are for (a query may come without its link-layer address).
    pub(super) fn set_match_lists(&self, m: &mut NameMatcher) {
        m.set_lists(self.blocklists.matched.clone(), self.blocklists.blocked_today.clone());
        let listed: Vec<[u8; 6]> =
            self.blocklists.matched.iter().filter_map(|l| l.devices.as_deref()).flatten().copied().collect();
        if listed.is_empty() {
            return;
        }
        for (ip, mac) in &self.neighbours {
            if listed.contains(&mac.0) {
                m.add_device_ip(*ip, mac.0);
            }
        }
    }

    /// The household's lists changed: the matcher (and the kernel's name blocks) follow.
    fn blocklists_changed(&mut self) {
        self.blocklists.rebuild();
        self.matcher = std::sync::Arc::new(self.compile_name_rules());
        self.enforce_pending = true;
    }

    /// What the fetcher loaded, or why it could not: a failure keeps the previous copy.
    pub(super) fn on_blocklist_fetched(&mut self, id: u64, outcome: Result<Fetched, String>) -> Vec<Publish> {
        let others: usize = self.blocklists.names()
            - self.blocklists.sources.iter().find(|l| l.def.id == id).map_or(0, |l| l.names.len());
        match &outcome {
            Ok(f) => info!("blocklist {id}: {} names, {} lines skipped", f.names.len(), f.counts.skipped),
            Err(e) => warn!("blocklist {id}: {e}; its previous copy stays in force"),
        }
        if self.blocklists.sources.fetched(id, self.now, outcome, others) {
            self.dirty.blocklists = true;
            self.blocklists_changed();
        }
        Vec::new()
    }

    /// Without a verdict path (replay, passive mode) the core counts the queries the rules and
    /// lists would have blocked, so `blocked_today` says the same as on a router.
    pub(super) fn count_simulated_block(&self, client: std::net::IpAddr, qname: &str) {
        let name = qname.trim_end_matches('.').to_ascii_lowercase();
        let device = self.neighbours.get(&client).map(|m| m.0);
        self.matcher.decide_counted(name.as_bytes(), device);
    }

    /// `add_blocklist`: a list for every device or the given ones; fetched at once.
    pub fn op_add_blocklist(&mut self, def: ListDef, out: &mut Vec<Publish>) -> OpResult<u64> {
        if let Some(id) = self.blocklists.sources.same_as(&def) {
            return Err(OpError::new(-1, format!("Invalid 'url': that list is already blocklist {id}")));
        }
        if self.blocklists.sources.len() >= MAX_LISTS {
            return Err(OpError::new(-1, format!("At most {MAX_LISTS} blocklists; remove one first")));
        }
        let undo = self.undo_point();
        let id = self.blocklists.sources.add(def);
        self.dirty.blocklists = true;
        self.blocklists_changed();
        self.commit(undo, out, Vec::new())?;
        self.blocklists.tell_fetcher(vec![id]);
        Ok(id)
    }

    /// `remove_blocklist`; error -1 for an id that is not a household list.
    pub fn op_remove_blocklist(&mut self, id: i64, out: &mut Vec<Publish>) -> OpResult<()> {
        let undo = self.undo_point();
        if !u64::try_from(id).is_ok_and(|id| self.blocklists.sources.remove(id)) {
            self.undo(undo);
            return Err(OpError::new(-1, format!("Invalid 'id': no blocklist {id}")));
        }
        self.dirty.blocklists = true;
        self.blocklists_changed();
        self.commit(undo, out, Vec::new())?;
        let _ = std::fs::remove_file(cache_file(&self.state.blocklists_dir(), id as u64));
        self.blocklists.tell_fetcher(Vec::new());
        Ok(())
    }

    /// `refresh_blocklists`: every household list is fetched now; the outcome shows in
    /// `list_blocklists`.
    pub fn op_refresh_blocklists(&mut self) {
        let ids = self.blocklists.sources.ids();
        self.blocklists.tell_fetcher(ids);
    }

    /// `list_blocklists`: what each list gave, the names in force and today's blocks.
    pub fn op_list_blocklists(&self) -> Value {
        self.blocklists.list_json()
    }
}
