//! How a dashboard is set up: the store, the broker, and the security switches.
//!
//! Built by the binary that serves it (`palermo web`, or an application that mounts the
//! router); environment variables and flags are read there, never here. Every option says
//! what it defaults to. The defaults are the safe ones for a dashboard bound to 127.0.0.1:
//! no login, actions allowed, only same-origin forms.

use std::{fmt, net::SocketAddr, str::FromStr};

use palermo_store::Store;

/// Everything [`crate::router`] needs.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub(crate) store: Store,
    pub(crate) deployment: palermo::Deployment,
    pub(crate) env_name: Option<String>,
    pub(crate) auth: Option<Credentials>,
    pub(crate) read_only: bool,
    pub(crate) trusted_origins: Vec<String>,
    pub(crate) metrics_public: bool,
    pub(crate) refresh_secs: u32,
}

impl WebConfig {
    /// A dashboard over `store` that reads queue depths from, and retries to, the broker of
    /// `deployment` (connected lazily, at the first page that needs it, and again after the
    /// connection drops). A retry that re-creates a job queue declares it as the
    /// deployment's workers do (its queue type and priority queues); the failed queue is
    /// shown with the job queues, never purged (its messages are failures not yet recorded).
    pub fn new(store: Store, deployment: palermo::Deployment) -> WebConfig {
        WebConfig {
            store,
            deployment,
            env_name: None,
            auth: None,
            read_only: false,
            trusted_origins: Vec::new(),
            metrics_public: false,
            refresh_secs: 5,
        }
    }

    /// A label for the cluster (`staging`, `prod-eu`), shown in every page's title and
    /// header so that nobody acts on the wrong one. Defaults to none.
    pub fn env_name(mut self, name: Option<String>) -> Self {
        self.env_name = name.filter(|n| !n.trim().is_empty());
        self
    }

    /// HTTP Basic credentials required for every page, API route, action and (unless
    /// [`WebConfig::metrics_public`]) `/metrics`; `/health` stays open. Defaults to none: no
    /// login, which is only safe on a loopback address (see [`WebConfig::validate_bind`]).
    pub fn auth(mut self, credentials: Option<Credentials>) -> Self {
        self.auth = credentials;
        self
    }

    /// Hides every action (retry, remove, purge) and refuses them with 403. Defaults to
    /// `false`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Origins (`https://ops.example.com`, scheme and host, no path) whose POSTs are accepted
    /// although they differ from the dashboard's own, for a reverse proxy that rewrites the
    /// `Host` header. Defaults to none: only same-origin requests (and non-browser clients
    /// that send neither `Origin` nor `Sec-Fetch-Site`) may change anything.
    pub fn trusted_origins(mut self, origins: Vec<String>) -> Self {
        self.trusted_origins = origins;
        self
    }

    /// Serves `/metrics` without the login, for a Prometheus that cannot send credentials.
    /// Defaults to `false` (the metrics name queues and jobs).
    pub fn metrics_public(mut self, public: bool) -> Self {
        self.metrics_public = public;
        self
    }

    /// Seconds between two live refreshes of the overview, queues and workers pages (when
    /// the visitor has switched live refresh on), from 1 to 3600. Defaults to 5.
    pub fn refresh_secs(mut self, secs: u32) -> Self {
        self.refresh_secs = secs.clamp(1, 3600);
        self
    }

    /// Checks the settings: the deployment ([`palermo::Deployment::validate`]), and the
    /// trusted origins must be `http(s)://host[:port]`. The CLI calls it before serving;
    /// [`crate::router`] calls it too and refuses to start on a bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.deployment.validate()?;
        let _checked = crate::security::csrf::layer(&self.trusted_origins)?;
        Ok(())
    }

    /// The loopback rule, for the binary that binds the socket: serving on anything but a
    /// loopback address (127.0.0.0/8, ::1) without [`WebConfig::auth`] is refused unless
    /// `insecure_no_auth` (the CLI's `--insecure-no-auth`) is set. The router itself cannot
    /// see the bind address, so the CLI calls this (or [`WebConfig::check_bind`], which needs
    /// no configuration yet) before it binds.
    pub fn validate_bind(
        &self,
        addr: SocketAddr,
        insecure_no_auth: bool,
    ) -> Result<(), ConfigError> {
        WebConfig::check_bind(addr, self.auth.is_some(), insecure_no_auth)
    }

    /// [`WebConfig::validate_bind`] before a configuration exists (so that a refused bind
    /// opens no store): `has_auth` says whether credentials were given.
    pub fn check_bind(
        addr: SocketAddr,
        has_auth: bool,
        insecure_no_auth: bool,
    ) -> Result<(), ConfigError> {
        if addr.ip().is_loopback() || has_auth || insecure_no_auth {
            return Ok(());
        }
        Err(ConfigError::OpenBind { addr })
    }

    /// Whether actions are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// A user name and password for HTTP Basic auth, read from `user:password` (the password
/// may contain `:`; the user may not).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl Credentials {
    /// Credentials from their parts; the same rules as [`FromStr`].
    pub fn new(
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<Credentials, CredentialsError> {
        let (user, password) = (user.into(), password.into());
        if user.is_empty() {
            return Err(CredentialsError::EmptyUser);
        }
        if user.contains(':') {
            return Err(CredentialsError::ColonInUser);
        }
        if password.is_empty() {
            return Err(CredentialsError::EmptyPassword);
        }
        if user.chars().chain(password.chars()).any(char::is_control) {
            return Err(CredentialsError::ControlCharacter);
        }
        Ok(Credentials { user, password })
    }

    /// The user name (recorded as the actor of actions).
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl FromStr for Credentials {
    type Err = CredentialsError;

    fn from_str(text: &str) -> Result<Credentials, CredentialsError> {
        let (user, password) = text.split_once(':').ok_or(CredentialsError::NoColon)?;
        Credentials::new(user, password)
    }
}

/// Why a `user:password` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    #[error("expected user:password (a colon between the user name and the password)")]
    NoColon,
    #[error("the user name is empty: expected user:password")]
    EmptyUser,
    #[error("the user name may not contain ':' (the password may)")]
    ColonInUser,
    #[error("the password is empty: expected user:password")]
    EmptyPassword,
    #[error("the user name and password may not contain control characters")]
    ControlCharacter,
}

/// A setting [`WebConfig::validate`] or [`WebConfig::validate_bind`] refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("refusing to serve the dashboard on {addr} without a login: anyone who can reach it could retry, remove and purge jobs; give --auth user:password (or PALERMO_WEB_AUTH), bind 127.0.0.1, or pass --insecure-no-auth if a proxy in front does the login")]
    OpenBind { addr: SocketAddr },
    #[error("trusted origin: {0}; expected scheme and host such as https://ops.example.com")]
    TrustedOrigin(#[from] tower_http::csrf::ConfigError),
    /// The deployment's settings ([`palermo::Deployment::validate`]): the broker URL, or an
    /// entry of the list, does not parse, a queue name is invalid...
    #[error(transparent)]
    Deployment(#[from] palermo::Error),
}
