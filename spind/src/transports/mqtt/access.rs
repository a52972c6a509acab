//! Who may use the embedded broker (issue 11): the admin's credentials on every listener that is
//! not on loopback, and nobody but spind publishes spind's own topics.
//!
//! Per CONNECT (rumqttd's `AccessHandler`, patched in, runs this on a blocking thread):
//! * a listener on loopback (the laptop demo, tools on the router itself) lets every client in,
//!   as the web server does when every listener is on loopback;
//! * otherwise, with no admin password yet (first-run setup pending), nobody gets in;
//! * a user name and password: the admin's (the password file of the web server) or a login
//!   session's MQTT password (what the web UI fetches after login); failures count in the same
//!   per-address limit as the web's, and a locked-out address is refused without a check;
//! * no credentials: refused (`NotAuthorized`, which makes SPIN's bubble app show its login
//!   dialog), unless `pubsub_anonymous_read` is on: then the client may subscribe and may
//!   publish nothing. Wrong credentials are never downgraded to anonymous.
//!
//! Whoever gets in may not publish on spind's topics (everything under `SPIN/`, and the
//! configured traffic topic) except the request topic `SPIN/jsonrpc/q` and SPIN's tool topics
//! `SPIN/commands` and `SPIN/incidents`, nor, with `homeassistant_discovery`, spind's Home
//! Assistant discovery configs (`<prefix>/…/spin_…`); a will on such a topic refuses the CONNECT.

use std::net::SocketAddr;
use std::sync::Arc;

use rumqttd::{AccessDecision, AccessHandler, AccessRequest, PublishCheck};

use super::TOPIC_RPC_REQUEST;
use crate::transports::auth::{Auth, Verdict};

/// What the broker's access checks need from the configuration.
#[derive(Clone)]
pub struct BrokerAccess {
    /// The admin account (None: every listener is on loopback, nobody needs credentials).
    pub auth: Option<Arc<Auth>>,
    /// `pubsub_anonymous_read`: anonymous LAN clients may subscribe (SPIN's bubble app).
    pub anonymous_read: bool,
    /// `pubsub_channel_traffic` (SPIN's default `SPIN/traffic` is under `SPIN/` anyway).
    pub traffic_topic: String,
    /// `homeassistant_prefix` when `homeassistant_discovery` is on: the configs spind publishes
    /// there (`spin_` object ids) are spind's too.
    pub ha_prefix: Option<String>,
}

/// The kinds of answer to a CONNECT, before they become rumqttd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Subscribe to anything, publish but on spind's topics.
    Client,
    /// Subscribe only.
    ReadOnly,
    /// CONNACK 4, bad user name or password.
    BadLogin,
    /// CONNACK 5, not authorized.
    NotAuthorized,
}

/// Topics the clients may publish on although they are under `SPIN/`.
const CLIENT_TOPICS: [&str; 3] = [TOPIC_RPC_REQUEST, "SPIN/commands", "SPIN/incidents"];

/// Whether only spind publishes on `topic`: under `SPIN/` (but the clients' topics), the traffic
/// topic, and under Home Assistant's prefix `ha_prefix` every topic with a level `spin_…` (the
/// object ids of spind's discovery configs, with or without a node id level).
pub fn spind_owns(topic: &str, traffic_topic: &str, ha_prefix: Option<&str>) -> bool {
    let under = |t: &str, root: &str| {
        t == root || (t.len() > root.len() && t.starts_with(root) && t.as_bytes()[root.len()] == b'/')
    };
    let ha = ha_prefix.is_some_and(|p| {
        topic
            .strip_prefix(p)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| r.split('/').any(|l| l.starts_with("spin_")))
    });
    (under(topic, "SPIN") && !CLIENT_TOPICS.contains(&topic)) || under(topic, traffic_topic) || ha
}

impl BrokerAccess {
    /// The access handler of one listener.
    pub fn handler(&self, listener: SocketAddr) -> AccessHandler {
        let this = self.clone();
        let loopback = listener.ip().is_loopback();
        Arc::new(move |req: AccessRequest| {
            let grant = this.decide(loopback, &req);
            if matches!(grant, Grant::BadLogin | Grant::NotAuthorized) {
                log::info!(
                    "MQTT: refused {} from {} ({:?})",
                    req.client_id,
                    req.peer.map_or_else(|| "?".into(), |p| p.ip().to_string()),
                    grant
                );
            }
            match grant {
                Grant::Client => {
                    let (traffic, ha) = (this.traffic_topic.clone(), this.ha_prefix.clone());
                    let check: PublishCheck = Arc::new(move |t: &str| !spind_owns(t, &traffic, ha.as_deref()));
                    AccessDecision::Granted { may_publish: check }
                }
                Grant::ReadOnly => AccessDecision::Granted { may_publish: Arc::new(|_: &str| false) },
                Grant::BadLogin => AccessDecision::Refused { bad_login: true },
                Grant::NotAuthorized => AccessDecision::Refused { bad_login: false },
            }
        })
    }

