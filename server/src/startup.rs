//! Builds the whole application from `Settings`: connects (or stops with one
//! clear line), migrates, binds, and assembles the router. Tests call
//! `Application::build` with port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::ssr::events::{self, Workers};
use app::ssr::infra::db::{Pools, ReplicaPool};
use app::ssr::infra::redis::SERVICE_TIMEOUTS;
use app::ssr::mail::{DevMailbox, Mailer, SmtpMailer};
use app::ssr::media::MediaStore;
use app::ssr::{AppState, Redis, RedisConnector, RedisTarget};
use app::{shell, App};
use axum::extract::FromRef;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{file_and_error_handler_with_context, generate_route_list, LeptosRoutes};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::net::TcpListener;

use crate::config::{redact, MailTransport, MetricsAccess, Settings};
use crate::edge::{self, Edge};
use crate::form_errors::FormErrorSeal;
use crate::page_cache::PageCache;
use crate::{health, hygiene, media, metrics, panics};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach Postgres at DATABASE_URL={url}: {cause}")]
    Postgres { url: String, cause: String },
    #[error("DATABASE_REPLICA_URLS has an invalid URL {url}: {cause}")]
    Replica { url: String, cause: String },
    #[error("cannot migrate the database at DATABASE_URL={url}: {cause}")]
    Migrate { url: String, cause: String },
    #[error("cannot reach Redis at REDIS_URL={url}: {cause}")]
    Redis { url: String, cause: String },
    #[error("cannot open the avatar store ({config}): {cause}")]
    Media { config: String, cause: String },
    #[error("cannot use SMTP_URL={url} (FOLIO_MAIL_FROM={from:?}): {cause}")]
    Mail {
        url: String,
        from: String,
        cause: String,
    },
    #[error("cannot listen on LEPTOS_SITE_ADDR={addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
}

/// What the axum handlers can extract: Leptos's options and ours. axum
/// clones the state for every request it routes, so it is one `Arc`:
/// cloning the `LeptosOptions` (a dozen strings) and dropping it again was
/// 8 % of the CPU profile of a cached `get_profile` (bench/NOTES.md).
#[derive(Clone)]
pub struct RouterState(Arc<RouterStateInner>);

pub struct RouterStateInner {
    pub leptos_options: LeptosOptions,
    pub app: AppState,
    pub metrics_access: MetricsAccess,
    pub pages: Arc<PageCache>,
}