    fn decide(&self, loopback_listener: bool, req: &AccessRequest) -> Grant {
        let Some(auth) = self.auth.as_deref().filter(|_| !loopback_listener) else {
            return Grant::Client;
        };
        if !auth.has_users() {
            return Grant::NotAuthorized;
        }
        match &req.login {
            None if self.anonymous_read => Grant::ReadOnly,
            None => Grant::NotAuthorized,
            Some((user, password)) => match auth.mqtt_login(user, password, req.peer.map(|p| p.ip())) {
                Verdict::Admin(_) => Grant::Client,
                Verdict::Limited(_) => Grant::NotAuthorized,
                Verdict::Missing | Verdict::Refused => Grant::BadLogin,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spind_owns_its_topics_and_leaves_the_clients_theirs() {
        for t in
            ["SPIN/traffic", "SPIN/traffic/node/7", "SPIN/traffic/admin", "SPIN/stat/core/x", "SPIN/jsonrpc/a", "SPIN"]
        {
            assert!(spind_owns(t, "SPIN/traffic", None), "{t}");
        }
        for t in ["SPIN/jsonrpc/q", "SPIN/commands", "SPIN/incidents", "SPINNER/x", "homeassistant/status", "x/SPIN/a"]
        {
            assert!(!spind_owns(t, "SPIN/traffic", Some("homeassistant")), "{t}");
        }
        assert!(spind_owns("home/spin", "home/spin", None) && spind_owns("home/spin/node/1", "home/spin", None));
        assert!(!spind_owns("home/spinx", "home/spin", None));
        // Home Assistant's discovery: spind's configs (also behind a node id), not the others'.
        let ha = Some("homeassistant");
        for t in ["homeassistant/device_tracker/spin_020000000064/config", "homeassistant/sensor/x/spin_alerts/config"]
        {
            assert!(spind_owns(t, "SPIN/traffic", ha), "{t}");
            assert!(!spind_owns(t, "SPIN/traffic", None), "{t}: discovery off");
        }
        for t in ["homeassistant/sensor/plug_1/config", "homeassistant", "other/device_tracker/spin_01/config"] {
            assert!(!spind_owns(t, "SPIN/traffic", ha), "{t}");
        }
    }

    fn request(login: Option<(&str, &str)>) -> AccessRequest {
        AccessRequest {
            peer: Some("10.0.0.7:5000".parse().unwrap()),
            client_id: "t".into(),
            login: login.map(|(u, p)| (u.into(), p.into())),
        }
    }

    fn access(dir: &std::path::Path, with_admin: bool, anonymous_read: bool) -> BrokerAccess {
        let file = dir.join("passwd");
        if with_admin {
            crate::transports::auth::set_password(&file, "admin", "s3cret-pass").unwrap();
        }
        BrokerAccess {
            auth: Some(Arc::new(Auth::load(&file).unwrap())),
            anonymous_read,
            traffic_topic: "SPIN/traffic".into(),
            ha_prefix: None,
        }
    }

    #[test]
    fn the_lan_needs_the_admin_and_loopback_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = access(dir.path(), true, false);
        assert_eq!(a.decide(false, &request(None)), Grant::NotAuthorized);
        assert_eq!(a.decide(false, &request(Some(("admin", "wrong")))), Grant::BadLogin);
        assert_eq!(a.decide(false, &request(Some(("root", "s3cret-pass")))), Grant::BadLogin);
        assert_eq!(a.decide(false, &request(Some(("admin", "s3cret-pass")))), Grant::Client);
        assert_eq!(a.decide(true, &request(None)), Grant::Client);
        let open = BrokerAccess { auth: None, ..a.clone() };
        assert_eq!(open.decide(false, &request(None)), Grant::Client);
    }

    #[test]
    fn before_setup_nobody_and_anonymous_read_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let setup = access(dir.path(), false, true);
        assert_eq!(setup.decide(false, &request(None)), Grant::NotAuthorized, "no admin yet: nobody");
        let a = access(dir.path(), true, true);
        assert_eq!(a.decide(false, &request(None)), Grant::ReadOnly);
        assert_eq!(a.decide(false, &request(Some(("admin", "wrong")))), Grant::BadLogin, "never downgraded");
    }

    #[test]
    fn guessing_is_locked_out_and_a_session_password_works() {
        let dir = tempfile::tempdir().unwrap();
        let a = access(dir.path(), true, false);
        for _ in 0..crate::transports::auth::FREE_FAILURES {
            assert_eq!(a.decide(false, &request(Some(("admin", "guess")))), Grant::BadLogin);
        }
        // Locked out: even the right password is refused now, unchecked.
        assert_eq!(a.decide(false, &request(Some(("admin", "s3cret-pass")))), Grant::NotAuthorized);
        let auth = a.auth.clone().unwrap();
        let token = auth.new_session("admin").unwrap();
        let (user, mqtt) = auth.mqtt_credentials(Some(&format!("spind_session={token}"))).unwrap();
        assert_eq!(user, "admin");
        assert_ne!(mqtt, token, "the MQTT password is not the cookie");
        assert_eq!(a.decide(false, &request(Some(("admin", &mqtt)))), Grant::Client);
        assert_eq!(a.decide(false, &request(Some(("other", &mqtt)))), Grant::NotAuthorized, "still locked out");
        auth.end_session(Some(&format!("spind_session={token}")));
        assert!(auth.mqtt_credentials(Some(&format!("spind_session={token}"))).is_none());
    }
}