impl RouterState {
    pub fn new(inner: RouterStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl FromRef<RouterState> for LeptosOptions {
    /// Only the Leptos page handlers extract this (and clone it anyway).
    fn from_ref(state: &RouterState) -> Self {
        state.0.leptos_options.clone()
    }
}

impl FromRef<RouterState> for AppState {
    fn from_ref(state: &RouterState) -> Self {
        state.0.app.clone()
    }
}

impl FromRef<RouterState> for MetricsAccess {
    fn from_ref(state: &RouterState) -> Self {
        state.0.metrics_access.clone()
    }
}

impl FromRef<RouterState> for Arc<PageCache> {
    fn from_ref(state: &RouterState) -> Self {
        state.0.pages.clone()
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// The outbox relay and the event consumers, when this process runs them.
    workers: Option<Workers>,
    pages: Arc<PageCache>,
}

async fn connect_postgres(settings: &Settings) -> Result<PgPool, StartupError> {
    let url = redact(&settings.database_url);
    let failed = |cause: String| StartupError::Postgres {
        url: url.clone(),
        cause,
    };
    let options: PgConnectOptions = settings
        .database_url
        .parse()
        .map_err(|e: sqlx::Error| failed(e.to_string()))?;
    // A statement that runs away is cancelled rather than holding a pool
    // connection (and the request) forever.
    let options = options.options([("statement_timeout", "5s")]);
    let exists = tokio::time::timeout(
        Duration::from_secs(5),
        Postgres::database_exists(&settings.database_url),
    )
    .await
    .map_err(|_| failed("timed out after 5 s".to_owned()))?
    .map_err(|e| failed(e.to_string()))?;
    if !exists {
        Postgres::create_database(&settings.database_url)
            .await
            .map_err(|e| failed(format!("cannot create the database: {e}")))?;
    }
    PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
        .map_err(|e| failed(e.to_string()))
}

/// The replicas' pools, connected lazily: a replica that is down at start
/// is skipped until it answers (Folio starts without it), unlike the
/// primary, without which nothing works.
fn connect_replicas(settings: &Settings) -> Result<Vec<ReplicaPool>, StartupError> {
    settings
        .database_replica_urls
        .iter()
        .map(|url| {
            let options: PgConnectOptions =
                url.parse()
                    .map_err(|e: sqlx::Error| StartupError::Replica {
                        url: redact(url),
                        cause: e.to_string(),
                    })?;
            let label = format!(
                "{}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or("-")
            );
            let pool = PgPoolOptions::new()
                .max_connections(settings.db_max_connections)
                // A replica that cannot give a connection soon is skipped.
                .acquire_timeout(settings.service.replica_timeout)
                .connect_lazy_with(options.options([("statement_timeout", "5s")]));
            Ok(ReplicaPool { label, pool })
        })
        .collect()
}

async fn connect_redis(settings: &Settings) -> Result<(Redis, RedisTarget), StartupError> {
    let url = redact(&settings.redis_url);
    let failed = |cause: String| StartupError::Redis {
        url: url.clone(),
        cause,
    };
    let target = RedisTarget::parse(&settings.redis_url).map_err(failed)?;
    let mut redis = app::ssr::infra::redis::connect(&target, SERVICE_TIMEOUTS)
        .await
        .map_err(|e| failed(e.to_string()))?;
    redis::cmd("PING")
        .query_async::<String>(&mut redis)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok((redis, target))
}

fn leptos_options(settings: &Settings) -> LeptosOptions {
    let mut options = site_options(settings);
    // Hashed asset names are used exactly when cargo-leptos's hash file sits
    // beside the binary. Both ways matter: a release binary started by a
    // script (no LEPTOS_HASH_FILES) must still name the hashed files or the
    // page never hydrates, and `cargo leptos watch` sets LEPTOS_HASH_FILES
    // for a debug build it writes no hash file for, where Leptos would panic
    // on every page ("failed to read hash file").
    options.hash_files = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(options.hash_file.as_ref())))
        .is_some_and(|path| path.exists());
    options
}

fn site_options(settings: &Settings) -> LeptosOptions {
    // cargo-leptos passes the site layout through LEPTOS_* variables; outside
    // it (tests) fall back to the workspace defaults.
    let mut options = match leptos::config::get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(_) => LeptosOptions::builder()
            .output_name("folio")
            .site_root("target/site")
            .site_pkg_dir("pkg")
            .build(),
    };
    options.site_addr = settings.addr;
    options.env = if settings.dev_mode {
        leptos::config::Env::DEV
    } else {
        leptos::config::Env::PROD
    };
    options
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if let Some(warning) = &settings.public_url_warning {
            tracing::warn!("WARNING: {warning}");
        }
        // Redis first: it is the cheaper check, and creates nothing.
        let (redis, redis_target) = connect_redis(&settings).await?;
        let replicas = connect_replicas(&settings)?;
        let db = connect_postgres(&settings).await?;
        sqlx::migrate!("../migrations")
            .run(&db)
            .await
            .map_err(|e| StartupError::Migrate {
                url: redact(&settings.database_url),
                cause: e.to_string(),
            })?;
        let form_errors = FormErrorSeal::load(&db)
            .await
            .map_err(|e| StartupError::Migrate {
                url: redact(&settings.database_url),
                cause: format!("reading the deployment's form-error key: {e}"),
            })?;
        let pools = Pools {
            primary: db,
            replicas,
        };
        let media =
            MediaStore::open(&settings.service.media).map_err(|cause| StartupError::Media {
                config: format!("{:?}", settings.service.media),
                cause,
            })?;
        let state = AppState::new(pools, redis, settings.service.clone(), media).await;
        app::ssr::infra::db::watch_replicas(&state).await;
        // The event streams' Redis is not needed to serve: connections to it
        // are opened (and reopened) by the tasks that use it.
        let events_redis = RedisConnector::open(&settings.events_redis_url).map_err(|cause| {
            StartupError::Redis {
                url: redact(&settings.events_redis_url),
                cause,
            }
        })?;
        events::observe(&state, events_redis.clone());
        let (mailer, dev_mailbox) = mailer(&settings)?;
        let workers = (settings.event_workers || settings.worker_only).then(|| {
            let mut consumers = events::consumers::all(
                mailer,
                &settings.service.public_url,
                &state.metrics,
                state.db.primary(),
            );
            consumers.push(Arc::new(events::consumers::MediaCleanUp::new(
                state.media.store.clone(),
            )));
            Workers::start(&state, events_redis, consumers)
        });
        // Profile invalidations arrive on a pub/sub connection of their own.
        if !settings.worker_only {
            app::ssr::profiles::listen_for_invalidations(&state, redis_target).await;
        }
        let listener =
            TcpListener::bind(settings.addr)
                .await
                .map_err(|cause| StartupError::Bind {
                    addr: settings.addr,
                    cause,
                })?;
        metrics::keep_up(&state);
        let pages = PageCache::new(settings.page_cache_pages, &state);
        let router_state = RouterState::new(RouterStateInner {
            leptos_options: leptos_options(&settings),
            app: state.clone(),
            metrics_access: settings.metrics_access.clone(),
            pages: pages.clone(),
        });
        let mut router = if settings.worker_only {
            worker_router(router_state.clone())
        } else {
            router(
                router_state.clone(),
                Edge::new(
                    state.clone(),
                    pages.clone(),
                    &settings.instance,
                    form_errors,
                    settings.hsts_max_age,
                ),
                settings.panic_routes,
                dev_mailbox,
            )
        };
        if settings.bench_endpoints && !settings.worker_only {
            router = router.merge(crate::bench::routes().with_state(router_state));
        }
        Ok(Self {
            listener,
            router,
            state,
            workers,
            pages,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The stored profile pages of this instance.
    pub fn pages(&self) -> &Arc<PageCache> {
        &self.pages
    }

    /// Serves until SIGINT/SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        tracing::info!("listening on http://{addr}");
        // Without TCP_NODELAY, streamed SSR chunks wait on delayed ACKs
        // (Nagle): ~40 ms per response on keep-alive connections.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await;
        // Lets go of the relay lock and the partition leases, so another
        // process takes over at once rather than after a lease expires.
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        self.state.db.close().await;
        tracing::info!("stopped");
        result
    }
}

/// What the application serves besides its fixed endpoints, read from the
/// two sources `router` is built from: the pages (leptos_router's route
/// list, axum syntax, `/u/{username}`) and the server functions (server_fn's
/// registry of every `#[server]` function linked in, which
/// `leptos_routes_with_context` mounts), plus the routes `router` mounts
/// by hand that take input: the generated link-preview card and the media
/// files (GET, a path parameter), the data export (a GET that spends a
/// quota) and the avatar upload (a multipart POST). The
/// request fuzzer (`tests/fuzz/`) covers exactly these, so a page or
/// function added later is fuzzed too.
pub struct AppRoutes {
    pub pages: Vec<String>,
    pub server_functions: Vec<(&'static str, http::Method)>,
}

pub fn app_routes() -> AppRoutes {
    let mut pages: Vec<String> = generate_route_list(App)
        .iter()
        .map(|listing| listing.path().to_owned())
        .chain([
            "/card/{file}".to_owned(),
            "/media/{name}".to_owned(),
            crate::export::PATH.to_owned(),
        ])
        .collect();
    pages.sort();
    pages.dedup();
    let mut server_functions: Vec<_> = leptos::server_fn::axum::server_fn_paths()
        .chain([(app::domain::AVATAR_UPLOAD_PATH, http::Method::POST)])
        .collect();
    server_functions.sort_by_key(|(path, _)| *path);
    AppRoutes {
        pages,
        server_functions,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// `server --worker`: health and metrics only, for the orchestrator and
/// Prometheus; the worker's work is the event pipeline.
fn worker_router(router_state: RouterState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .with_state(router_state)
}

/// The mailer of the `mail` consumer, and the development mailbox when that
/// is the mailer (its page is routed only then).
#[allow(clippy::type_complexity)]
fn mailer(
    settings: &Settings,
) -> Result<(Option<Arc<dyn Mailer>>, Option<Arc<DevMailbox>>), StartupError> {
    match &settings.mail {
        MailTransport::Smtp(url) => {
            let smtp =
                SmtpMailer::new(url, &settings.mail_from).map_err(|cause| StartupError::Mail {
                    url: redact(url),
                    from: settings.mail_from.clone(),
                    cause,
                })?;
            let smtp: Arc<dyn Mailer> = Arc::new(smtp);
            Ok((Some(smtp), None))
        }
        // Never in a release build, whatever the settings say.
        MailTransport::DevMailbox if cfg!(debug_assertions) => {
            let mailbox = Arc::new(DevMailbox::new(&settings.mail_from));
            tracing::info!("no SMTP_URL: mail is kept at {}", crate::mailbox::PATH);
            let mailer: Arc<dyn Mailer> = mailbox.clone();
            Ok((Some(mailer), Some(mailbox)))
        }
        MailTransport::DevMailbox | MailTransport::Off => {
            if settings.event_workers || settings.worker_only {
                tracing::warn!("no SMTP_URL: no mail is sent (password reset links included)");
            }
            Ok((None, None))
        }
    }
}

fn router(
    router_state: RouterState,
    edge: Arc<Edge>,
    panic_routes: bool,
    dev_mailbox: Option<Arc<DevMailbox>>,
) -> Router {
    let routes = generate_route_list(App);
    let inner = &router_state.0;
    let context = {
        let state = inner.app.clone();
        move || provide_context(state.clone())
    };
    let leptos_options = inner.leptos_options.clone();
    let mut app = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/card/{file}", get(crate::card::png))
        .merge(media::file_routes())
        .merge(crate::export::routes())
        .leptos_routes_with_context(&router_state, routes, context.clone(), move || {
            shell(leptos_options.clone())
        })
        .fallback(file_and_error_handler_with_context::<RouterState, _>(
            context, shell,
        ));
    if panic_routes {
        app = app.merge(panics::routes());
    }
    if let Some(mailbox) = dev_mailbox.filter(|_| cfg!(debug_assertions)) {
        app = app.merge(crate::mailbox::routes(mailbox));
    }
    // Compression outermost: stored pages are kept uncompressed and
    // compressed per request like any other response. The panic layer just
    // inside the edge: a panic anywhere behind it is a 500 the edge records.
    hygiene::limits(app, media::upload_routes())
        .layer(panics::layer(&inner.app.metrics))
        .layer(axum::middleware::from_fn_with_state(
            edge,
            edge::around_every_request,
        ))
        .layer(hygiene::compression())
        .with_state(router_state)
}
